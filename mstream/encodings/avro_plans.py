"""Per-schema plans that prepare documents for Avro and restore MongoDB types after it.

A *plan* is a tree of closures compiled once per schema (see :func:`compile_plans`), so
the per-event cost is a walk over the schema's fields with no schema lookups.

The **write plan** validates a document against the schema and coerces MongoDB types to
what the Avro writer expects, in one pass driven by the schema:

==========================  ==================================================================
schema type                 accepted Python values (coerced to)
==========================  ==================================================================
``string``                  ``str``; ``ObjectId``, ``Decimal128``, ``Decimal``, ``UUID``
                            (their string form)
``string`` + ``object-id``  ``ObjectId`` or a 24-hex ``str`` (written as the hex string)
``string`` + ``uuid``       ``UUID``, a UUID ``str``, ``Binary`` subtype 4
``int`` / ``long``          ``int`` / ``Int64`` in range (not ``bool``); integral ``float``;
                            an integer wider than 64 bits for a ``long`` is refused as
                            ``integer <digits> does not fit in 64 bits (Avro long)``
``float`` / ``double``      ``float``, ``int``, ``Decimal128``, ``Decimal``
``bytes`` / ``fixed``       ``bytes``, ``Binary``, ``bytearray``
``decimal`` logical type    ``Decimal128``, ``Decimal``, ``int``, ``float``, numeric ``str``
                            (to ``Decimal``; at most ``scale`` places, ``precision`` digits)
``timestamp-millis/micros`` ``datetime`` (naive = UTC), ``DatetimeMS``, ``int``, ISO ``str``
``date``                    ``date``, ``datetime`` (its date), ``int`` days, ISO ``str``
``record`` / ``map``        a mapping; a missing field is allowed when it has a default or
                            accepts null
``array``                   ``list`` or ``tuple``
==========================  ==================================================================

Documents are never modified: a record, array or map is copied (shallowly) only when one of
its values had to be coerced.

``"logicalType": "object-id"`` is mstream's marker for a ``string`` field that holds a
MongoDB ObjectId: the **read plan** turns such strings back into ``ObjectId``. The read
plan also turns ``long`` values into ``Int64`` (so a ``long`` stays int64 in BSON) and
``decimal`` values into ``Decimal128``. Without the marker an ObjectId read from Avro stays
a string.

Example:
    >>> from fastavro import parse_schema
    >>> from bson import ObjectId
    >>> schema = parse_schema({"type": "record", "name": "E", "fields": [
    ...     {"name": "id", "type": {"type": "string", "logicalType": "object-id"}},
    ...     {"name": "n", "type": "long"}]})
    >>> write, read = compile_plans(schema)
    >>> write({"id": ObjectId("65a1b2c3d4e5f60718293a4b"), "n": 3})
    {'id': '65a1b2c3d4e5f60718293a4b', 'n': 3}
    >>> doc = read({"id": "65a1b2c3d4e5f60718293a4b", "n": 3})
    >>> doc, type(doc["n"]).__name__
    ({'id': ObjectId('65a1b2c3d4e5f60718293a4b'), 'n': 3}, 'Int64')
    >>> try:
    ...     write({"id": "nope", "n": 3})
    ... except Mismatch as exc:
    ...     print(exc)
    id: expected ObjectId (24 hex characters), got str 'nope'
"""

from __future__ import annotations

import reprlib
import uuid
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from bson.binary import Binary
from bson.datetime_ms import DatetimeMS
from bson.decimal128 import Decimal128
from bson.errors import BSONError
from bson.int64 import Int64
from bson.objectid import ObjectId

from mstream.encodings.bigint import INT64_MAX, INT64_MIN, too_wide
from mstream.encodings.dec128 import decimal128_str, from_decimal, to_decimal

__all__ = ["OBJECT_ID", "Mismatch", "Plan", "TooWide", "compile_plans"]

Plan = Callable[[Any], Any]
"""A compiled per-schema function from a value to the (possibly new) value."""

OBJECT_ID = "object-id"
"""The custom ``logicalType`` marking a ``string`` field that holds an ObjectId."""

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = INT64_MIN, INT64_MAX
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_MISSING: Any = object()
_UTC = UTC
_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40


