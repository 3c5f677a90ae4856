"""Masking secrets in text, in time linear in the text, and capping what gets logged.

Log records, API error messages and script output can hold text an attacker chose, so
nothing here backtracks: URLs are found by looking for ``://`` with :meth:`str.find`,
walking a bounded scheme back and a single character class forward, query parameters are
split on single separator characters, and
secret values are replaced with :meth:`str.replace`. Each piece of the text is looked at a
bounded number of times.

Example:
    >>> mask_text("cannot connect to mongodb://a:b@h:1 (password xyz123)", ["xyz123"])
    'cannot connect to mongodb://a:****@h:1 (password ****)'
    >>> cap_text("x" * 20, 8)
    'xxxxxxxx… [truncated 12 chars]'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "****"
MAX_MESSAGE_CHARS = 8 * 1024
"""Log records and echoed errors are cut to this many characters, with a visible mark."""

_SECRET_PARAM_PARTS = ("password", "secret", "token")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_MAX_SCHEME = 32
# single character classes only: matching them never backtracks
_URL_BODY = re.compile(r"[^\s'\"<>]*")
_QUERY_SEPARATORS = re.compile(r"([&;?#])")


def cap_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with a mark saying how much was cut.

    Example:
        >>> cap_text("short")
        'short'
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [truncated {len(text) - limit:,} chars]"


def _mask_query(query: str) -> str:
    """Mask the values of ``password``/``secret``/``token``-like parameters.

    The split is on single separator characters (one pass, nothing to backtrack).
    """
    parts = _QUERY_SEPARATORS.split(query)
    for i in range(0, len(parts), 2):  # odd indexes are the separators themselves
        part = parts[i]
        eq = part.find("=")
        if eq > 0 and any(p in part[:eq].lower() for p in _SECRET_PARAM_PARTS):
            parts[i] = part[: eq + 1] + MASK
    return "".join(parts)


def mask_connection_string(value: str) -> str:
    """Hide the password of ``scheme://user:password@host`` and secret query parameters.

    Example:
        >>> mask_connection_string("mongodb+srv://u:p%40ss@c0.example.net/db?authSource=admin")
        'mongodb+srv://u:****@c0.example.net/db?authSource=admin'
        >>> mask_connection_string("https://h/x?api_token=abc&x=1")
        'https://h/x?api_token=****&x=1'
        >>> mask_connection_string("localhost:9092")
        'localhost:9092'
    """
    out = value
    start = out.find("://")
    if start >= 0:
        rest = out[start + 3 :]
        at = rest.rfind("@")
        if at >= 0:
            userinfo = rest[:at]
            if ":" in userinfo:
                user = userinfo.split(":", 1)[0]
                out = f"{out[: start + 3]}{user}:{MASK}{rest[at:]}"
    query = out.find("?")
    if query < 0:
        return out
    return out[:query] + _mask_query(out[query:])


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask URL credentials anywhere in free text, and the given secret values.

    Linear in ``len(text)``: a megabyte of adversarial text (runs of letters, ``@``,
    ``:`` and ``//``) is masked in milliseconds.

    Example:
        >>> mask_text("see https://u:pw@h/p?token=t and http://x")
        'see https://u:****@h/p?token=**** and http://x'
    """
    pieces: list[str] = []
    done = 0  # text[:done] is in pieces already
    search = 0
    while True:
        sep = text.find("://", search)
        if sep < 0:
            break
        begin = sep
        floor = max(done, sep - _MAX_SCHEME)
        while begin > floor and text[begin - 1] in _SCHEME_CHARS:
            begin -= 1
        body = _URL_BODY.match(text, sep + 3)
        end = body.end() if body else sep + 3
        if begin < sep and text[begin].isalpha():
            pieces.append(text[done:begin])
            pieces.append(mask_connection_string(text[begin:end]))
            done = end
        search = end
    pieces.append(text[done:])
    out = "".join(pieces)
    for secret in secrets:
        if secret and secret in out:
            out = out.replace(secret, MASK)
    return out


def mask_and_cap(text: str, secrets: Iterable[str] = (), limit: int = MAX_MESSAGE_CHARS) -> str:
    """Mask then cap, looking at no more than a bounded window of ``text``.

    Only the first ``limit`` characters plus a margin (the longest secret and a URL's
    worth) are masked, so the cost per record is bounded however long the text is, and a
    secret that straddles the cut is masked before the cut, never half shown.

    Example:
        >>> mask_and_cap("a" * 10 + "pw-secret" + "b" * 30, ["pw-secret"], limit=12)
        'aaaaaaaaaa**… [truncated 32 chars]'
    """
    secrets = [s for s in secrets if s]
    if len(text) <= limit:
        return mask_text(text, secrets)
    margin = max((len(s) for s in secrets), default=0) + 2048
    masked = mask_text(text[: limit + margin], secrets)
    cut = max(0, len(text) - limit - margin)  # characters never looked at
    if len(masked) <= limit:
        return f"{masked}… [truncated {cut:,} chars]"
    return f"{masked[:limit]}… [truncated {len(masked) - limit + cut:,} chars]"
