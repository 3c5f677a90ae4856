"""``provider = "http"``: HTTP sink and HTTP middleware (POST with retries and backoff).

A **sink** POSTs each event to ``host/resource`` in the sink's ``output_encoding``; a
batch (``batch = { kind = "count", ... }``) is POSTed as one array (:func:`encode_batch`).
A **middleware** POSTs the same way and takes the response body, read in the step's
``output_encoding``, as the transformed event: one response per event for unbatched
chunks (attributes and metadata of the input event carry over; ``204 No Content`` drops
the event), one array per batch (the response must be an array in that encoding; its items
become the batch's new events, and when it has as many items as the request, attributes and
metadata carry over by position).

Content types: ``json`` → ``application/json``, ``bson`` → ``application/bson``, ``avro`` →
``avro/binary`` (responses may also say ``application/avro``; the content type of a response
is not checked, the body is read in the step's ``output_encoding``). Avro responses are read
with the schema of the input events.

Service options:

=========================  =======  ====================================================
``host``                   —        required, ``http://`` or ``https://`` base URL
``max_retries``            5        retries after the first attempt (0 = no retry)
``base_backoff_ms``        1000     first backoff; doubles per retry (±10 % jitter)
``max_backoff_ms``         30000    cap of one backoff
``connection_timeout_sec`` 30       TCP connect timeout
``timeout_sec``            30       read timeout (time to wait for response bytes)
``tcp_keepalive_sec``      300      idle seconds before TCP keep-alive probes (0 = off)
``pool_size``              10       connections kept per host (one pool per service)
``headers``                {}       extra request headers; a secret (masked, never logged)
=========================  =======  ====================================================

Retries: connection errors, timeouts, dropped connections, ``429`` and ``5xx`` are retried
with exponential backoff (``base_backoff_ms * 2**n`` with jitter, capped at
``max_backoff_ms``; a ``Retry-After`` header in seconds or as an HTTP date is honoured
instead, up to one hour). Each retry is counted (``counters.retries``); waits end at once
when the connector stops. When the retries are exhausted a
:class:`~mstream.errors.DeliveryError` fails the job, which restarts from its checkpoint, so
nothing is lost (events may be sent again: at-least-once). Any other ``4xx`` is not
retried: the event (or the batch's events) is dead-lettered with the status and the first
200 characters of the response body. Other statuses (``1xx``/``3xx`` after redirects) count
as failures like ``5xx``.

Connections: one ``requests.Session`` (and so one connection pool with HTTP keep-alive)
per service definition, shared by every step of that service in the process.

Example:
    >>> schema = HttpServiceSchema()
    >>> opts = schema.load({"host": "http://127.0.0.1:8080", "max_retries": 2})
    >>> opts["max_retries"], opts["base_backoff_ms"], opts["timeout_sec"]
    (2, 1000, 30.0)
    >>> backoff_delay(3, 1000, 30_000, jitter=0.0)
    8.0
    >>> content_type("bson")
    'application/bson'
"""

from __future__ import annotations

import email.utils
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import orjson
import requests
from marshmallow import Schema, ValidationError, fields, validate
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Batch, Event
from mstream.encodings import AvroSchema, decode, decode_batch, encode, encode_batch
from mstream.errors import DeliveryError, EventError, EventsRejectedError, RejectedError
from mstream.providers.base import Middleware, ProviderSpec, Reject, StepContext, SyncSink

log = logging.getLogger("mstream.providers.http")

CONTENT_TYPES = {"json": "application/json", "bson": "application/bson", "avro": "avro/binary"}
ACCEPT = {
    "json": "application/json",
    "bson": "application/bson",
    "avro": "avro/binary, application/avro",
}
EXCERPT_CHARS = 200
MAX_RETRY_AFTER_SEC = 3600.0


def content_type(encoding: str) -> str:
    """The ``Content-Type`` of a body in ``encoding``.

    Example:
        >>> content_type("json")
        'application/json'
    """
    return CONTENT_TYPES[encoding]