class Mismatch(Exception):
    """A value does not match the schema (internal; turned into SchemaValidationError).

    Attributes:
        expected: what the schema wanted, in words.
        value: the offending value (``_MISSING`` for a missing field).
        path: field names / array indexes from the offending value up to the root.
    """

    def __init__(self, expected: str, value: Any, path: list[str | int] | None = None) -> None:
        super().__init__(expected)
        self.expected = expected
        self.value = value
        self.path: list[str | int] = path if path is not None else []

    def where(self) -> str:
        """The path of the offending value, e.g. ``items[2].price`` (empty at the root)."""
        out = ""
        for part in reversed(self.path):
            if isinstance(part, int):
                out += f"[{part}]"
            else:
                out += f".{part}" if out else part
        return out

    def got(self) -> str:
        """The offending value, described for a human (an integer with all its digits)."""
        if self.value is _MISSING:
            return "nothing (the field is missing)"
        if self.value is None:
            return "null"
        shown = int.__repr__(self.value) if type(self.value) is int else _repr.repr(self.value)
        return f"{type(self.value).__name__} {shown}"

    def problem(self) -> str:
        """What is wrong with the value, without its path."""
        return f"expected {self.expected}, got {self.got()}"

    def __str__(self) -> str:
        where = self.where()
        prefix = f"{where}: " if where else ""
        return f"{prefix}{self.problem()}"


class TooWide(Mismatch):
    """An integer outside the 64-bit range of an Avro ``long``.

    Example:
        >>> str(TooWide("long", 2**64, ["id"]))
        'id: integer 18446744073709551616 does not fit in 64 bits (Avro long)'
    """

    def problem(self) -> str:
        """The integer with all its digits, and that a ``long`` cannot hold it."""
        return too_wide(self.value, "Avro long")


# --------------------------------------------------------------------------- write plans


def _w_null(v: Any) -> Any:
    if v is None:
        return v
    raise Mismatch("null", v)


def _w_boolean(v: Any) -> Any:
    if v is True or v is False:
        return v
    raise Mismatch("boolean", v)


def _integer(lo: int, hi: int, expected: str) -> Plan:
    def plan(v: Any) -> Any:
        if type(v) is int or (isinstance(v, int) and not isinstance(v, bool)):
            if lo <= v <= hi:
                return v
            if hi == _LONG_MAX:  # a long: the integer is wider than 64 bits
                raise TooWide(expected, v)
        elif isinstance(v, float) and v.is_integer() and lo <= v <= hi:
            return int(v)
        raise Mismatch(expected, v)

    return plan


_w_int = _integer(_INT_MIN, _INT_MAX, "int (32-bit)")
_w_long = _integer(_LONG_MIN, _LONG_MAX, "long")


def _w_double(v: Any) -> Any:
    if type(v) is float or (isinstance(v, int | float) and not isinstance(v, bool)):
        return v
    if isinstance(v, Decimal128):
        return float(to_decimal(v))
    if isinstance(v, Decimal):
        return float(v)
    raise Mismatch("a number (double)", v)


def _w_string(v: Any) -> Any:
    if type(v) is str:
        return v
    if isinstance(v, str):
        return str(v)
    if isinstance(v, Decimal128):
        return decimal128_str(v)
    if isinstance(v, ObjectId | Decimal | uuid.UUID):
        return str(v)
    raise Mismatch("string", v)


def _w_bytes(v: Any) -> Any:
    if isinstance(v, bytes):
        return v
    if isinstance(v, bytearray | memoryview):
        return bytes(v)
    raise Mismatch("bytes", v)


def _w_object_id(v: Any) -> Any:
    if type(v) is ObjectId:
        return str(v)
    if type(v) is str and ObjectId.is_valid(v):
        return v
    raise Mismatch("ObjectId (24 hex characters)", v)


def _w_uuid(v: Any) -> Any:
    if isinstance(v, uuid.UUID):
        return v
    if type(v) is str:
        try:
            uuid.UUID(v)
        except ValueError:
            pass
        else:
            return v
    elif isinstance(v, Binary) and v.subtype == 4:
        return v.as_uuid()
    raise Mismatch("UUID", v)


