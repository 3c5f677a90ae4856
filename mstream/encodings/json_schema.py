"""JSON Schema entries (``encoding = "json"``): validation and the original's projection.

A :class:`JsonSchema` is compiled once, with `fastjsonschema
<https://horejsek.github.io/python-fastjsonschema/>`_ (the schema becomes Python code: about
3 µs per 10-field document here, against about 75 µs for the ``jsonschema`` package).
fastjsonschema implements drafts 4, 6 and 7; the original (the Rust ``jsonschema`` crate)
reads a schema without ``$schema`` as draft 2020-12, so 2019-09 and 2020-12 schemas are
translated to draft 7 where the meaning is the same:

* ``$ref`` next to other keywords becomes ``allOf: [{$ref}, {the others}]`` (draft 7 would
  ignore the others);
* ``prefixItems`` / ``items`` become draft 7's ``items`` (a list) / ``additionalItems``;
* ``dependentRequired`` and ``dependentSchemas`` become ``dependencies``;
* ``format`` is an annotation, as in the original (asserted only for drafts 4, 6, 7).

Keywords with no draft-7 equivalent (``unevaluatedProperties``, ``unevaluatedItems``,
``minContains``, ``maxContains``, ``$dynamicRef``, ``$recursiveRef``, ``$anchor``...) and
``$ref`` outside the schema are refused when the schema is loaded, never ignored.

What the original does with a JSON Schema, at every step where it is in force (the source,
each middleware's output, each sink):

* an event that reaches the step as JSON is **validated**; MongoDB values are checked as the
  original's JSON shows them (ObjectId as its hex string, dates as RFC 3339 strings,
  Decimal128 as a string, binary as base64);
* the document is then **projected**: where the schema says ``"type": "object"`` only the
  keys listed in its ``properties`` are kept (recursively), where it says ``"type":
  "array"`` every item is projected with ``items``. The original fails every event when
  such a node lacks ``properties`` / ``items``, so those schemas are refused at load.

Example:
    >>> s = JsonSchema.parse('{"type": "object", "properties": {"age": {"type": "integer"}},'
    ...     ' "required": ["age"]}', name="user")
    >>> s.project({"age": 3, "secret": "x"})
    {'age': 3}
    >>> s.validate({"age": "3"})
    Traceback (most recent call last):
    ...
    mstream.errors.SchemaValidationError: schema 'user': at /age: must be integer
"""

from __future__ import annotations

import base64
import math
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import fastjsonschema
import orjson
from bson import Code, Decimal128, MaxKey, MinKey, ObjectId, Regex, Timestamp

from mstream.errors import ConfigError, SchemaValidationError

__all__ = ["JsonSchema", "json_view"]

_DRAFTS = {
    "draft-04": "draft-04",
    "draft-06": "draft-06",
    "draft-07": "draft-07",
    "draft/2019-09": "2019-09",
    "draft/2020-12": "2020-12",
}
_DRAFT7 = "http://json-schema.org/draft-07/schema#"
_NO_DRAFT7_EQUIVALENT = (
    "unevaluatedProperties",
    "unevaluatedItems",
    "minContains",
    "maxContains",
    "$dynamicRef",
    "$dynamicAnchor",
    "$recursiveRef",
    "$recursiveAnchor",
    "$anchor",
    "$vocabulary",
)
_SCHEMA_MAPS = ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_ONE = (
    "not",
    "if",
    "then",
    "else",
    "additionalProperties",
    "additionalItems",
    "contains",
    "propertyNames",
    "items",
)
_ANNOTATIONS = frozenset(
    {"$id", "$schema", "$comment", "title", "description", "default", "examples", "$defs"}
)


