"""Fast conversions between ``bson.Decimal128`` and ``decimal.Decimal``.

pymongo converts Decimal128 with bit loops in pure Python (about 4 us each way), which
dominated the cost of events with a money field. These functions handle every finite value
with at most 34 digits and an in-range exponent directly from the BID bits (about 0.5 us)
and fall back to pymongo for anything else (NaN, infinities, non-canonical encodings), so
results are always identical to pymongo's.

Example:
    >>> from decimal import Context, Decimal
    >>> to_decimal(Decimal128("129.990"))
    Decimal('129.990')
    >>> from_decimal(Decimal("-0.5"))
    Decimal128('-0.5')
    >>> decimal128_str(Decimal128("1E+3"))
    '1E+3'
"""

from __future__ import annotations

import struct
from decimal import Context, Decimal

from bson.decimal128 import Decimal128

__all__ = ["decimal128_str", "from_decimal", "from_str", "to_decimal"]

_UNPACK = struct.Struct("<QQ").unpack
_SPECIAL = 3 << 61  # combination field "11": NaN, infinity or a large-coefficient form
_BIAS = 6176
_MAX_EXPONENT = 6111
_MAX_COEFFICIENT = 10**34 - 1
_LOW_MASK = (1 << 64) - 1
_COEFFICIENT_HIGH_MASK = (1 << 49) - 1
_EXACT = Context(prec=34, Emax=999_999, Emin=-999_999)  # 34 digits: scaling never rounds


def _bid_bits(value: Decimal128) -> tuple[int, int]:
    low, high = _UNPACK(value.bid)
    return high, low


def _private_bits(value: Decimal128) -> tuple[int, int]:
    return value._Decimal128__high, value._Decimal128__low  # type: ignore[attr-defined]


# pymongo keeps the two 64-bit halves in private attributes; reading them directly is 4x
# cheaper than packing and unpacking ``bid``. Fall back to ``bid`` if that ever changes.
_bits = (
    _private_bits if _bid_bits(Decimal128("1.5")) == _private_bits(Decimal128("1.5")) else _bid_bits
)


def to_decimal(value: Decimal128) -> Decimal:
    """The exact ``Decimal`` of a ``Decimal128`` (same result as ``value.to_decimal()``).

    Args:
        value: the Decimal128.

    Returns:
        The Decimal.

    Example:
        >>> to_decimal(Decimal128("-0"))
        Decimal('-0')
    """
    high, low = _bits(value)
    if high & _SPECIAL == _SPECIAL:
        return value.to_decimal()
    coefficient = ((high & _COEFFICIENT_HIGH_MASK) << 64) | low
    exponent = ((high >> 49) & 0x3FFF) - _BIAS
    if coefficient > _MAX_COEFFICIENT or exponent > _MAX_EXPONENT:
        return value.to_decimal()
    if high >> 63:
        return Decimal(f"-{coefficient}E{exponent}")
    return Decimal(coefficient).scaleb(exponent, _EXACT) if exponent else Decimal(coefficient)


def decimal128_str(value: Decimal128) -> str:
    """``str(value)``, fast.

    Args:
        value: the Decimal128.

    Returns:
        Its canonical string, as pymongo and MongoDB Extended JSON write it.

    Example:
        >>> decimal128_str(Decimal128("0.000001"))
        '0.000001'
    """
    result = to_decimal(value)
    return "NaN" if result.is_nan() else str(result)


def from_decimal(value: Decimal) -> Decimal128:
    """The ``Decimal128`` of a ``Decimal`` (same result as ``Decimal128(value)``).

    Args:
        value: the Decimal.

    Returns:
        The Decimal128 (rounded to 34 digits by pymongo when it has more).

    Raises:
        decimal.InvalidOperation: the value does not fit (pymongo's error).

    Example:
        >>> from_decimal(Decimal("12.50"))
        Decimal128('12.50')
    """
    sign, digits, exponent = value.as_tuple()
    if type(exponent) is not int or len(digits) > 34 or not -_BIAS <= exponent <= _MAX_EXPONENT:
        return Decimal128(value)
    coefficient = int(value.copy_abs().scaleb(-exponent, _EXACT)) if exponent else abs(int(value))
    high = (sign << 63) | ((exponent + _BIAS) << 49) | (coefficient >> 64)
    return Decimal128((high, coefficient & _LOW_MASK))  # type: ignore[arg-type]


def from_str(text: str) -> Decimal128:
    """Parse a decimal string into ``Decimal128`` (same result as ``Decimal128(text)``).

    Args:
        text: e.g. ``"12.50"``, ``"-1E+3"``, ``"NaN"``, ``"Infinity"``.

    Returns:
        The Decimal128.

    Raises:
        decimal.InvalidOperation: the text is not a number.

    Example:
        >>> from_str("12.50")
        Decimal128('12.50')
    """
    return from_decimal(Decimal(text))