def _check_host(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(
            f"must be an http:// or https:// URL such as http://127.0.0.1:8080 (got {value!r})"
        )
    if parts.query or parts.fragment:
        raise ValidationError(f"must not have a query or fragment (got {value!r})")


class HttpServiceSchema(Schema):
    """Options of an ``http`` service (unknown keys are rejected)."""

    host = fields.String(required=True, validate=_check_host)
    max_retries = fields.Integer(
        load_default=5, strict=True, validate=validate.Range(min=0, max=100)
    )
    base_backoff_ms = fields.Integer(
        load_default=1000, strict=True, validate=validate.Range(min=0, max=600_000)
    )
    max_backoff_ms = fields.Integer(
        load_default=30_000, strict=True, validate=validate.Range(min=0, max=3_600_000)
    )
    connection_timeout_sec = fields.Float(
        load_default=30.0, validate=validate.Range(min=0.001, max=3600)
    )
    timeout_sec = fields.Float(load_default=30.0, validate=validate.Range(min=0.001, max=3600))
    tcp_keepalive_sec = fields.Integer(
        load_default=300, strict=True, validate=validate.Range(min=0, max=86_400)
    )
    pool_size = fields.Integer(
        load_default=10, strict=True, validate=validate.Range(min=1, max=1000)
    )
    headers = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


# -- sessions: one connection pool per service --------------------------------------------


def keepalive_socket_options(idle_sec: int) -> list[tuple[int, int, int]]:
    """Socket options turning on TCP keep-alive after ``idle_sec`` idle seconds.

    Example:
        >>> (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1) in keepalive_socket_options(60)
        True
        >>> keepalive_socket_options(0) == list(HTTPConnection.default_socket_options)
        True
    """
    options = list(HTTPConnection.default_socket_options)
    if idle_sec <= 0:
        return options
    options.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
    idle_opt = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)
    if idle_opt is not None:
        options.append((socket.IPPROTO_TCP, idle_opt, idle_sec))
    if hasattr(socket, "TCP_KEEPINTVL"):
        options.append((socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, min(idle_sec, 75))))
    if hasattr(socket, "TCP_KEEPCNT"):
        options.append((socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5))
    return options


class KeepAliveAdapter(HTTPAdapter):
    """An :class:`HTTPAdapter` whose pooled connections use the given socket options."""

    def __init__(self, socket_options: list[tuple[int, int, int]], pool_size: int) -> None:
        self.socket_options = socket_options
        super().__init__(pool_connections=4, pool_maxsize=pool_size, max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        """Create the pool manager with TCP keep-alive socket options."""
        pool_kwargs["socket_options"] = self.socket_options
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


@dataclass
class _Shared:
    session: requests.Session
    users: int = 0


_sessions: dict[tuple[str, bytes], _Shared] = {}
_sessions_lock = threading.Lock()


def _session_key(service: ServiceConfig) -> tuple[str, bytes]:
    return service.name, orjson.dumps(service.options, option=orjson.OPT_SORT_KEYS)


class SameHostSession(requests.Session):
    """A session that follows redirects only to the same scheme, host and port (at most
    five); a redirect elsewhere is answered as it came, and reported as refused."""

    max_redirects = 5

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        """The redirect's target, or ``None`` (do not follow) when it leaves the origin."""
        target = super().get_redirect_target(resp)
        if target is None:
            return None
        here, there = urlsplit(resp.url), urlsplit(urljoin(resp.url, target))
        if (here.scheme, here.hostname, here.port) != (there.scheme, there.hostname, there.port):
            return None
        return target


def acquire_session(service: ServiceConfig) -> requests.Session:
    """The shared session (connection pool) of ``service``; pair with :func:`release_session`.

    Steps of the same service definition share one session; a changed definition gets a new
    one.

    Example:
        >>> svc = ServiceConfig("api", "http", HttpServiceSchema().load({"host": "http://h"}))
        >>> acquire_session(svc) is acquire_session(svc)
        True
        >>> release_session(svc); release_session(svc)
    """
    key = _session_key(service)
    with _sessions_lock:
        shared = _sessions.get(key)
        if shared is None:
            opts = service.options
            session = SameHostSession()
            adapter = KeepAliveAdapter(
                keepalive_socket_options(int(opts.get("tcp_keepalive_sec", 300))),
                int(opts.get("pool_size", 10)),
            )
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update(opts.get("headers") or {})
            shared = _sessions[key] = _Shared(session)
        shared.users += 1
        return shared.session


def release_session(service: ServiceConfig) -> None:
    """Release one use of the service's session; the last release closes its pool."""
    key = _session_key(service)
    with _sessions_lock:
        shared = _sessions.get(key)
        if shared is None:
            return
        shared.users -= 1
        if shared.users > 0:
            return
        del _sessions[key]
    shared.session.close()


# -- requests with retries -----------------------------------------------------------------


def backoff_delay(retry: int, base_ms: int, max_ms: int, *, jitter: float = 0.1) -> float:
    """Seconds to wait before retry number ``retry`` (0-based): doubling, jittered, capped.

    Example:
        >>> [backoff_delay(n, 100, 1000, jitter=0.0) for n in range(5)]
        [0.1, 0.2, 0.4, 0.8, 1.0]
    """
    delay = min(base_ms * (2.0 ** min(retry, 40)), float(max_ms)) / 1000.0
    if jitter:
        delay *= random.uniform(1.0 - jitter, 1.0 + jitter)
    return delay


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), if valid.

    Example:
        >>> parse_retry_after("3"), parse_retry_after("soon"), parse_retry_after(None)
        (3.0, None, None)
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SEC)