def _parse_iso_datetime(v: str, expected: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(v)
    except ValueError:
        raise Mismatch(expected, v) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_UTC)


def _timestamp(per_ms: int, logical: str) -> Plan:
    expected = f"{logical} (datetime or integer)"

    def plan(v: Any) -> Any:
        if isinstance(v, datetime):
            return v
        if isinstance(v, DatetimeMS):
            return int(v) * per_ms
        if isinstance(v, int) and not isinstance(v, bool) and _LONG_MIN <= v <= _LONG_MAX:
            return v
        if type(v) is str:
            return _parse_iso_datetime(v, expected)
        raise Mismatch(expected, v)

    return plan


def _w_date(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, int) and not isinstance(v, bool) and _INT_MIN <= v <= _INT_MAX:
        return v
    if type(v) is str:
        try:
            return date.fromisoformat(v)
        except ValueError:
            pass
    raise Mismatch("date (date or days since epoch)", v)


def _time(lo: int, hi: int, logical: str) -> Plan:
    expected = f"{logical} (time or integer)"

    def plan(v: Any) -> Any:
        if isinstance(v, time):
            return v
        if isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi:
            return v
        raise Mismatch(expected, v)

    return plan


def _decimal(precision: int, scale: int) -> Plan:
    expected = f"decimal(precision={precision}, scale={scale})"
    quantum = Decimal(1).scaleb(-scale)
    limit = 10**precision

    def plan(v: Any) -> Any:
        if isinstance(v, Decimal128):
            d = to_decimal(v)
        elif isinstance(v, Decimal):
            d = v
        elif isinstance(v, int) and not isinstance(v, bool):
            d = Decimal(v)
        elif isinstance(v, float):
            d = Decimal(repr(v))
        elif type(v) is str:
            try:
                d = Decimal(v)
            except InvalidOperation:
                raise Mismatch(expected, v) from None
        else:
            raise Mismatch(expected, v)
        if not d.is_finite():
            raise Mismatch(expected, v)
        exponent = d.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -scale:
            rounded = d.quantize(quantum)
            if rounded != d:
                raise Mismatch(f"{expected}: at most {scale} decimal places", v)
            d = rounded
        if abs(int(d.scaleb(scale))) >= limit:
            raise Mismatch(f"{expected}: at most {precision} digits", v)
        return d

    return plan


def _fixed(size: int, name: str) -> Plan:
    expected = f"fixed {name} ({size} bytes)"

    def plan(v: Any) -> Any:
        if isinstance(v, bytes | bytearray | memoryview) and len(v) == size:
            return v if isinstance(v, bytes) else bytes(v)
        raise Mismatch(expected, v)

    return plan


def _enum(symbols: list[str], name: str) -> Plan:
    allowed = frozenset(symbols)
    expected = f"one of enum {name} symbols {symbols}"

    def plan(v: Any) -> Any:
        if type(v) is str and v in allowed:
            return v
        raise Mismatch(expected, v)

    return plan


_PASSES: dict[Plan, type] = {_w_string: str, _w_boolean: bool, _w_double: float, _w_bytes: bytes}
"""Plans that return any value of one exact type as it is: such a value needs no call."""

_RANGES: dict[Plan, tuple[int, int]] = {
    _w_int: (_INT_MIN, _INT_MAX),
    _w_long: (_LONG_MIN, _LONG_MAX),
}
"""Integer plans, which return an ``int`` as it is when it is in their range."""


_ARRAYS_PASSING: weakref.WeakKeyDictionary[Plan, type] = weakref.WeakKeyDictionary()
"""Array plans whose items pass as they are when all of one exact type (by item type)."""


def _array(item: Plan) -> Plan:
    passes = _PASSES.get(item)
    only = {passes}

    def plan(v: Any) -> Any:
        if passes is not None and type(v) is list:  # the common case: one check per list
            kinds = set(map(type, v))
            if kinds == only or not kinds:
                return v
        if type(v) is not list:
            if not isinstance(v, list | tuple):
                raise Mismatch("array (a list)", v)
            v = list(v)
        out = None
        for index, x in enumerate(v):
            try:
                y = item(x)
            except Mismatch as exc:
                exc.path.append(index)
                raise
            if y is not x:
                if out is None:
                    out = list(v)
                out[index] = y
        return v if out is None else out

    if passes is not None:
        _ARRAYS_PASSING[plan] = passes
    return plan


