"""Conversion of documents between Python and the script's Lua values.

Scripts see JSON-like values: objects are Lua tables with string keys, arrays are Lua
tables tagged with the ``array`` marker (so an empty array stays an array), JSON
``null`` is the ``null`` sentinel (Lua tables cannot hold ``nil``), and MongoDB types
appear as relaxed Extended JSON: ``{"$oid": "..."}``, ``{"$date": "2024-01-02T03:04:05Z"}``
(``{"$date": {"$numberLong": "..."}}`` outside years 1970-9999),
``{"$numberDecimal": "..."}``, ``{"$binary": {"base64": "...", "subType": "00"}}``;
``Int64`` becomes a plain integer. On the way back every object whose first key starts
with ``$`` goes through :func:`bson.json_util.object_hook`, so these wrappers turn back
into bson types (dates as naive UTC ``datetime``, as pymongo decodes them by default).

Python strings, ints, floats and bools cross unchanged (the fast path).

Integers wider than 64 bits: a Lua 5.4 integer holds 64 bits, so a Python ``int`` outside
-2**63 .. 2**63 - 1 (JSON reads ``18446744073709551617`` exactly) has no Lua value with
the same meaning. A float would silently change it and a string would change its type, so
neither is done: :meth:`LuaCodec.to_lua` raises :class:`~mstream.errors.ScriptError`
naming the field and the digits (``field 'id': integer 18446744073709551617 does not fit
in 64 bits (Lua integer)``) and the event is dead-lettered before the script runs. The
check costs nothing on the fast path: the runtime has no ``overflow_handler``, so lupa
raises ``OverflowError`` for such an integer and only then is the document searched for
it. A script that needs such numbers should receive them as strings from the producer.

Example:
    >>> from mstream.udf.sandbox import new_sandbox
    >>> codec = LuaCodec(new_sandbox(memory_bytes=2**20))
    >>> codec.from_lua(codec.to_lua({"a": [1, None], "b": {}}))
    {'a': [1, None], 'b': {}}
    >>> codec.to_lua({"ids": [1, 2**64]})
    Traceback (most recent call last):
    ...
    mstream.errors.ScriptError: cannot pass the event to the script: field 'ids[1]': integer 18446744073709551616 does not fit in 64 bits (Lua integer)
"""

from __future__ import annotations

from typing import Any

import lupa.lua54 as lua54
import orjson
from bson import json_util
from bson.int64 import Int64
from bson.objectid import ObjectId

from mstream.encodings.bigint import wide_int_error
from mstream.errors import ScriptError

from .sandbox import Sandbox

__all__ = ["MAX_DEPTH", "LuaCodec"]

#: Deepest nesting accepted in a script's result (BSON allows 100 levels).
MAX_DEPTH = 200

_SCALARS = frozenset({str, int, float, bool})
_JSON_OPTIONS = json_util.JSONOptions(
    json_mode=json_util.JSONMode.RELAXED, tz_aware=False, datetime_representation=2
)
_lua_type = lua54.lua_type


def _ordered(out: dict[str, Any], template: dict[str, Any] | None) -> dict[str, Any]:
    if template is None:
        keys = sorted(out)
        if "_id" in out:
            keys.remove("_id")
            keys.insert(0, "_id")
        return {k: out[k] for k in keys}
    ordered = {k: out[k] for k in template if k in out}
    if len(ordered) != len(out):
        for k in sorted(out.keys() - ordered.keys()):
            ordered[k] = out[k]
    return ordered


