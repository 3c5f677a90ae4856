"""The API's shared pieces: its context, the JSON error shape and the base handler.

Every error response has one shape::

    {"error": {"status": 400, "message": "...", "fields": {"sinks[0].output_encoding": "..."}}}

``fields`` is present for validation errors only. Bad input never yields a 5xx or a
traceback: :meth:`ApiHandler.write_error` is the only place responses for errors are
written, and it writes the message of the error, never its traceback.

Example:
    >>> fields_from_problems(["sinks[0].output_encoding: must be json or bson",
    ...                       "name: missing required field"])
    {'sinks[0].output_encoding': 'must be json or bson', 'name': 'missing required field'}
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import inspect
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tornado.ioloop import IOLoop
from tornado.web import HTTPError, RequestHandler, stream_request_body

from mstream.api.access import (
    ENV_ALLOWED_HOSTS,
    ENV_ALLOWED_ORIGINS,
    content_type_error,
    env_list,
    host_error,
    is_loopback,
    origin_error,
)
from mstream.errors import ConfigError, ConflictError, MstreamError, NotFoundError, StoreError
from mstream.log_buffer import LogBuffer
from mstream.registry import mask_text
from mstream.runtime import JobManager

log = logging.getLogger("mstream.api")

T = TypeVar("T")

DEFAULT_MAX_BODY = 1024 * 1024
"""Request bodies above this many bytes get 413."""
MAX_ERROR_BYTES = 8 * 1024
"""Error messages echoed in an answer are cut to this many bytes (with a visible mark)."""
DISCARD_LIMIT = 64 * 1024 * 1024
"""Up to this size an oversized body is read and discarded (so the client reads the 413);
beyond it the connection is closed after the 413."""


@dataclass
class ApiContext:
    """What every handler gets through ``initialize()``.

    Attributes:
        manager: the job manager (jobs, services, stores).
        executor: where blocking work (stop, restart, store I/O) runs, off the IOLoop.
        token: when set, every call except ``GET /``, ``GET /static/*`` and the minimal
            ``GET /health`` needs ``Authorization: Bearer <token>``.
        allowed_origins: origins besides the API's own that may call it
            (``MSTREAM_API_ALLOWED_ORIGINS``, comma separated).
        allowed_hosts: ``Host`` names besides loopback that a loopback-bound API answers
            (``MSTREAM_API_ALLOWED_HOSTS``, comma separated).
        max_body_size: request bodies above this many bytes get 413.
        started_at: when the service started (seconds since the epoch).
        stop_timeout: seconds a stop or restart may take to drain.
        logs: the recent log (``GET /logs``), when the process keeps one.
        logs_preload: entries ``GET /logs/stream`` sends first by default.
    """

    manager: JobManager
    executor: Executor = field(
        default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="mstream-api")
    )
    token: str | None = None
    max_body_size: int = DEFAULT_MAX_BODY
    started_at: float = field(default_factory=time.time)
    stop_timeout: float = 30.0
    allowed_origins: frozenset[str] = field(default_factory=lambda: env_list(ENV_ALLOWED_ORIGINS))
    allowed_hosts: frozenset[str] = field(default_factory=lambda: env_list(ENV_ALLOWED_HOSTS))
    loopback_only: bool | None = None
    logs: LogBuffer | None = None
    logs_preload: int = 100


def cap_text(text: str, limit: int = MAX_ERROR_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, with a mark saying how much was cut.

    Example:
        >>> cap_text("short")
        'short'
        >>> cap_text("x" * 100, 40)
        'xxxxxxx... [truncated: 100 bytes in all]'
    """
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    mark = f"... [truncated: {len(raw)} bytes in all]"
    head = raw[: max(0, limit - len(mark.encode("utf-8")))].decode("utf-8", "ignore")
    return head + mark


class ApiError(HTTPError):
    """An HTTP error with a JSON body.

    Args:
        status: the HTTP status.
        message: what went wrong (no secrets).
        fields: per-field problems for validation errors.

    Example:
        >>> ApiError(404, "job 'x' not found").message
        "job 'x' not found"
    """

    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.message = message
        self.fields = fields


def fields_from_problems(problems: list[str]) -> dict[str, str]:
    """``path: message`` lines (from :class:`ConfigError`) as a field → message map; a
    dotted key quoted in the path (``"sasl.password"``) is named without its quotes.

    Example:
        >>> fields_from_problems(['"sasl.pasword": unsupported Kafka option'])
        {'sasl.pasword': 'unsupported Kafka option'}
    """
    out: dict[str, str] = {}
    for line in problems:
        path, sep, message = line.partition(": ")
        key = path.strip().replace('"', "") if sep else ""
        text = message if sep else line
        if not key:
            key = "body"
        out[key] = f"{out[key]}; {text}" if key in out else text
    return out


def to_api_error(exc: BaseException) -> ApiError | None:
    """The HTTP error for one of mstream's own exceptions (None for anything else).

    Example:
        >>> to_api_error(ConfigError(["name: missing required field"])).status_code
        400
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ConfigError):
        fields = fields_from_problems(exc.problems)
        first = exc.problems[0] if exc.problems else "invalid request"
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        return ApiError(400, f"invalid request: {first}{more}", fields)
    if isinstance(exc, NotFoundError):
        return ApiError(404, str(exc))
    if isinstance(exc, ConflictError):
        return ApiError(409, str(exc))
    if isinstance(exc, StoreError):
        return ApiError(503, f"state store unavailable: {exc}")
    if isinstance(exc, MstreamError):
        return ApiError(400, str(exc))
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback: sets and tuples as lists, anything else as text."""
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def dumps(value: Any) -> str:
    """JSON text of a response body (NaN and infinities become null)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), default=json_default, ensure_ascii=False)


@stream_request_body
class ApiHandler(RequestHandler):
    """Base of every API handler: auth, body cap, JSON in/out, JSON errors.

    Bodies are streamed: at most ``max_body_size`` bytes are kept, larger ones are read
    and dropped and answered with 413.
    """

    open_access = False
    """Whether this handler is reachable without the bearer token."""

    def initialize(self, ctx: ApiContext) -> None:
        """Receive the dependencies (Tornado calls this with the route's kwargs)."""
        self.ctx = ctx
        self.manager = ctx.manager
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._pending: ApiError | None = None

    # -- request -------------------------------------------------------------------------

    def set_default_headers(self) -> None:
        """JSON responses that are never cached or sniffed."""
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Make every handler method raise the request's pending error first."""
        super().__init_subclass__(**kwargs)
        for method in ("get", "post", "delete"):
            if method in cls.__dict__:
                setattr(cls, method, _guarded(cls.__dict__[method]))

    def early_error(self) -> ApiError | None:
        """An error known from the headers alone (a subclass may add its own).

        In order: a foreign ``Host`` on a loopback-bound API or a foreign ``Origin`` (403),
        a missing or wrong token (401), a write whose body is not JSON (415).
        """
        refused = self.cross_site_error()
        if refused is not None:
            return ApiError(403, refused)
        if self.ctx.token and not self.open_access and not self.authenticated():
            return ApiError(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
        headers = self.request.headers
        has_body = headers.get("Content-Length", "0").strip() not in ("", "0") or (
            "Transfer-Encoding" in headers
        )
        wrong_type = content_type_error(
            self.request.method or "", headers.get("Content-Type"), has_body
        )
        return ApiError(415, wrong_type) if wrong_type is not None else None

    def cross_site_error(self) -> str | None:
        """Why this request looks cross-site (None when it does not)."""
        local = self._local_address()
        loopback = self.ctx.loopback_only
        if local is not None and (is_loopback(local[0]) if loopback is None else loopback):
            wrong_host = host_error(self.request.host, local[1], self.ctx.allowed_hosts)
            if wrong_host is not None:
                return wrong_host
        origin = self.request.headers.get("Origin")
        if origin is None:
            return None
        own = f"{self.request.protocol}://{self.request.host}"
        return origin_error(origin, own, self.ctx.allowed_origins)

    def _local_address(self) -> tuple[str, int] | None:
        stream = getattr(self.request.connection, "stream", None)
        sock = getattr(stream, "socket", None)
        if sock is None:
            return None
        address = sock.getsockname()
        return str(address[0]), int(address[1])

    def authenticated(self) -> bool:
        """Whether the request may see everything: no token is set, or it carries it."""
        return not self.ctx.token or self._token_ok()

    def prepare(self) -> None:
        """Check the token and the declared body size before the body is read.

        An error found here is raised by the handler method, after the body has been read
        (and dropped): answering before the request is fully read would make Tornado close
        the connection, which breaks keep-alive clients. Only a body declared larger than
        ``DISCARD_LIMIT`` is refused at once.
        """
        declared = self.request.headers.get("Content-Length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise ApiError(400, "Content-Length is not a number") from None
            if length > self.ctx.max_body_size:
                self._too_large = True
                if length > DISCARD_LIMIT:
                    raise ApiError(413, self._too_large_message())
        self._pending = self.early_error()
        connection = self.request.connection
        if connection is not None and hasattr(connection, "set_max_body_size"):
            connection.set_max_body_size(DISCARD_LIMIT)

    def _token_ok(self) -> bool:
        header = self.request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value:
            return False
        expected = (self.ctx.token or "").encode("utf-8")
        return hmac.compare_digest(value.strip().encode("utf-8"), expected)

    def _too_large_message(self) -> str:
        return f"request body is larger than {self.ctx.max_body_size} bytes"

    def data_received(self, chunk: bytes) -> None:
        """Keep the body up to the cap; drop the rest."""
        self._size += len(chunk)
        if self._size > self.ctx.max_body_size:
            self._too_large = True
            self._chunks.clear()
        elif not self._too_large and self._pending is None:
            self._chunks.append(chunk)

    def json_body(self) -> Any:
        """The request body as JSON.

        Raises:
            ApiError: 413 for a body over the cap, 400 for an empty or malformed body.
        """
        if self._too_large:
            raise ApiError(413, self._too_large_message())
        raw = b"".join(self._chunks)
        if not raw.strip():
            raise ApiError(400, "request body must be a JSON object", {"body": "missing"})
        try:
            text = raw.decode("utf-8")
            return json.loads(text, parse_constant=_reject_constant)
        except UnicodeDecodeError:
            raise ApiError(400, "request body is not UTF-8", {"body": "not UTF-8"}) from None
        except (ValueError, RecursionError) as exc:
            detail = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
            raise ApiError(
                400, f"request body is not valid JSON: {detail}", {"body": "invalid JSON"}
            ) from None

    def _check_online(self) -> bool:
        """``?check=online``: run the online checks before creating (offline ones always run)."""
        value = self.get_query_argument("check", "offline")
        if value not in ("offline", "online"):
            raise ApiError(400, "check must be offline or online", {"check": f"got {value[:20]!r}"})
        return value == "online"

    def has_body(self) -> bool:
        """Whether the request carried a (non-blank) body."""
        return self._too_large or bool(b"".join(self._chunks).strip())

    def json_object(self) -> dict[str, Any]:
        """The request body, which must be a JSON object."""
        body = self.json_body()
        if not isinstance(body, dict):
            raise ApiError(
                400,
                f"request body must be a JSON object, got {type(body).__name__}",
                {"body": "expected an object"},
            )
        return body

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in the executor (never on the IOLoop); map mstream errors to HTTP."""
        loop = IOLoop.current()
        return await self.lifecycle(
            loop.run_in_executor(self.ctx.executor, lambda: fn(*args, **kwargs))
        )

    async def lifecycle(self, operation: Awaitable[T]) -> T:
        """Await a job manager coroutine (it runs on this loop); map mstream errors to HTTP."""
        with _as_api_errors():
            return await operation

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a quick, non-blocking ``fn`` on the loop; map mstream errors to HTTP."""
        with _as_api_errors():
            return fn(*args, **kwargs)

    # -- response ------------------------------------------------------------------------

    def send_json(self, value: Any, status: int = 200) -> None:
        """Write ``value`` as the JSON response."""
        self.set_status(status)
        self.finish(dumps(value))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error as ``{"error": {"status", "message", "fields"?}}``; no tracebacks."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if status_code == 405 and self._pending is not None:  # unauthenticated or unknown path
            exc = self._pending
            status_code = exc.status_code
            self.set_status(status_code)
        fields: dict[str, str] | None = None
        if isinstance(exc, ApiError):
            message = exc.message
            fields = exc.fields
        elif isinstance(exc, HTTPError):
            message = (
                exc.log_message % exc.args
                if exc.log_message and exc.args
                else exc.log_message or self._reason
            )
            if status_code == 405:
                message = f"method {self.request.method} is not allowed here"
        elif status_code >= 500:
            message = "internal error; see the service log"
        else:
            message = self._reason
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="mstream"')
        if status_code == 405:
            allowed = [m for m in ("GET", "POST", "DELETE") if self._implements(m)]
            self.set_header("Allow", ", ".join(allowed))
        error: dict[str, Any] = {"status": status_code, "message": cap_text(str(message))}
        if fields:
            error["fields"] = {cap_text(k, 256): cap_text(str(v)) for k, v in fields.items()}
        self.finish(dumps({"error": error}))

    def _implements(self, method: str) -> bool:
        impl = getattr(type(self), method.lower(), None)
        return impl is not None and impl is not getattr(RequestHandler, method.lower(), None)

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        """Client errors at debug level; server errors with their traceback, secrets masked."""
        if isinstance(value, HTTPError):
            log.debug(
                "%s %s -> %d: %s",
                self.request.method,
                self.request.path,
                value.status_code,
                getattr(value, "message", value.log_message),
            )
            return
        secrets = self.manager.registry.secret_values()
        log.error(
            "%s %s failed: %s",
            self.request.method,
            mask_text(self.request.path, secrets),
            mask_text(f"{type(value).__name__}: {value}", secrets),
            exc_info=value,
        )

    def on_connection_close(self) -> None:
        """Nothing to clean up: blocking work finishes in the executor."""


@contextmanager
def _as_api_errors() -> Iterator[None]:
    """Raise mstream errors as the API's HTTP errors (others go on as they are)."""
    try:
        yield
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        mapped = to_api_error(exc)
        if mapped is None:
            raise
        raise mapped from None


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a handler method so that a pending (deferred) error is raised first."""

    @functools.wraps(fn)
    async def method(self: ApiHandler, *args: str) -> None:
        if self._pending is not None:
            raise self._pending
        result = fn(self, *args)
        if inspect.isawaitable(result):
            await result

    return method