def _map(values: Plan) -> Plan:
    def plan(v: Any) -> Any:
        if not isinstance(v, Mapping):
            raise Mismatch("map (an object)", v)
        out = None
        for key, x in v.items():
            if type(key) is not str:
                raise Mismatch("map with string keys", key)
            try:
                y = values(x)
            except Mismatch as exc:
                exc.path.append(key)
                raise
            if y is not x:
                if out is None:
                    out = dict(v)
                out[key] = y
        return v if out is None else out

    return plan


Field = tuple[str, Plan, bool, str]
"""A record field's write plan: name, plan, whether it may be missing, what it expects."""


def _coerce_fields(v: Any, fields: list[Field]) -> Any:
    """``v`` (a mapping) with each of ``fields`` checked and coerced; copied if one changed."""
    out = None
    for fname, fplan, optional, fexpected in fields:
        x = v.get(fname, _MISSING)
        if x is _MISSING:
            if optional:
                continue
            raise Mismatch(fexpected, _MISSING, [fname])
        try:
            y = fplan(x)
        except Mismatch as exc:
            exc.path.append(fname)
            raise
        if y is not x:
            if out is None:
                out = dict(v)
            out[fname] = y
    return v if out is None else out


def _record(name: str, fields: list[Field]) -> Plan:
    """A record's write plan.

    The fields whose plans pass a value of one exact type through (strings, booleans,
    doubles, bytes; integers in range; arrays of such items) are checked together first,
    by the types of their values; only the other fields' plans are called. A value of any other type (or a
    missing field) takes the field-by-field walk, so what is accepted and every error
    message stay the walk's.

    Example:
        >>> plan = _record("R", [("n", _w_long, False, "long"), ("s", _w_string, False, "string")])
        >>> plan({"n": 1, "s": "x"}), plan({"n": 1.0, "s": "x"})
        ({'n': 1, 's': 'x'}, {'n': 1, 's': 'x'})
        >>> plan({"n": 2**63, "s": "x"})
        Traceback (most recent call last):
        ...
        mstream.encodings.avro_plans.TooWide: n: integer 9223372036854775808 does not fit in 64 bits (Avro long)
    """
    expected = f"record {name} (an object)"
    names: list[str] = []
    kinds: list[type] = []
    ranged: list[tuple[int, int, int]] = []
    arrays: list[tuple[int, set[type]]] = []
    rest: list[Field] = []
    for field in fields:
        fplan = field[1]
        if fplan in _RANGES:
            ranged.append((len(names), *_RANGES[fplan]))
            kinds.append(int)
        elif fplan in _PASSES:
            kinds.append(_PASSES[fplan])
        elif fplan in _ARRAYS_PASSING:
            arrays.append((len(names), {_ARRAYS_PASSING[fplan]}))
            kinds.append(list)
        else:
            rest.append(field)
            continue
        names.append(field[0])
    quick_names, quick_kinds = tuple(names), tuple(kinds)

    def plan(v: Any) -> Any:
        if quick_names and type(v) is dict:
            values: tuple[Any, ...] = tuple(map(v.get, quick_names))
            if tuple(map(type, values)) == quick_kinds:
                for i, lo, hi in ranged:
                    if not lo <= values[i] <= hi:
                        break
                else:
                    for i, only in arrays:
                        items = set(map(type, values[i]))
                        if items and items != only:
                            break
                    else:
                        return _coerce_fields(v, rest) if rest else v
        elif type(v) is not dict and not isinstance(v, Mapping):
            raise Mismatch(expected, v)
        return _coerce_fields(v, fields)

    return plan