class LuaCodec:
    """Converts documents for one sandbox (tables are created in its runtime).

    Args:
        sandbox: the runtime the tables belong to.
        script: script name used in error messages.
    """

    def __init__(self, sandbox: Sandbox, script: str = "") -> None:
        self._table_from = sandbox.runtime.table_from
        self._mkarray = sandbox.api.mkarray
        self._kind = sandbox.api.kind
        self._null = sandbox.api.null
        self._script = script

    # Python -> Lua -------------------------------------------------------------------
    def to_lua(self, value: Any) -> Any:
        """Convert a Python document to Lua values (tables are created in the runtime).

        Raises:
            ScriptError: a value has a type that cannot be represented, or is an integer
                wider than 64 bits (the message names its field and digits).
        """
        try:
            return self._to_lua(value)
        except OverflowError:
            reason = wide_int_error(value, "Lua integer")
            if reason is None:
                raise
            raise ScriptError(
                f"cannot pass the event to the script: {reason}", script=self._script
            ) from None

    def _to_lua(self, value: Any) -> Any:
        t = type(value)
        if t in _SCALARS:
            return value
        if t is dict:
            conv = self._to_lua
            return self._table_from(
                {k: (v if type(v) in _SCALARS else conv(v)) for k, v in value.items()}
            )
        if t is list or t is tuple:
            conv = self._to_lua
            return self._mkarray(
                self._table_from([v if type(v) in _SCALARS else conv(v) for v in value])
            )
        if value is None:
            return self._null
        return self._special_to_lua(value)

    def _special_to_lua(self, value: Any) -> Any:
        if isinstance(value, Int64):
            return int(value)
        if isinstance(value, ObjectId):
            return self._table_from({"$oid": str(value)})
        if isinstance(value, dict):  # SON, OrderedDict, RawBSONDocument-like mappings
            return self._to_lua(dict(value))
        try:
            wrapped = json_util.default(value, _JSON_OPTIONS)
        except TypeError as exc:
            raise ScriptError(
                f"cannot pass a {type(value).__name__} value to a script: {exc}",
                script=self._script,
            ) from exc
        return self._to_lua(wrapped)

    def attributes_to_lua(self, attributes: dict[str, str]) -> Any:
        """Convert the event attributes (a flat string map) to a Lua table."""
        return self._table_from(attributes)

    # Lua -> Python -------------------------------------------------------------------
    def from_lua(
        self, value: Any, depth: int = 0, *, ejson: bool = True, template: Any = None
    ) -> Any:
        """Convert a Lua value returned by a script to a Python document.

        Lua tables have no order, so object keys are ordered after ``template`` (the input
        document): keys it had keep their place, new keys follow sorted by name (``_id``
        first when there is no template).

        Args:
            value: the Lua value.
            depth: current nesting depth.
            ejson: turn Extended JSON wrappers into bson types.
            template: the corresponding input value, for key order.

        Raises:
            ScriptError: the value holds a function, a cycle, mixed or sparse keys, or
                invalid Extended JSON.
        """
        t = type(value)
        if t in _SCALARS or value is None:
            return value
        kind = _lua_type(value)
        if kind != "table":
            raise self._invalid(f"a Lua {kind or t.__name__} cannot be part of an event")
        if depth > MAX_DEPTH:
            raise self._invalid(f"the result is nested deeper than {MAX_DEPTH} levels (a cycle?)")
        items = list(value.items())
        if not items:
            k = self._kind(value)
            if k == "null":
                return None
            if k == "array":
                return []
            if k == "result":
                raise self._invalid("result(...) cannot be nested inside an event")
            return {}
        conv = self.from_lua
        first = items[0][0]
        if type(first) is str:
            sub = template if type(template) is dict else None
            out: dict[str, Any] = {}
            for key, v in items:
                if type(key) is not str:
                    raise self._invalid(f"an object mixes string and {type(key).__name__} keys")
                if type(v) in _SCALARS:
                    out[key] = v
                else:
                    tmpl = sub.get(key) if sub is not None else None
                    out[key] = conv(v, depth + 1, ejson=ejson, template=tmpl)
            if ejson and first.startswith("$"):
                return self._decode_ejson(out)
            if len(out) > 1:
                out = _ordered(out, sub)
            return out
        if type(first) is int:
            if any(key != i for i, (key, _) in enumerate(items, 1)):
                keys = sorted(
                    key if type(key) is int else float("inf") for key, _ in items
                )  # next() may visit the hash part first
                if keys != list(range(1, len(items) + 1)):
                    raise self._invalid(
                        "an array must have keys 1..n without holes (use null for missing"
                        " values) and no string keys"
                    )
                items.sort(key=lambda kv: kv[0])
            seq = template if type(template) is list else None
            n = len(seq) if seq is not None else 0
            return [
                v
                if type(v) in _SCALARS
                else conv(
                    v,
                    depth + 1,
                    ejson=ejson,
                    template=seq[i] if seq is not None and i < n else None,
                )
                for i, (_, v) in enumerate(items)
            ]
        raise self._invalid(f"table keys must be strings or 1..n, got a {type(first).__name__}")

    def attributes_from_lua(self, value: Any) -> dict[str, str]:
        """Convert returned attributes; numbers and booleans become strings.

        Raises:
            ScriptError: not a flat map of string keys to string/number/boolean values.
        """
        if _lua_type(value) != "table":
            raise self._invalid("attributes must be a table")
        out: dict[str, str] = {}
        for key, v in value.items():
            if type(key) is not str:
                raise self._invalid(f"attribute keys must be strings, got {key!r}")
            tv = type(v)
            if tv is str:
                out[key] = v
            elif tv is bool:
                out[key] = "true" if v else "false"
            elif tv is int or tv is float:
                out[key] = repr(v)
            else:
                raise self._invalid(
                    f"attribute '{key}' must be a string, number or boolean, got a "
                    f"{_lua_type(v) or tv.__name__}"
                )
        return out

    def canonical_json(self, value: Any) -> str:
        """Sorted-key compact JSON of a Lua value (used by ``hash_sha256`` on tables)."""
        return orjson.dumps(self.from_lua(value, ejson=False), option=orjson.OPT_SORT_KEYS).decode()

    def _decode_ejson(self, doc: dict[str, Any]) -> Any:
        try:
            return json_util.object_hook(doc, _JSON_OPTIONS)
        except Exception as exc:
            raise self._invalid(f"invalid Extended JSON {doc!r}: {exc}") from exc

    def _invalid(self, message: str) -> ScriptError:
        return ScriptError(f"invalid return value: {message}", script=self._script)