class JsonSchema:
    """A JSON Schema compiled once; safe to share between threads.

    Build one with :meth:`parse`.

    Attributes:
        name: the name used in error messages (the schema entry's resource).
        raw: the schema as written.
        draft: ``draft-04``, ``draft-06``, ``draft-07``, ``2019-09`` or ``2020-12`` (the
            default, as in the original).
    """

    __slots__ = ("_check", "_project", "draft", "name", "raw")

    def __init__(self, raw: Mapping[str, Any], *, name: str = "") -> None:
        """Compile ``raw``; prefer :meth:`parse`.

        Raises:
            ConfigError: an unknown ``$schema``, a keyword with no draft-7 equivalent, a
                ``$ref`` outside the schema, a projection node without ``properties`` /
                ``items``, or a schema fastjsonschema cannot compile.
        """
        self.name = name
        self.raw = raw
        declared = raw.get("$schema")
        if declared is None:
            self.draft = "2020-12"
        else:
            found = [
                d for key, d in _DRAFTS.items() if isinstance(declared, str) and key in declared
            ]
            if not found:
                raise self._bad(f"unknown $schema {declared!r} (drafts 4, 6, 7, 2019-09, 2020-12)")
            self.draft = found[0]
        _check_refs(raw, "#", self._bad)
        modern = self.draft in ("2019-09", "2020-12")
        compiled_from = dict(self._draft7(raw, "#")) if modern else dict(raw)
        if modern:
            compiled_from["$schema"] = _DRAFT7
        _check_projection(raw, "#", self._bad)
        try:
            self._check = fastjsonschema.compile(
                compiled_from, handlers={}, use_default=False, use_formats=not modern
            )
        except (fastjsonschema.JsonSchemaDefinitionException, ValueError, TypeError) as exc:
            raise self._bad(f"cannot compile it: {exc}") from None
        self._project = _projector(raw)

    @classmethod
    def parse(cls, definition: str | bytes | Mapping[str, Any], name: str = "") -> JsonSchema:
        """Parse a schema given as JSON text or as a mapping.

        Raises:
            ConfigError: not JSON, not an object, or not usable (see :class:`JsonSchema`).

        Example:
            >>> JsonSchema.parse('{"type": "string"}').draft
            '2020-12'
            >>> JsonSchema.parse('[1]', name="x")
            Traceback (most recent call last):
            ...
            mstream.errors.ConfigError: json schema 'x': must be a JSON object, got list
        """
        if isinstance(definition, str | bytes):
            try:
                parsed = orjson.loads(definition)
            except orjson.JSONDecodeError as exc:
                raise ConfigError(f"json schema {name!r}: invalid JSON: {exc}") from None
        else:
            parsed = definition
        if not isinstance(parsed, Mapping):
            raise ConfigError(
                f"json schema {name!r}: must be a JSON object, got {type(parsed).__name__}"
            )
        return cls(dict(parsed), name=name)

    def validate(self, doc: Any) -> None:
        """Check a document (its :func:`json_view`) against the schema.

        Raises:
            SchemaValidationError: the first violation, with its JSON Pointer and message.

        Example:
            >>> s = JsonSchema.parse({"type": "object", "properties": {
            ...     "tags": {"type": "array", "items": {"type": "string"}}}})
            >>> s.validate({"tags": ["a", 1]})
            Traceback (most recent call last):
            ...
            mstream.errors.SchemaValidationError: schema '': at /tags/1: must be string
        """
        try:
            self._check(json_view(doc))
        except fastjsonschema.JsonSchemaValueException as exc:
            parts = [str(p).replace("~", "~0").replace("/", "~1") for p in exc.path[1:]]
            where = "/" + "/".join(parts) if parts else "the document root"
            message = exc.message.removeprefix(f"{exc.name} ")
            raise SchemaValidationError(f"schema {self.name!r}: at {where}: {message}") from None

    def project(self, doc: Any) -> Any:
        """Keep what the schema's ``properties`` / ``items`` list, as the original does.

        Returns ``doc`` itself when nothing is dropped.

        Raises:
            SchemaValidationError: the document is not an object (an array) where the schema
                says ``"type": "object"`` (``"array"``).

        Example:
            >>> s = JsonSchema.parse({"type": "array", "items": {"type": "object",
            ...     "properties": {"a": {}}}})
            >>> s.project([{"a": 1, "b": 2}])
            [{'a': 1}]
        """
        if self._project is None:
            return doc
        try:
            return self._project(doc)
        except _Mismatch as exc:
            where = "/" + "/".join(reversed(exc.path)) if exc.path else "the document root"
            raise SchemaValidationError(
                f"schema {self.name!r}: at {where}: expected {exc.expected}, "
                f"got {type(exc.value).__name__}"
            ) from None

    def _bad(self, problem: str) -> ConfigError:
        return ConfigError(f"json schema {self.name!r}: {problem}")

    def _draft7(self, node: Any, where: str) -> Any:
        """``node`` (a 2019-09 / 2020-12 schema) in draft-7 terms (see the module doc)."""
        if not isinstance(node, Mapping):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            at = f"{where}/{key}"
            if key in _NO_DRAFT7_EQUIVALENT:
                raise self._bad(
                    f"keyword {key!r} at {at} has no draft-7 equivalent, which fastjsonschema "
                    "needs; rewrite the schema without it"
                )
            if key == "dependencies":
                raise self._bad(
                    f"'dependencies' at {at} is not a {self.draft} keyword (the original "
                    "ignores it); use dependentRequired / dependentSchemas"
                )
            if key in _SCHEMA_MAPS and isinstance(value, Mapping):
                out[key] = {k: self._draft7(v, f"{at}/{k}") for k, v in value.items()}
            elif key in _SCHEMA_LISTS and isinstance(value, list):
                out[key] = [self._draft7(v, f"{at}/{i}") for i, v in enumerate(value)]
            elif key in _SCHEMA_ONE:
                out[key] = (
                    [self._draft7(v, f"{at}/{i}") for i, v in enumerate(value)]
                    if isinstance(value, list)
                    else self._draft7(value, at)
                )
            else:
                out[key] = value
        if self.draft == "2020-12":
            if isinstance(out.get("items"), list):
                raise self._bad(f"'items' at {where}/items is a list; 2020-12 uses prefixItems")
            out.pop("additionalItems", None)  # not a 2020-12 keyword: ignored, as there
            if "prefixItems" in out:
                rest = out.pop("items", None)
                out["items"] = out.pop("prefixItems")
                if rest is not None:
                    out["additionalItems"] = rest
        elif "prefixItems" in out:
            raise self._bad(f"'prefixItems' at {where} is a 2020-12 keyword, not 2019-09")
        dependencies = {**out.pop("dependentRequired", {}), **out.pop("dependentSchemas", {})}
        if dependencies:
            out["dependencies"] = dependencies
        if "$ref" in out and set(out) - _ANNOTATIONS - {"$ref"}:
            ref = {"$ref": out.pop("$ref")}
            kept = {k: out.pop(k) for k in list(out) if k in _ANNOTATIONS}
            out = {**kept, "allOf": [ref, out]}
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonSchema) and other.raw == self.raw

    def __hash__(self) -> int:  # equal schemas have equal drafts; raw may not be hashable
        return hash(self.draft)

    def __repr__(self) -> str:
        return f"JsonSchema({self.name!r}, draft {self.draft})"