def _gate(schema: Any, named: Mapping[str, Any]) -> Callable[[Any], bool]:
    """A cheap type test: could a value of this Python type belong to this union branch?"""
    if isinstance(schema, str) and schema not in _PRIMITIVES:
        schema = named[schema]
    kind = schema if isinstance(schema, str) else schema.get("type")
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if kind == "null":
        return lambda v: v is None
    if kind == "boolean":
        return lambda v: isinstance(v, bool)
    if logical == "decimal":
        return lambda v: (
            isinstance(v, Decimal | Decimal128 | int | float) and not isinstance(v, bool)
        )
    if kind in ("int", "long"):
        if logical in ("timestamp-millis", "timestamp-micros") or (
            logical and logical.startswith("local-timestamp")
        ):
            return lambda v: (
                isinstance(v, datetime | DatetimeMS)
                or (isinstance(v, int) and not isinstance(v, bool))
            )
        if logical == "date":
            return lambda v: isinstance(v, date) or (isinstance(v, int) and not isinstance(v, bool))
        if logical in ("time-millis", "time-micros"):
            return lambda v: isinstance(v, time) or (isinstance(v, int) and not isinstance(v, bool))
        return lambda v: isinstance(v, int) and not isinstance(v, bool)
    if kind in ("float", "double"):
        return lambda v: (
            isinstance(v, float | int | Decimal | Decimal128) and not isinstance(v, bool)
        )
    if kind == "string":
        if logical == OBJECT_ID:
            return lambda v: isinstance(v, str | ObjectId)
        if logical == "uuid":
            return lambda v: isinstance(v, str | uuid.UUID | Binary)
        return lambda v: isinstance(v, str | ObjectId | uuid.UUID | Decimal128)
    if kind in ("bytes", "fixed"):
        return lambda v: isinstance(v, bytes | bytearray | memoryview)
    if kind == "enum":
        return lambda v: isinstance(v, str)
    if kind in ("record", "error", "map"):
        return lambda v: isinstance(v, Mapping)
    if kind == "array":
        return lambda v: isinstance(v, list | tuple)
    return lambda v: True


