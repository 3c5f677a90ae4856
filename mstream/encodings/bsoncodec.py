"""BSON documents, read and written with pymongo's C-accelerated ``bson`` package.

Reading gives tz-aware UTC datetimes (``DatetimeMS`` for instants outside Python's
datetime range), ``Int64`` for int64 values, ``bytes`` for binary subtype 0 and ``Binary``
for other subtypes. Writing also accepts the Python types other decoders produce and BSON
has no native type for: ``decimal.Decimal`` (written as Decimal128), ``datetime.date``
(midnight UTC), ``uuid.UUID`` (binary subtype 4) and sets (arrays). An integer outside the
signed 64-bit range is not written in another type: the document is refused with the
field path and the digits.

Example:
    >>> from bson import ObjectId
    >>> doc = {"_id": ObjectId("65a1b2c3d4e5f60718293a4b"), "n": 1}
    >>> decode_bson(encode_bson(doc)) == doc
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import bson
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions, DatetimeConversion, TypeRegistry
from bson.errors import BSONError

from mstream.encodings.bigint import wide_int_error
from mstream.encodings.dec128 import from_decimal
from mstream.errors import DecodeError, EncodeError

__all__ = ["decode_bson", "encode_bson"]


def _fallback(value: Any) -> Any:
    """Called by the BSON encoder only for values it has no codec for."""
    if isinstance(value, Decimal):
        return from_decimal(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, set | frozenset):
        return list(value)
    return value


DECODE_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(
    tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO
)
ENCODE_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(
    tz_aware=True,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    uuid_representation=UuidRepresentation.STANDARD,
    type_registry=TypeRegistry(fallback_encoder=_fallback),
)


def encode_bson(doc: Any) -> bytes:
    """Write a document as BSON.

    Args:
        doc: a mapping (BSON has no top-level array or scalar).

    Returns:
        The BSON bytes.

    Raises:
        EncodeError: ``doc`` is not a mapping, or holds a value BSON cannot store (for an
            integer wider than int64 the message names its field and digits).

    Example:
        >>> encode_bson({"a": 1})
        b'\\x0c\\x00\\x00\\x00\\x10a\\x00\\x01\\x00\\x00\\x00\\x00'
        >>> encode_bson([1])
        Traceback (most recent call last):
        ...
        mstream.errors.EncodeError: bson: a document must be an object (dict), got list
        >>> encode_bson({"id": 18446744073709551617})
        Traceback (most recent call last):
        ...
        mstream.errors.EncodeError: bson: field 'id': integer 18446744073709551617 does not fit in 64 bits (BSON int64)
    """
    if not isinstance(doc, Mapping):
        raise EncodeError(f"bson: a document must be an object (dict), got {type(doc).__name__}")
    try:
        return bson.encode(doc, codec_options=ENCODE_OPTIONS)
    except OverflowError as exc:  # "MongoDB can only handle up to 8-byte ints"
        reason = wide_int_error(doc, "BSON int64")
        if reason is None:
            raise EncodeError(f"bson: cannot encode document: {exc}") from exc
        raise EncodeError(f"bson: {reason}") from exc
    except (BSONError, TypeError, ValueError) as exc:
        raise EncodeError(f"bson: cannot encode document: {exc}") from exc


def decode_bson(payload: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Read one BSON document.

    Args:
        payload: exactly one BSON document.

    Returns:
        The document.

    Raises:
        DecodeError: the bytes are not one well-formed BSON document.

    Example:
        >>> decode_bson(b'\\x0c\\x00\\x00\\x00\\x10a\\x00\\x01\\x00\\x00\\x00\\x00')
        {'a': 1}
        >>> decode_bson(b'\\x0c\\x00\\x00')
        Traceback (most recent call last):
        ...
        mstream.errors.DecodeError: bson: invalid BSON (3 bytes): not enough data for a BSON ...
    """
    try:
        return bson.decode(payload, codec_options=DECODE_OPTIONS)
    except (BSONError, ValueError, TypeError, OverflowError) as exc:
        raise DecodeError(f"bson: invalid BSON ({len(payload)} bytes): {exc}") from exc
