"""Pure-Python implementations of the helper functions scripts can call.

The sandbox exposes them to Lua through small Lua wrappers (see :mod:`.sandbox`), so a
script never holds a reference to a Python object. They never raise: input they cannot
handle is returned unchanged.

Example:
    >>> mask_email("alice@example.com")
    'a***@example.com'
    >>> mask_phone("+49 170 1234567")
    '+** *** ***4567'
    >>> mask_year_only("1990-05-17")
    '1990-01-01'
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime, timedelta

__all__ = [
    "hash_sha256",
    "mask_email",
    "mask_phone",
    "mask_year_only",
    "mask_year_only_millis",
    "timestamp_ms",
]

_DATE_ONLY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DIGITS = frozenset("0123456789")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp_ms() -> int:
    """Return the current UNIX time in milliseconds.

    Example:
        >>> timestamp_ms() > 1_600_000_000_000
        True
    """
    return time.time_ns() // 1_000_000


def hash_sha256(text: str) -> str:
    """Return the hex SHA-256 digest of ``text`` encoded as UTF-8.

    Example:
        >>> hash_sha256("abc")[:16]
        'ba7816bf8f01cfea'
    """
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def mask_email(email: str) -> str:
    """Keep the first character of the local part and the domain, mask the rest.

    A local part of one character becomes ``*``; a value without ``@`` is returned as is.

    Example:
        >>> mask_email("alice@example.com"), mask_email("a@x.org"), mask_email("nope")
        ('a***@example.com', '*@x.org', 'nope')
    """
    local, at, domain = email.partition("@")
    if not at:
        return email
    return ("*" if len(local) <= 1 else local[0] + "***") + "@" + domain


def mask_phone(phone: str) -> str:
    """Replace every ASCII digit except the last four with ``*``; keep other characters.

    A value with four digits or fewer is returned as is.

    Example:
        >>> mask_phone("555-123-4567")
        '***-***-4567'
    """
    total = sum(1 for ch in phone if ch in _DIGITS)
    to_mask = total - 4
    if to_mask <= 0:
        return phone
    out = []
    for ch in phone:
        if to_mask > 0 and ch in _DIGITS:
            out.append("*")
            to_mask -= 1
        else:
            out.append(ch)
    return "".join(out)


def mask_year_only(value: str) -> str:
    """Truncate a date string to the first day of its year, keeping its form.

    ``YYYY-MM-DD`` gives ``YYYY-01-01``. An ISO-8601 date-time with an offset (or ``Z``)
    gives ``YYYY-01-01T00:00:00Z`` where the year is the year of the instant in UTC; a
    date-time without offset gives ``YYYY-01-01T00:00:00``. Anything unparsable is
    returned unchanged.

    Example:
        >>> mask_year_only("1990-05-17T10:00:00Z")
        '1990-01-01T00:00:00Z'
    """
    match = _DATE_ONLY.match(value)
    if match:
        try:
            datetime(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            return value
        return f"{match[1]}-01-01"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        return f"{parsed.year:04d}-01-01T00:00:00"
    return f"{parsed.astimezone(UTC).year:04d}-01-01T00:00:00Z"


def mask_year_only_millis(millis: str) -> str:
    """Truncate UNIX milliseconds (as a decimal string) to 1 January of the UTC year.

    Example:
        >>> mask_year_only_millis("642902400000")  # 1990-05-17
        '631152000000'
    """
    try:
        instant = _EPOCH + timedelta(milliseconds=int(millis))
    except (ValueError, OverflowError):
        return millis
    start = datetime(instant.year, 1, 1, tzinfo=UTC)
    return str((start - _EPOCH) // timedelta(milliseconds=1))