_DATA = frozenset({"enum", "const", "default", "examples"})


def _check_refs(node: Any, where: str, bad: Callable[[str], ConfigError]) -> None:
    """Refuse a ``$ref`` outside the schema: nothing is fetched from files or the network."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                if not value.startswith("#"):
                    raise bad(f"$ref {value!r} at {where}: only references inside the schema")
            elif key not in _DATA:
                _check_refs(value, f"{where}/{key}", bad)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _check_refs(item, f"{where}/{i}", bad)


def _check_projection(node: Any, where: str, bad: Callable[[str], ConfigError]) -> None:
    """Refuse the nodes the original's projection fails every event on."""
    if not isinstance(node, Mapping):
        return
    kind = node.get("type")
    if kind == "object":
        props = node.get("properties")
        if not isinstance(props, Mapping):
            raise bad(
                f"{where} says type object without a 'properties' table; the original "
                "fails every event on it (its projection keeps only the listed properties)"
            )
        for key, sub in props.items():
            _check_projection(sub, f"{where}/properties/{key}", bad)
    elif kind == "array":
        if "items" not in node:
            raise bad(
                f"{where} says type array without 'items'; the original fails every event "
                "on it (its projection needs items)"
            )
        _check_projection(node["items"], f"{where}/items", bad)


