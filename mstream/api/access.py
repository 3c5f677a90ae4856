"""Who may reach the API: the token rule, the cross-site rules and log masking.

- Bound to a non-loopback address, the API always needs a bearer token: without
  ``MSTREAM_API_TOKEN`` the ``mstream`` command generates one and prints how to use it
  (:func:`ensure_token`), as Jupyter does; :func:`~mstream.api.app.start_server` refuses
  to serve such an address without a token.
- A request with an ``Origin`` header must come from the API's own origin or one listed in
  ``MSTREAM_API_ALLOWED_ORIGINS`` (comma separated).
- Served on loopback, the ``Host`` header must name loopback (``localhost``, ``127.0.0.1``,
  ``[::1]`` with the port) or a name in ``MSTREAM_API_ALLOWED_HOSTS``: this defeats DNS
  rebinding.
- Writes carry ``Content-Type: application/json`` (a bodiless write may omit it), so a web
  page cannot send one as a "simple" form or text request.

Example:
    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    >>> mask_token_query("/jobs?token=s3cret&limit=5")
    '/jobs?token=***&limit=5'
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from mstream.service import ServiceOptions

ENV_ALLOWED_ORIGINS = "MSTREAM_API_ALLOWED_ORIGINS"
ENV_ALLOWED_HOSTS = "MSTREAM_API_ALLOWED_HOSTS"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
"""The host names a loopback-bound API answers to (each with the port it is served on)."""
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_TOKEN_QUERY = re.compile(r"([?&]token=)[^&#]*", re.IGNORECASE)


def is_loopback(host: str) -> bool:
    """Whether a bind address or host name is loopback only.

    Example:
        >>> is_loopback("::1"), is_loopback("[::1]"), is_loopback(""), is_loopback("example.org")
        (True, True, False, False)
    """
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def env_list(name: str, environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """A comma-separated environment variable as a set of lower-case entries.

    Example:
        >>> sorted(env_list("X", {"X": " https://a.example, HTTP://B.example:8080 ,"}))
        ['http://b.example:8080', 'https://a.example']
    """
    env = os.environ if environ is None else environ
    return frozenset(p.strip().lower() for p in env.get(name, "").split(",") if p.strip())


def mask_token_query(uri: str) -> str:
    """The URI with every ``token=`` query value replaced by ``***`` (for logs)."""
    return _TOKEN_QUERY.sub(r"\1***", uri)


def host_error(host: str, port: int, allowed_hosts: frozenset[str]) -> str | None:
    """Why a loopback-served API refuses this ``Host`` header (None when it accepts it).

    Example:
        >>> host_error("localhost:8719", 8719, frozenset()) is None
        True
        >>> host_error("evil.example:8719", 8719, frozenset())
        "Host 'evil.example:8719' is not this API (localhost:8719, 127.0.0.1:8719, ..."
        >>> host_error("box.lan:8719", 8719, frozenset({"box.lan"})) is None
        True
    """
    value = host.strip().lower()
    if value in {f"{name}:{port}" for name in LOOPBACK_NAMES}:
        return None
    if port == 80 and value in LOOPBACK_NAMES:
        return None
    name = value.rsplit(":", 1)[0] if not value.endswith("]") else value
    if value in allowed_hosts or name in allowed_hosts:
        return None
    return (
        f"Host {host[:200]!r} is not this API (localhost:{port}, 127.0.0.1:{port}, "
        f"[::1]:{port} or {ENV_ALLOWED_HOSTS})"
    )


def origin_error(origin: str, own_origin: str, allowed_origins: frozenset[str]) -> str | None:
    """Why a request from ``origin`` is refused (None when it is the API's own or allowed).

    Example:
        >>> origin_error("http://127.0.0.1:8719", "http://127.0.0.1:8719", frozenset()) is None
        True
        >>> origin_error("https://evil.example", "http://127.0.0.1:8719", frozenset())
        "cross-site request refused: Origin 'https://evil.example' is not ..."
    """
    value = origin.strip().lower()
    if value == own_origin.lower() or value in allowed_origins:
        return None
    return (
        f"cross-site request refused: Origin {origin[:200]!r} is not {own_origin} "
        f"(allow more with {ENV_ALLOWED_ORIGINS})"
    )


def content_type_error(method: str, content_type: str | None, has_body: bool) -> str | None:
    """Why a write is refused for its content type (None when it is JSON or bodiless).

    Example:
        >>> content_type_error("POST", "application/json; charset=utf-8", True) is None
        True
        >>> content_type_error("POST", None, False) is None
        True
        >>> content_type_error("POST", "text/plain", True)
        "POST needs Content-Type: application/json (got 'text/plain')"
    """
    if method.upper() not in WRITE_METHODS:
        return None
    if content_type is None:
        return f"{method} with a body needs Content-Type: application/json" if has_body else None
    if content_type.split(";", 1)[0].strip().lower() == "application/json":
        return None
    return f"{method} needs Content-Type: application/json (got {content_type[:100]!r})"


def ensure_token(options: ServiceOptions, stream: TextIO | None = None) -> str | None:
    """Give an API bound to a non-loopback address a token when it has none.

    A random token is generated and set on ``options``; how to use it (the dashboard URL
    with ``?token=`` and the ``curl`` header) is printed once to ``stream`` (stderr).

    Returns:
        The generated token, or None when none was needed.

    Example:
        >>> import io
        >>> from mstream.service import ServiceOptions
        >>> opts, out = ServiceOptions(api_host="0.0.0.0"), io.StringIO()
        >>> token = ensure_token(opts, out)
        >>> opts.api_token == token and "Authorization: Bearer " + token in out.getvalue()
        True
        >>> ensure_token(ServiceOptions()) is None  # loopback: no token needed
        True
    """
    if not options.api or options.api_token or is_loopback(options.api_host):
        return None
    token = secrets.token_urlsafe(32)
    options.api_token = token
    host = options.api_host if options.api_host not in ("0.0.0.0", "::", "") else "<this-host>"
    base = f"http://{host}:{options.api_port}"
    print(
        f"mstream: the API listens on {options.api_host}:{options.api_port} and "
        "MSTREAM_API_TOKEN is not set, so this token was generated for this run:\n"
        f"    dashboard: {base}/?token={token}\n"
        f"    curl -H 'Authorization: Bearer {token}' {base}/jobs\n"
        "Set MSTREAM_API_TOKEN to choose a token that survives restarts.",
        file=stream if stream is not None else sys.stderr,
        flush=True,
    )
    return token