def display_url(url: str) -> str:
    """``url`` without user info, for messages.

    Example:
        >>> display_url("https://user:pw@example.com:8443/path")
        'https://example.com:8443/path'
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def excerpt(body: bytes) -> str:
    """The first 200 characters of a response body, as text.

    Example:
        >>> len(excerpt(b"bad request: " + b"x" * 300)), excerpt(b" short ")
        (201, 'short')
    """
    text = body[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace").strip()
    return text[:EXCERPT_CHARS] + "…" if len(text) > EXCERPT_CHARS else text


class HttpRejected(Exception):
    """A non-retryable 4xx answer (internal; becomes a dead-letter reason)."""

    def __init__(self, message: str, status: int) -> None:
        self.status = status
        super().__init__(message)


_RETRYABLE_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class HttpClient:
    """POSTs bodies to one service with retries; shared logic of the sink and middleware.

    Args:
        service: the ``http`` service.
        ctx: the step context (counters, stopping, logger).
    """

    def __init__(self, service: ServiceConfig, ctx: StepContext) -> None:
        opts = service.options
        self.service = service
        self.host: str = str(opts["host"]).rstrip("/")
        self.max_retries: int = int(opts.get("max_retries", 5))
        self.base_backoff_ms: int = int(opts.get("base_backoff_ms", 1000))
        self.max_backoff_ms: int = int(opts.get("max_backoff_ms", 30_000))
        self.timeout = (
            float(opts.get("connection_timeout_sec", 30.0)),
            float(opts.get("timeout_sec", 30.0)),
        )
        self.ctx = ctx
        self.session: requests.Session | None = None

    def url(self, resource: str) -> str:
        """``host/resource``."""
        return f"{self.host}/{resource.lstrip('/')}"

    def open(self) -> None:
        """Take a session from the service's shared pool."""
        if self.session is None:
            self.session = acquire_session(self.service)

    def close(self) -> None:
        """Give the session back."""
        if self.session is not None:
            self.session = None
            release_session(self.service)

    def post(self, url: str, body: bytes, encoding: str, accept: str | None = None) -> Any:
        """POST ``body`` and return the successful (2xx) response.

        Raises:
            HttpRejected: a 4xx other than 429 (not retried).
            DeliveryError: retries exhausted, or the connector is stopping.
        """
        session = self.session
        if session is None:
            raise DeliveryError(f"HTTP client for {display_url(url)} is not open")
        headers = {"Content-Type": CONTENT_TYPES[encoding]}
        if accept is not None:
            headers["Accept"] = ACCEPT[accept]
        shown = display_url(url)
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                response = session.post(url, data=body, headers=headers, timeout=self.timeout)
                status = response.status_code
                if 200 <= status < 300:
                    return response
                text = excerpt(response.content)
                problem = f"HTTP {status} from {shown}: {text}"
                if 300 <= status < 400:
                    target = display_url(response.headers.get("Location", "")[:200])
                    raise HttpRejected(
                        f"HTTP {status} from {shown}: redirect to {target} not followed "
                        "(only redirects to the same host are)",
                        status,
                    )
                if 400 <= status < 500 and status != 429:
                    raise HttpRejected(problem, status)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            except _RETRYABLE_ERRORS as exc:
                problem = f"cannot POST to {shown}: {type(exc).__name__}: {_short(exc)}"
            if attempt + 1 >= attempts:
                raise DeliveryError(
                    f"{problem} (gave up after {attempts} attempt{'s' * (attempts > 1)})",
                    retry_after=retry_after,
                )
            delay = (
                retry_after
                if retry_after is not None
                else backoff_delay(attempt, self.base_backoff_ms, self.max_backoff_ms)
            )
            self.ctx.counters.record_retry()
            self.ctx.logger.info(
                "connector %s: %s; retry %d/%d in %.3fs",
                self.ctx.connector,
                problem,
                attempt + 1,
                self.max_retries,
                delay,
            )
            if self.ctx.stopping.wait(delay):
                raise DeliveryError(f"{problem} (connector stopping; not retried)")
        raise AssertionError("unreachable")  # pragma: no cover


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:300] + "…"