class _Mismatch(Exception):
    """A value the projection cannot follow; ``path`` is filled innermost key first."""

    def __init__(self, expected: str, value: Any) -> None:
        self.expected = expected
        self.value = value
        self.path: list[str] = []


Projector = Callable[[Any], Any]


def _projector(schema: Any) -> Projector | None:
    """The original's projection for ``schema``, compiled once (``None``: keeps all).

    Only ``"type": "object"`` (keep the ``properties`` keys) and ``"type": "array"``
    (project each item with ``items``) project; any other node keeps its value.
    """
    if not isinstance(schema, Mapping):
        return None
    kind = schema.get("type")
    if kind == "object":
        props = schema["properties"]
        keys = frozenset(props)
        children = [(k, c) for k, sub in props.items() if (c := _projector(sub)) is not None]

        def project_object(value: Any) -> Any:
            if not isinstance(value, dict):
                raise _Mismatch("an object", value)
            out = value if keys.issuperset(value) else {k: v for k, v in value.items() if k in keys}
            for key, child in children:
                if key in out:
                    item = out[key]
                    try:
                        projected = child(item)
                    except _Mismatch as exc:
                        exc.path.append(str(key).replace("~", "~0").replace("/", "~1"))
                        raise
                    if projected is not item:
                        if out is value:
                            out = dict(value)
                        out[key] = projected
            return out

        return project_object
    if kind == "array":
        item_projector = _projector(schema["items"])

        def project_array(value: Any) -> Any:
            if not isinstance(value, list):
                raise _Mismatch("an array", value)
            if item_projector is None:
                return value
            out = value
            for i, item in enumerate(value):
                try:
                    projected = item_projector(item)
                except _Mismatch as exc:
                    exc.path.append(str(i))
                    raise
                if projected is not item:
                    if out is value:
                        out = list(value)
                    out[i] = projected
            return out

        return project_array
    return None


_PLAIN = (str, int, bool, type(None))


def json_view(value: Any) -> Any:
    """A document as the original's JSON shows it, for validation (``value`` itself when
    it holds only JSON types).

    ObjectId is its hex string, a date its RFC 3339 UTC string (milliseconds when not zero),
    Decimal128 its string, binary (and UUID) base64, a timestamp the RFC 3339 string of its
    seconds, a regular expression ``{"pattern", "options"}``, code its source, NaN and the
    infinities ``"NaN"`` / ``"Infinity"`` / ``"-Infinity"``, MinKey / MaxKey their names.

    Example:
        >>> from bson import ObjectId
        >>> json_view({"_id": ObjectId("65a1b2c3d4e5f60718293a4b"), "n": [1, 2.5]})
        {'_id': '65a1b2c3d4e5f60718293a4b', 'n': [1, 2.5]}
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        out: dict[str, Any] | None = None
        for key, item in value.items():
            seen = json_view(item)
            if seen is not item:
                if out is None:
                    out = dict(value)
                out[key] = seen
        return value if out is None else out
    if kind is list:
        items = [json_view(item) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if kind is float:
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return _special(value)


def _special(value: Any) -> Any:
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return _rfc3339(value)
    if isinstance(value, Timestamp):
        return _rfc3339(datetime.fromtimestamp(value.time, UTC))
    if isinstance(value, bool | int):  # Int64 and other int subclasses
        return int(value)
    if isinstance(value, float):
        return json_view(float(value))
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, uuid.UUID):
        return base64.b64encode(value.bytes).decode("ascii")
    if isinstance(value, Regex):
        flags = value.flags if isinstance(value.flags, str) else ""
        return {"pattern": str(value.pattern), "options": flags}
    if isinstance(value, MinKey | MaxKey):
        return "MinKey" if isinstance(value, MinKey) else "MaxKey"
    if isinstance(value, Code | Decimal128 | str):
        return str(value)
    if isinstance(value, Mapping):
        return json_view(dict(value))
    if isinstance(value, list | tuple):
        return json_view(list(value))
    return str(value)


def _rfc3339(moment: datetime) -> str:
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    millis = utc.microsecond // 1000
    fraction = f".{millis:03d}" if millis else ""
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"