def _describe(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return " or ".join(_describe(s) for s in schema)
    kind = schema.get("type")
    logical = schema.get("logicalType")
    if logical == "decimal":
        return f"decimal(precision={schema.get('precision')}, scale={schema.get('scale', 0)})"
    if logical == OBJECT_ID:
        return "ObjectId (24 hex characters)"
    if logical:
        return str(logical)
    if kind in ("record", "error", "enum", "fixed"):
        return f"{kind} {schema.get('name')}"
    if kind == "array":
        return f"array of {_describe(schema.get('items'))}"
    if kind == "map":
        return f"map of {_describe(schema.get('values'))}"
    return str(kind)


def _union(branches: list[Any], plans: list[Plan], named: Mapping[str, Any]) -> Plan:
    expected = " or ".join(_describe(b) for b in branches)
    if len(branches) == 2 and "null" in branches:
        other = plans[1] if branches[0] == "null" else plans[0]

        def optional(v: Any) -> Any:
            if v is None:
                return None
            try:
                return other(v)
            except Mismatch as exc:
                if not exc.path:
                    exc.expected = expected
                raise

        return optional

    gated = [(_gate(b, named), p) for b, p in zip(branches, plans, strict=True)]

    def plan(v: Any) -> Any:
        first_error: Mismatch | None = None
        for gate, branch_plan in gated:
            if gate(v):
                try:
                    return branch_plan(v)
                except Mismatch as exc:
                    if first_error is None:
                        first_error = exc
        if first_error is not None and first_error.path:
            raise first_error
        raise Mismatch(expected, v)

    return plan


# ---------------------------------------------------------------------------- read plans


def _r_long(v: Any) -> Any:
    return Int64(v)


def _r_decimal(v: Any) -> Any:
    try:
        return from_decimal(v)
    except (BSONError, ValueError, TypeError, ArithmeticError):
        return v  # more digits than Decimal128 holds: keep the exact Decimal


def _r_object_id(v: Any) -> Any:
    return ObjectId(v) if type(v) is str and ObjectId.is_valid(v) else v


def _r_array(item: Plan) -> Plan:
    def plan(v: Any) -> Any:
        for index, x in enumerate(v):
            if x is not None:
                v[index] = item(x)
        return v

    return plan


def _r_map(values: Plan) -> Plan:
    def plan(v: Any) -> Any:
        for key, x in v.items():
            if x is not None:
                v[key] = values(x)
        return v

    return plan


def _r_record(fields: list[tuple[str, Plan]]) -> Plan:
    def plan(v: Any) -> Any:
        for fname, fplan in fields:
            x = v.get(fname)
            if x is not None:
                v[fname] = fplan(x)
        return v

    return plan


# ------------------------------------------------------------------------------ compiler


class _Compiler:
    """Builds write and read plans for one parsed schema (recursive types allowed)."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self.write_boxes: dict[str, list[Plan | None]] = {}
        self.read_boxes: dict[str, list[Plan | None]] = {}
        self.read_building: set[str] = set()

    # -- write

    def write(self, schema: Any) -> Plan:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return self._write_primitive(schema, None, {})
            return self._write_named(schema)
        if isinstance(schema, list):
            return _union(schema, [self.write(b) for b in schema], self.named)
        kind = schema.get("type")
        if isinstance(kind, list | dict):
            return self.write(kind)
        logical = schema.get("logicalType")
        if kind in _PRIMITIVES:
            return self._write_primitive(kind, logical, schema)
        if kind in ("record", "error"):
            return self._write_record(schema)
        if kind == "enum":
            return _enum(list(schema["symbols"]), schema.get("name", "enum"))
        if kind == "fixed":
            if logical == "decimal":
                return _decimal(int(schema["precision"]), int(schema.get("scale", 0)))
            return _fixed(int(schema["size"]), schema.get("name", "fixed"))
        if kind == "array":
            return _array(self.write(schema["items"]))
        if kind == "map":
            return _map(self.write(schema["values"]))
        if isinstance(kind, str) and kind in self.named:
            return self._write_named(kind)
        raise ValueError(f"unsupported Avro type {kind!r}")

    def _write_primitive(self, kind: str, logical: str | None, schema: Mapping[str, Any]) -> Plan:
        if logical == "decimal" and kind == "bytes":
            return _decimal(int(schema["precision"]), int(schema.get("scale", 0)))
        if kind == "string":
            if logical == OBJECT_ID:
                return _w_object_id
            if logical == "uuid":
                return _w_uuid
            return _w_string
        if kind == "long":
            if logical in ("timestamp-millis", "local-timestamp-millis"):
                return _timestamp(1, logical)
            if logical in ("timestamp-micros", "local-timestamp-micros"):
                return _timestamp(1000, logical)
            if logical == "time-micros":
                return _time(0, 86_400_000_000, logical)
            return _w_long
        if kind == "int":
            if logical == "date":
                return _w_date
            if logical == "time-millis":
                return _time(0, 86_400_000, logical)
            return _w_int
        return {
            "null": _w_null,
            "boolean": _w_boolean,
            "float": _w_double,
            "double": _w_double,
            "bytes": _w_bytes,
        }[kind]

    def _write_named(self, name: str) -> Plan:
        box = self.write_boxes.get(name)
        if box is not None:
            done = box[0]
            if done is not None:
                return done
            return lambda v: box[0](v)  # type: ignore[misc]  # recursive type: bound later
        return self.write(self.named[name])

    def _write_record(self, schema: Mapping[str, Any]) -> Plan:
        name = schema.get("name", "record")
        box: list[Plan | None] = [None]
        self.write_boxes[name] = box
        fields = []
        for field in schema["fields"]:
            ftype = field["type"]
            optional = "default" in field or _accepts_null(ftype, self.named)
            fields.append((field["name"], self.write(ftype), optional, _describe(ftype)))
        plan = _record(name, fields)
        box[0] = plan
        return plan

    # -- read (None means: nothing to convert)

    def read(self, schema: Any) -> Plan | None:
        if isinstance(schema, str):
            if schema == "long":
                return _r_long
            if schema in _PRIMITIVES:
                return None
            return self._read_named(schema)
        if isinstance(schema, list):
            return self._read_union(schema)
        kind = schema.get("type")
        if isinstance(kind, list | dict):
            return self.read(kind)
        logical = schema.get("logicalType")
        if logical == "decimal" and kind in ("bytes", "fixed"):
            return _r_decimal
        if kind == "string" and logical == OBJECT_ID:
            return _r_object_id
        if kind == "long":
            return _r_long if logical is None else None
        if kind in ("record", "error"):
            return self._read_record(schema)
        if kind == "array":
            item = self.read(schema["items"])
            return _r_array(item) if item is not None else None
        if kind == "map":
            values = self.read(schema["values"])
            return _r_map(values) if values is not None else None
        if isinstance(kind, str) and kind in self.named and kind not in _PRIMITIVES:
            return self._read_named(kind)
        return None

    def _read_named(self, name: str) -> Plan | None:
        box = self.read_boxes.get(name)
        if box is not None:
            if name in self.read_building:
                return lambda v: box[0](v) if box[0] is not None else v
            return box[0]
        return self.read(self.named[name])

    def _read_record(self, schema: Mapping[str, Any]) -> Plan | None:
        name = schema.get("name", "record")
        box: list[Plan | None] = [None]
        self.read_boxes[name] = box
        self.read_building.add(name)
        fields = []
        for field in schema["fields"]:
            fplan = self.read(field["type"])
            if fplan is not None:
                fields.append((field["name"], fplan))
        self.read_building.discard(name)
        plan = _r_record(fields) if fields else None
        box[0] = plan
        return plan

    def _read_union(self, branches: list[Any]) -> Plan | None:
        plans = [(b, self.read(b)) for b in branches if b != "null"]
        if not any(p is not None for _, p in plans):
            return None
        if len(plans) == 1:
            return plans[0][1]
        typed: list[tuple[Callable[[Any], bool], Plan | None]] = []
        for branch, plan in plans:
            resolved = self.named.get(branch, branch) if isinstance(branch, str) else branch
            if isinstance(resolved, dict) and resolved.get("type") in ("record", "error"):
                names = frozenset(f["name"] for f in resolved["fields"])
                typed.append((_record_gate(names), plan))
            else:
                typed.append((_read_gate(resolved), plan))

        def union(v: Any) -> Any:
            for gate, plan in typed:
                if gate(v):
                    return plan(v) if plan is not None else v
            return v

        return union


def _record_gate(names: frozenset[str]) -> Callable[[Any], bool]:
    def gate(v: Any) -> bool:
        return type(v) is dict and v.keys() == names

    return gate


def _read_gate(schema: Any) -> Callable[[Any], bool]:
    """Which decoded Python type a (non-record) union branch produces."""
    kind = schema if isinstance(schema, str) else schema.get("type")
    logical = None if isinstance(schema, str) else schema.get("logicalType")
    if logical == "decimal":
        return lambda v: isinstance(v, Decimal)
    if kind in ("int", "long") and logical is None:
        return lambda v: type(v) is int
    if kind in ("bytes", "fixed"):
        return lambda v: isinstance(v, bytes)
    if kind == "map":
        return lambda v: type(v) is dict
    if kind == "array":
        return lambda v: type(v) is list
    if kind in ("string", "enum"):
        return lambda v: type(v) is str
    if kind == "boolean":
        return lambda v: type(v) is bool
    if kind in ("float", "double"):
        return lambda v: type(v) is float
    return lambda v: False


def _accepts_null(schema: Any, named: Mapping[str, Any]) -> bool:
    if schema == "null":
        return True
    if isinstance(schema, list):
        return "null" in schema
    if isinstance(schema, dict) and isinstance(schema.get("type"), list | dict):
        return _accepts_null(schema["type"], named)
    return False


def compile_plans(parsed: Mapping[str, Any] | list[Any] | str) -> tuple[Plan, Plan | None]:
    """Compile the write plan and read plan of a schema parsed by ``fastavro.parse_schema``.

    Args:
        parsed: the parsed schema (named types referenced by full name).

    Returns:
        ``(write, read)``: ``write(doc)`` validates and returns the document ready for the
        Avro writer (raising :class:`Mismatch`); ``read(doc)`` converts a decoded document
        in place to MongoDB types, or is ``None`` when there is nothing to convert.

    Raises:
        ValueError: the schema uses a construct the compiler does not know.

    Example:
        >>> write, read = compile_plans("long")
        >>> write(5), type(read(5)).__name__
        (5, 'Int64')
    """
    named: Mapping[str, Any] = {}
    if isinstance(parsed, dict):
        named = parsed.get("__named_schemas", {})
    compiler = _Compiler(named)
    return compiler.write(parsed), compiler.read(parsed)