def _body_of(events: list[Event], encoding: str, batched: bool) -> bytes:
    if batched:
        schema: AvroSchema | None = events[0].schema if events else None
        return encode_batch([e.doc for e in events], encoding, schema)
    return events[0].payload


# -- sink ----------------------------------------------------------------------------------


class HttpSink(SyncSink):
    """POSTs events (or a batch as one array) to ``host/resource``.

    Example:
        >>> svc = ServiceConfig("api", "http", HttpServiceSchema().load({"host": "http://h:1"}))
        >>> HttpSink(svc, StepConfig("api", "events"), StepContext("demo", "sink")).url
        'http://h:1/events'
    """

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        self.client = HttpClient(service, ctx)
        self.url = self.client.url(step.resource)
        self.encoding = step.output_encoding

    def open(self) -> None:
        """Take a connection pool."""
        self.client.open()

    def write_batch(self, batch: Batch) -> None:
        """POST the batch as one array, or each event on its own.

        Raises:
            RejectedError: a 4xx (not 429); for an unbatched chunk only the refused events
                are named (:class:`EventsRejectedError`).
            DeliveryError: retries exhausted.
        """
        events = batch.events
        if not events:
            return
        if batch.batched:
            try:
                self.client.post(self.url, _body_of(events, self.encoding, True), self.encoding)
            except HttpRejected as exc:
                raise RejectedError(str(exc)) from None
            return
        rejected: list[tuple[Event, str]] = []
        for event in events:
            try:
                self.client.post(self.url, event.payload, self.encoding)
            except HttpRejected as exc:
                rejected.append((event, str(exc)))
        if rejected:
            raise EventsRejectedError(rejected)

    def close(self) -> None:
        """Release the connection pool."""
        self.client.close()


# -- middleware ----------------------------------------------------------------------------


