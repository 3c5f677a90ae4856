"""Integers wider than 64 bits: finding them in a document and naming them in an error.

A JSON integer has no size limit and mstream reads it exactly (a Python ``int``), so JSON
to JSON keeps ``18446744073709551617`` as it is. The other targets hold at most a signed
64-bit integer: BSON ``int64``, Avro ``long`` and a Lua 5.4 integer. A wider integer is
never changed to fit (no float, no string, no Decimal128 unless a schema asks for a
decimal); the event is rejected and the reason names the field path and the digits, so
the dead-letter record says exactly what could not be written and where.

Paths are written as in schema validation messages: object keys joined by ``.``, array
indexes in brackets (``items[2].qty``).

Example:
    >>> find_wide_int({"a": [1, {"b": 2**64}]})
    ('a[1].b', 18446744073709551616)
    >>> wide_int_error({"id": -(2**63) - 1}, "BSON int64")
    "field 'id': integer -9223372036854775809 does not fit in 64 bits (BSON int64)"
    >>> wide_int_error({"id": -(2**63)}, "BSON int64") is None
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["INT64_MAX", "INT64_MIN", "find_wide_int", "too_wide", "wide_int_error"]

INT64_MIN = -(2**63)
"""The smallest integer BSON, Avro ``long`` and Lua hold."""

INT64_MAX = 2**63 - 1
"""The largest integer BSON, Avro ``long`` and Lua hold."""


def too_wide(value: int, target: str) -> str:
    """Say that ``value`` does not fit in ``target``, with all its digits.

    Args:
        value: the integer (``bool`` and ``int`` subclasses are written as plain digits).
        target: the type that cannot hold it, e.g. ``"BSON int64"``.

    Returns:
        The problem, without the field path.

    Example:
        >>> too_wide(2**64, "Avro long")
        'integer 18446744073709551616 does not fit in 64 bits (Avro long)'
    """
    return f"integer {int.__repr__(value)} does not fit in 64 bits ({target})"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _find(value: Any, path: str) -> tuple[str, int] | None:
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else (path, value)
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _find(item, _join(path, str(key)))
            if found is not None:
                return found
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            found = _find(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def find_wide_int(doc: Any) -> tuple[str, int] | None:
    """The first integer outside the signed 64-bit range, in document order.

    Args:
        doc: a document (mappings, lists, tuples and sets are searched).

    Returns:
        ``(path, value)``, the path empty when ``doc`` itself is the integer; ``None``
        when every integer fits.

    Example:
        >>> find_wide_int([{"n": 1}, {"n": -(2**63) - 1}])
        ('[1].n', -9223372036854775809)
        >>> find_wide_int({"n": 2**63 - 1}) is None
        True
    """
    return _find(doc, "")


def wide_int_error(doc: Any, target: str) -> str | None:
    """The reason to reject ``doc`` for ``target``, if it holds an integer wider than 64 bits.

    Args:
        doc: the document.
        target: the type that cannot hold the integer, e.g. ``"Lua integer"``.

    Returns:
        ``"field '<path>': integer <digits> does not fit in 64 bits (<target>)"`` for the
        first such integer (``"document: ..."`` when ``doc`` is the integer), else ``None``.

    Example:
        >>> wide_int_error({"order": {"lines": [{"qty": 10**20}]}}, "BSON int64")
        "field 'order.lines[0].qty': integer 100000000000000000000 does not fit in 64 bits (BSON int64)"
    """
    found = _find(doc, "")
    if found is None:
        return None
    path, value = found
    subject = f"field '{path}'" if path else "document"
    return f"{subject}: {too_wide(value, target)}"
