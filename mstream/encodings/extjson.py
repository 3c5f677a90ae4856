"""JSON with MongoDB Extended JSON (relaxed mode), built on orjson.

A document is JSON text; MongoDB types that JSON has no type for are written as Extended
JSON wrappers so they keep their meaning when the JSON goes back to BSON:

=====================  ==================================================================
Python value           JSON
=====================  ==================================================================
``ObjectId``           ``{"$oid": "65a1b2c3d4e5f60718293a4b"}``
``datetime``           ``{"$date": "2024-01-02T03:04:05.678Z"}`` for years 1970-9999
                       (relaxed form, millisecond precision, UTC), otherwise
                       ``{"$date": {"$numberLong": "<ms since epoch>"}}``
``Decimal128``         ``{"$numberDecimal": "12.50"}`` (also for ``decimal.Decimal``)
``Int64``              a plain number (relaxed mode, see below)
``bytes`` / ``Binary``  ``{"$binary": {"base64": "...", "subType": "00"}}``
``date`` (no time)     ``{"$date": ...}`` at midnight UTC
others (``Regex``,     what :mod:`bson.json_util` writes in relaxed mode
``Timestamp``, ...)
=====================  ==================================================================

Int64 decision: like MongoDB's relaxed Extended JSON, an ``Int64`` is written as a plain
number, because JSON consumers (Kafka, HTTP services) expect numbers. The value is never
lost: a JSON integer decodes to ``int`` and BSON stores an ``int`` as int32 when it fits
and as int64 otherwise, so only the declared width of a *small* Int64 is not kept. A
producer that needs the width sends ``{"$numberLong": "5"}``, which decodes to ``Int64``.
Avro ``long`` fields decode to ``Int64``.

Reading accepts canonical and relaxed forms (``$oid``, ``$date`` as ISO string, number or
``$numberLong``, ``$numberDecimal``, ``$numberLong``, ``$numberInt``, ``$numberDouble``,
``$binary`` in both the v2 and legacy ``$type`` forms, ``$uuid``, and through
:mod:`bson.json_util` ``$regex``, ``$timestamp``, ``$minKey``, ``$maxKey``, ``$code``,
``$symbol``, ``$dbPointer``, ``$ref``/``$id``). Other ``$`` keys (``{"$set": ...}``) are
ordinary keys.

Integers are exact at any size. orjson reads integers from -2**63 to 2**64 - 1 exactly
but silently makes a float of anything wider (``18446744073709551617`` would arrive as
``1.8446744073709552e+19``), and refuses to write such an integer. So a payload in which
20 or more digits and ``-`` signs follow each other (the shortest integer orjson floats,
``-9223372036854775809``, has 20 such characters) is read again with :mod:`json`, which
keeps integers exact; writing a document that holds such an integer falls back to writing
it as an ``orjson.Fragment`` of its digits. Targets that hold only 64 bits (BSON, Avro
``long``, Lua) reject the integer with its field path and digits, see
:mod:`mstream.encodings.bigint`. An ``{"$numberLong": ...}`` outside the signed 64-bit
range is an invalid wrapper, as is a ``{"$numberInt": ...}`` outside 32 bits. orjson
refuses an integer of 309 digits or more ("number is infinity when parsed as double"), so
such a payload is a decode error, never a changed value.

Speed: orjson parses and writes; the tree is walked to convert wrappers only when the
payload contains a ``$``, and writing uses orjson's ``default`` hook, which orjson calls
only for values it cannot write itself. The wide-integer check is one ``bytes.translate``
and one substring search over the payload: measured, it adds about 0.3-0.4 us to reading
a 100-200 byte document (about a third more) and about 6 us to a 9 KB one (a fifth more);
only payloads that pass it are parsed a second time (about 4x the time of orjson alone).
Writing costs nothing more unless orjson refuses an integer. Non-finite floats (NaN,
infinity) are written as ``null`` by orjson.

Example:
    >>> from bson import ObjectId
    >>> dumps({"_id": ObjectId("65a1b2c3d4e5f60718293a4b"), "n": 1})
    b'{"_id":{"$oid":"65a1b2c3d4e5f60718293a4b"},"n":1}'
    >>> loads(b'{"_id":{"$oid":"65a1b2c3d4e5f60718293a4b"},"n":1}')
    {'_id': ObjectId('65a1b2c3d4e5f60718293a4b'), 'n': 1}
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import orjson
from bson import json_util
from bson.binary import Binary, UuidRepresentation
from bson.codec_options import DatetimeConversion
from bson.datetime_ms import DatetimeMS
from bson.decimal128 import Decimal128
from bson.errors import BSONError
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.tz_util import utc as _BSON_UTC

from mstream.encodings.bigint import INT64_MAX, INT64_MIN, find_wide_int
from mstream.encodings.dec128 import decimal128_str, from_str
from mstream.errors import DecodeError, EncodeError

__all__ = ["all_plain_valid", "dumps", "loads", "loads_each", "loads_plain", "ms_to_datetime"]

_UTC = UTC
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)
_DUMPS_OPTS = orjson.OPT_PASSTHROUGH_DATETIME

# The bytes a JSON integer is made of ("0"-"9", "-") become "0", every other byte a space:
# a run of 20 of them, the shortest integer orjson reads as a float, becomes _WIDE_RUN.
_INTEGER_BYTES = bytes(48 if 48 <= b <= 57 or b == 45 else 32 for b in range(256))
_WIDE_RUN = b"0" * 20

_JSON_OPTIONS = json_util.JSONOptions(
    json_mode=json_util.JSONMode.RELAXED,
    tz_aware=True,
    tzinfo=_UTC,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    uuid_representation=UuidRepresentation.UNSPECIFIED,
)

# Wrapper keys handed to bson.json_util (rare types, no fast path needed).
_JSON_UTIL_KEYS = frozenset(
    {
        "$regex",
        "$options",
        "$timestamp",
        "$minKey",
        "$maxKey",
        "$code",
        "$scope",
        "$symbol",
        "$dbPointer",
        "$ref",
        "$id",
        "$db",
        "$undefined",
    }
)


def ms_to_datetime(ms: int) -> datetime | DatetimeMS:
    """Milliseconds since the Unix epoch as a UTC datetime (``DatetimeMS`` if out of range).

    Args:
        ms: milliseconds since 1970-01-01T00:00:00Z.

    Returns:
        A tz-aware UTC datetime, or a :class:`bson.datetime_ms.DatetimeMS` when the instant
        is outside the years Python's datetime can hold.

    Example:
        >>> ms_to_datetime(1500)
        datetime.datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=datetime.timezone.utc)
    """
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return DatetimeMS(ms)


def _datetime_json(value: datetime) -> dict[str, Any]:
    tz = value.tzinfo
    if (tz is _UTC or tz is _BSON_UTC) and 1970 <= value.year <= 9999:
        return {"$date": value.isoformat(timespec="milliseconds")[:-6] + "Z"}
    if tz is not None:
        offset = value.utcoffset()
        value = value.replace(tzinfo=None)
        if offset:
            value -= offset
    if 1970 <= value.year <= 9999:
        return {"$date": value.isoformat(timespec="milliseconds") + "Z"}
    ms = (value - _EPOCH_NAIVE) // _ONE_MS
    return {"$date": {"$numberLong": str(ms)}}


def _binary_json(data: bytes, subtype: int) -> dict[str, Any]:
    return {
        "$binary": {"base64": base64.b64encode(data).decode("ascii"), "subType": f"{subtype:02x}"}
    }


def _default(value: Any) -> Any:
    """orjson ``default`` hook: called only for values orjson cannot write natively."""
    cls = type(value)
    if cls is ObjectId:
        return {"$oid": str(value)}
    if cls is datetime or isinstance(value, datetime):
        return _datetime_json(value)
    if cls is Decimal128:
        return {"$numberDecimal": decimal128_str(value)}
    if cls is Decimal:
        return {"$numberDecimal": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        subtype = value.subtype if isinstance(value, Binary) else 0
        return _binary_json(bytes(value), subtype)
    if cls is DatetimeMS:
        return {"$date": {"$numberLong": str(int(value))}}
    if cls is date:
        return _datetime_json(datetime(value.year, value.month, value.day))
    if cls is time:
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return list(value)
    # Rare BSON types (Regex, Timestamp, MinKey, Code, DBRef, ...); raises TypeError when
    # the value has no JSON form, which orjson reports as an encode error.
    return json_util.default(value, json_options=_JSON_OPTIONS)


def dumps(doc: Any) -> bytes:
    """Write a document as JSON bytes with Extended JSON wrappers for MongoDB types.

    Args:
        doc: a document (any JSON-able value, MongoDB types allowed).

    Returns:
        UTF-8 JSON.

    Raises:
        EncodeError: a value has no JSON form (e.g. an object of an unknown class, a
            non-string key).

    Example:
        >>> from datetime import UTC, datetime
        >>> dumps({"at": datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)})
        b'{"at":{"$date":"2024-01-02T03:04:05.678Z"}}'
        >>> dumps({"id": 2**64 + 1})  # wider than orjson writes: exact all the same
        b'{"id":18446744073709551617}'
    """
    try:
        return orjson.dumps(doc, default=_default, option=_DUMPS_OPTS)
    except orjson.JSONEncodeError as exc:
        if find_wide_int(doc) is None:
            raise EncodeError(f"json: cannot encode document: {exc}") from exc
    try:
        return orjson.dumps(_exact_ints(doc), default=_default, option=_DUMPS_OPTS)
    except orjson.JSONEncodeError as exc:
        raise EncodeError(f"json: cannot encode document: {exc}") from exc


def _exact_ints(value: Any) -> Any:
    """A copy of ``value`` with each integer orjson refuses as a Fragment of its digits."""
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else orjson.Fragment(int.__repr__(value))
    if isinstance(value, dict):
        return {key: _exact_ints(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_exact_ints(item) for item in value]
    return value


def _parse_date(value: Any) -> datetime | DatetimeMS:
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=_UTC)
        if parsed.utcoffset():
            return parsed.astimezone(_UTC)
        return parsed if parsed.tzinfo is _UTC else parsed.replace(tzinfo=_UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return ms_to_datetime(int(value))
    raise ValueError("expected an ISO-8601 string or milliseconds since the epoch")


def _parse_binary(value: Any, legacy_type: Any = None) -> bytes | Binary:
    if legacy_type is not None:
        data, subtype_hex = value, legacy_type
    else:
        if not isinstance(value, dict) or set(value) != {"base64", "subType"}:
            raise ValueError('expected {"base64": ..., "subType": ...}')
        data, subtype_hex = value["base64"], value["subType"]
    if not isinstance(data, str) or not isinstance(subtype_hex, str):
        raise ValueError("base64 and subType must be strings")
    raw = base64.b64decode(data, validate=True)
    subtype = int(subtype_hex, 16)
    return raw if subtype == 0 else Binary(raw, subtype)


def _parse_number_double(value: Any) -> float:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return float(value)


def _parse_number_long(value: Any) -> Int64:
    if not isinstance(value, str):
        raise ValueError("expected a string of digits")
    number = int(value)
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError(f"{number} does not fit in 64 bits")
    return Int64(number)


def _parse_number_int(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError("expected a string of digits")
    number = int(value)
    if not -(2**31) <= number < 2**31:
        raise ValueError(f"{number} does not fit in 32 bits")
    return number


def _parse_decimal(value: Any) -> Decimal128:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return from_str(value)


def _parse_oid(value: Any) -> ObjectId:
    if not isinstance(value, str):
        raise ValueError("expected a 24-character hex string")
    return ObjectId(value)


def _parse_uuid(value: Any) -> Binary:
    if not isinstance(value, str):
        raise ValueError("expected a UUID string")
    return Binary(uuid.UUID(value).bytes, 4)


_SINGLE_KEY: dict[str, Callable[[Any], Any]] = {
    "$oid": _parse_oid,
    "$date": _parse_date,
    "$numberDecimal": _parse_decimal,
    "$numberLong": _parse_number_long,
    "$numberInt": _parse_number_int,
    "$numberDouble": _parse_number_double,
    "$binary": _parse_binary,
    "$uuid": _parse_uuid,
}


def _unwrap(obj: dict[str, Any]) -> Any:
    """Convert one Extended JSON wrapper (children already converted); else return ``obj``."""
    if len(obj) == 1:
        key = next(iter(obj))
        parser = _SINGLE_KEY.get(key)
        if parser is not None:
            return parser(obj[key])
    elif len(obj) == 2 and "$binary" in obj and "$type" in obj:
        return _parse_binary(obj["$binary"], obj["$type"])
    if not _JSON_UTIL_KEYS.isdisjoint(obj):
        return json_util.object_hook(obj, json_options=_JSON_OPTIONS)
    return obj


_BAD_WRAPPER = (ValueError, TypeError, KeyError, ArithmeticError, BSONError, binascii.Error)


def _bad_wrapper(key: str, obj: dict[str, Any], exc: Exception) -> DecodeError:
    shown = orjson.dumps(obj, default=_default, option=_DUMPS_OPTS)[:120].decode()
    return DecodeError(f"json: invalid Extended JSON {key} value {shown}: {exc}")


def _walk_dict(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        # Fast path for the common single-key wrappers ($oid, $date, $numberDecimal, ...).
        for key, inner in obj.items():
            parser = _SINGLE_KEY.get(key)
            if parser is None:
                break
            if type(inner) is dict:  # {"$date": {"$numberLong": ...}}, {"$binary": {...}}
                inner = _walk_dict(inner)
            try:
                return parser(inner)
            except _BAD_WRAPPER as exc:
                raise _bad_wrapper(key, obj, exc) from exc
    for key, value in obj.items():
        if type(value) is dict:
            obj[key] = _walk_dict(value)
        elif type(value) is list:
            _walk_list(value)
    for key in obj:
        if key[:1] == "$":
            try:
                return _unwrap(obj)
            except _BAD_WRAPPER as exc:
                raise _bad_wrapper(key, obj, exc) from exc
        break  # wrappers put their $ key first
    return obj


def _walk_list(items: list[Any]) -> None:
    for index, value in enumerate(items):
        if type(value) is dict:
            items[index] = _walk_dict(value)
        elif type(value) is list:
            _walk_list(value)


def _bytes(payload: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(payload, str):
        # surrogatepass: a lone surrogate becomes bytes orjson reports as invalid UTF-8
        return payload.encode("utf-8", "surrogatepass")
    return bytes(payload)


def _parse(payload: bytes) -> Any:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"json: invalid JSON: {exc}") from exc
    if _WIDE_RUN in payload.translate(_INTEGER_BYTES):
        # Maybe an integer orjson made a float of: read again, exactly. orjson accepted
        # the text, so it is strict JSON and json reads the same values.
        try:
            return json.loads(payload)
        except RecursionError:  # orjson allows 1024 levels, json about 1000
            raise DecodeError(
                "json: nested too deeply to read its integers exactly"
                " (an integer wider than 64 bits more than about 990 levels down)"
            ) from None
    return doc


def all_plain_valid(payloads: list[bytes]) -> bool:
    """Whether every payload is JSON that :func:`loads` reads without error, checked per chunk.

    The quick check for many payloads (a source's chunk), with no document made: scans
    over the chunk joined (no ``$``, so no Extended JSON wrapper; no integer orjson would
    read as a float; no exponent of three digits, which may overflow a double; valid
    UTF-8), then one pass of msgspec's validating parser over the payloads as one JSON
    array of raw values. Each value must span exactly its payload (same count, same
    lengths), so payloads cannot pair up into values across their boundaries. ``True``
    means :func:`loads` would decode each of them; ``False`` only that some payload needs
    :func:`loads` itself to tell (it may still be valid).

    Example:
        >>> all_plain_valid([b'{"a": 1}', b'[2]']), all_plain_valid([b'{"a": 1}', b'{'])
        (True, False)
        >>> all_plain_valid([b'{"at": {"$date": 0}}'])  # a wrapper: loads must convert it
        False
        >>> all_plain_valid([b'{"a": 1', b'"b": 2}'])  # valid only joined
        False
    """
    if not payloads:
        return True
    joined = _joined_if_plain(payloads)
    if joined is None or _has_long_exponent(joined):
        return False
    try:
        joined.decode("utf-8")
        values = _RAW_VALUES.decode(b"[" + joined + b"]")
    except (UnicodeDecodeError, msgspec.DecodeError):
        return False
    return len(values) == len(payloads) and list(map(len, values)) == list(map(len, payloads))


def loads_each(payloads: list[bytes]) -> list[Any]:
    """Each payload parsed as :func:`loads` parses it, its checks made once per chunk.

    One scan over the payloads joined looks for what only :func:`loads` handles (a ``$``:
    an Extended JSON wrapper; an integer orjson would read as a float); without either,
    orjson's documents are :func:`loads`'s, with no Python call per payload.

    Raises:
        DecodeError: a payload is not JSON (the first such, as :func:`loads` says it).

    Example:
        >>> loads_each([b'{"a": 1}', b'{"at": {"$date": 0}}'])[1]["at"].year
        1970
        >>> loads_each([b'{"n": 18446744073709551617}'])
        [{'n': 18446744073709551617}]
    """
    if _joined_if_plain(payloads) is not None:
        try:
            return list(map(orjson.loads, payloads))
        except orjson.JSONDecodeError:
            pass  # loads names the payload's fault
    return [loads(p) for p in payloads]


def _joined_if_plain(payloads: list[bytes]) -> bytes | None:
    """The payloads joined, if none holds a ``$`` or a run of 20 integer bytes; else None."""
    try:
        joined = b",".join(payloads)  # a comma ends any run of integer bytes
    except TypeError:  # not all bytes
        return None
    if b"$" in joined or _WIDE_RUN in joined.translate(_INTEGER_BYTES):
        return None
    return joined


_RAW_VALUES = msgspec.json.Decoder(list[msgspec.Raw])
"""Reads a JSON array into its values' raw bytes: validates without making documents."""

_EXPONENT_BYTES = bytes(48 if 48 <= b <= 57 else 101 if b in b"eE" else 32 for b in range(256))
"""Digits to ``0``, ``e``/``E`` to ``e``, the rest to spaces (signs are deleted)."""


def _has_long_exponent(joined: bytes) -> bool:
    """Whether ``joined`` may hold an exponent of three digits or more, one orjson may
    refuse ("number is infinity when parsed as double"). Signs are deleted, not mapped, so
    ``e300``, ``e+300`` and ``e-300`` are all found by one search; a sign between an ``e``
    and digits in a string (``one-123``) only makes a false alarm.

    Example:
        >>> [_has_long_exponent(t) for t in (b"1e+300", b"1E-300", b"2e30", b'"one-123"')]
        [True, True, False, True]
    """
    return b"e000" in joined.translate(_EXPONENT_BYTES, b"+-")


def loads_plain(payload: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON into plain Python values, integers exact, wrappers left as objects.

    Args:
        payload: UTF-8 JSON.

    Returns:
        ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` and ``None`` only: an
        Extended JSON wrapper stays the object it is (see :func:`loads` to convert them).

    Raises:
        DecodeError: the payload is not JSON (orjson also refuses an integer of 309 digits
            or more, "number is infinity when parsed as double"), or an integer wider than
            64 bits is nested about 1000 levels deep.

    Example:
        >>> loads_plain(b'{"id": 18446744073709551617, "at": {"$date": 0}}')
        {'id': 18446744073709551617, 'at': {'$date': 0}}
    """
    return _parse(payload if type(payload) is bytes else _bytes(payload))


def loads(payload: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON bytes, turning Extended JSON wrappers into MongoDB types.

    Args:
        payload: UTF-8 JSON.

    Returns:
        The document; wrappers become ``ObjectId``, tz-aware UTC ``datetime``,
        ``Decimal128``, ``Int64``, ``bytes``/``Binary``, ...; integers are exact at any
        size.

    Raises:
        DecodeError: the payload is not JSON, or a wrapper holds an invalid value.

    Example:
        >>> doc = loads(b'{"at": {"$date": "2024-01-02T03:04:05Z"}, "big": {"$numberLong": "7"}}')
        >>> doc["at"]
        datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
        >>> type(doc["big"]).__name__
        'Int64'
        >>> loads(b'{"id": -9223372036854775809}')
        {'id': -9223372036854775809}
    """
    if type(payload) is not bytes:
        payload = _bytes(payload)
    doc = _parse(payload)
    # memchr for one byte is far cheaper than a two-byte substring search; a "$" elsewhere
    # (say in a price string) only costs a walk that finds nothing.
    if b"$" in payload:
        if type(doc) is dict:
            return _walk_dict(doc)
        if type(doc) is list:
            _walk_list(doc)
    return doc