class HttpMiddleware(Middleware):
    """POSTs events to ``host/resource``; the responses are the transformed events.

    Example:
        >>> svc = ServiceConfig("api", "http", HttpServiceSchema().load({"host": "http://h:1"}))
        >>> m = HttpMiddleware(svc, StepConfig("api", "enrich", output_encoding="json"),
        ...     StepContext("demo", "middleware"))
        >>> m.url, m.process(Batch([], [], batched=False), print)
        ('http://h:1/enrich', [])
    """

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        self.client = HttpClient(service, ctx)
        self.url = self.client.url(step.resource)
        self.output_encoding = step.output_encoding
        self.input_encoding = step.input_encoding

    def open(self) -> None:
        """Take a connection pool."""
        self.client.open()

    def close(self) -> None:
        """Release the connection pool."""
        self.client.close()

    def process(self, batch: Batch, reject: Reject) -> list[Event]:
        """POST each event (or the batch as one array) and return the responses as events.

        Raises:
            DeliveryError: retries exhausted (the job fails and restarts from its checkpoint).
        """
        events = batch.events
        if not events:
            return []
        if batch.batched:
            return self._process_batch(events, reject)
        out: list[Event] = []
        for event in events:
            result = self._process_one(event, reject)
            if result is not None:
                out.append(result)
        return out

    def _request_encoding(self, events: list[Event]) -> str:
        return self.input_encoding or events[0].encoding

    def _post(self, body: bytes, encoding: str, fail: Callable[[str], None]) -> Any:
        try:
            return self.client.post(self.url, body, encoding, accept=self.output_encoding)
        except HttpRejected as exc:
            fail(str(exc))
            return None

    def _process_one(self, event: Event, reject: Reject) -> Event | None:
        encoding = self._request_encoding([event])
        body = event.payload
        if event.encoding != encoding:  # only when used outside a connector
            try:
                body = encode(event.doc, encoding, event.schema)
            except EventError as exc:
                reject(event, str(exc), exc.stage)
                return None
        response = self._post(body, encoding, lambda reason: reject(event, reason, "middleware"))
        if response is None or response.status_code == 204:
            return None
        content = response.content
        try:
            doc = decode(content, self.output_encoding, event.schema)
        except EventError as exc:
            reject(
                event,
                f"invalid {self.output_encoding} response from {display_url(self.url)}: {exc}; "
                f"body starts: {excerpt(content)}",
                "middleware",
            )
            return None
        return Event(
            content,
            self.output_encoding,
            attributes=event.attributes,
            metadata=event.metadata,
            schema=event.schema,
            doc=doc,
        )

    def _process_batch(self, events: list[Event], reject: Reject) -> list[Event]:
        encoding = self._request_encoding(events)
        schema = events[0].schema

        def reject_all(reason: str) -> None:
            for event in events:
                reject(event, reason, "middleware")

        try:
            body = _body_of(events, encoding, True)
        except EventError as exc:
            reject_all(str(exc))
            return []
        response = self._post(body, encoding, reject_all)
        if response is None:
            return []
        if response.status_code == 204:
            return []
        content = response.content
        try:
            docs = decode_batch(content, self.output_encoding, schema)
        except EventError as exc:
            reject_all(
                f"the response of {display_url(self.url)} to a batch must be an array in "
                f"{self.output_encoding}: {exc}; body starts: {excerpt(content)}"
            )
            return []
        same_size = len(docs) == len(events)
        out: list[Event] = []
        for i, doc in enumerate(docs):
            source = events[i] if same_size else None
            try:
                payload = encode(doc, self.output_encoding, schema)
            except EventError as exc:
                reject(source or events[0], f"response item {i}: {exc}", "middleware")
                continue
            out.append(
                Event(
                    payload,
                    self.output_encoding,
                    attributes=dict(source.attributes) if source is not None else {},
                    metadata=dict(source.metadata) if source is not None else {},
                    schema=schema,
                    doc=doc,
                )
            )
        return out


def _describe(options: Mapping[str, Any]) -> str:
    return f"HTTP at {display_url(str(options.get('host', '?')))}"


PROVIDER = ProviderSpec(
    name="http",
    service_schema=HttpServiceSchema,
    secret_fields=frozenset({"headers"}),
    sink=lambda service, step, ctx: HttpSink(service, step, ctx),
    middleware=lambda service, step, ctx: HttpMiddleware(service, step, ctx),
    needs_resource=False,
    describe=_describe,
)
