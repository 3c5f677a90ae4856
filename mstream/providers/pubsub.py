"""``provider = "pubsub"``: Google Cloud Pub/Sub subscriptions as sources, topics as sinks.

Service options:

* ``project_id`` (required): the project of short resource names.
* ``auth`` (optional): ``{ kind = "service_account", account_key_path = "key.json" }`` or
  ``{ kind = "static_token", env_token_name = "PUBSUB_TOKEN" }`` (an OAuth 2 access token
  read from that environment variable when the step opens; it is not refreshed). Without
  ``auth`` the client uses Application Default Credentials, or none at all when
  ``PUBSUB_EMULATOR_HOST`` points at the emulator.
* ``endpoint`` (optional): another API endpoint (``europe-west1-pubsub.googleapis.com:443``).
* Source: ``max_outstanding_messages`` (1000) and ``max_outstanding_bytes`` (100 MiB) are
  the streaming pull's flow control: messages received and not yet acknowledged never
  exceed them (that is the backpressure); ``chunk_size`` (500) and ``chunk_wait_ms`` (10)
  shape the chunks handed to the pipeline.
* Sink: ``publish_batch_max_messages`` (100), ``publish_batch_max_bytes`` (1 MB) and
  ``publish_batch_max_latency_ms`` (10) set the client's publish batching;
  ``publish_max_pending_messages`` (10000) and ``publish_max_pending_bytes`` (100 MiB)
  bound what waits for the server (``publish`` blocks beyond that); a flush (stop,
  checkpoint) waits at most ``flush_timeout_ms`` (30000) for pending publishes.

Source: the step's ``resource`` is the subscription (a short id or
``projects/P/subscriptions/S``). The subscriber's callback threads hand messages to the
source thread through a bounded queue; the source emits them in chunks. Each event's
``attributes`` are the message attributes and its ``metadata`` holds ``message_id``,
``publish_time`` (a UTC datetime), ``ordering_key``, ``delivery_attempt`` and
``subscription``. A message is acknowledged only when its event's ``ack`` runs (every sink
done); on stop or failure every unacknowledged message is nacked, so Pub/Sub redelivers it
at once. No checkpoint is needed.

Sink: the step's ``resource`` is the topic (short id or ``projects/P/topics/T``). Event
attributes are published as message attributes, plus ``operation_type``, ``database`` and
``collection`` from an event's metadata (MongoDB sources). A batched unit is published as
one message holding the array in the sink's encoding, with the attributes every event
shares; the step option ``batch_mode = "messages"`` publishes one message per event. A
message over Pub/Sub's 10 MB limit, or with attributes Pub/Sub refuses, is rejected (dead
letter) instead of failing the job.

A Pub/Sub service is also a schema registry: a ``schemas`` entry whose service is a pubsub
service loads the Avro schema ``resource`` (short id, ``projects/P/schemas/S`` or
``...@revision``) from the Pub/Sub schema service.

Example:
    >>> from mstream.config import parse_service
    >>> svc = parse_service({"name": "ps", "provider": "pubsub", "project_id": "demo",
    ...     "auth": {"kind": "static_token", "env_token_name": "PUBSUB_TOKEN"}})
    >>> svc.options["auth"]
    {'kind': 'static_token', 'env_token_name': 'PUBSUB_TOKEN'}
    >>> resource_path("demo", "orders", "subscriptions")
    'projects/demo/subscriptions/orders'
    >>> try:
    ...     parse_service({"name": "ps", "provider": "pubsub", "project_id": "d",
    ...         "auth": {"kind": "service_account"}}, "services[2]")
    ... except Exception as exc:
    ...     print(exc)
    services[2].auth.account_key_path: required when kind is service_account
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Batch, Event
from mstream.encodings import AvroSchema, encode_batch
from mstream.errors import ConfigError, DeliveryError
from mstream.providers.base import Done, Emit, ProviderSpec, Sink, Source, StepContext
from mstream.providers.completion import Completion, messages_of

log = logging.getLogger("mstream.pubsub")

PUBSUB_SCOPE = "https://www.googleapis.com/auth/pubsub"
MAX_MESSAGE_BYTES = 10_000_000
"""Pub/Sub's limit on one publish request (and so on one message)."""
MAX_ATTRIBUTES = 100
NACK_CHUNK = 500
"""Ack ids per unary nack request (well under the 512 KB request limit)."""
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MONGODB_ATTRIBUTES = ("operation_type", "database", "collection")
"""Metadata of MongoDB events that the sink publishes as attributes."""
RESERVED_ATTRIBUTES = frozenset({"topic", "data", "ordering_key", "retry", "timeout"})
"""Names google-cloud-pubsub's ``publish(topic, data, ordering_key, retry, timeout, **attrs)``
takes as its own parameters: attributes with these names cannot be published through it."""

AUTH_KINDS = ("service_account", "static_token")
_ID = re.compile(r"^[^/\s]+$")
_FULL = re.compile(r"^projects/[^/\s]+/(?P<kind>[a-z]+)/[^/\s]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- options ---------------------------------------------------------------------------


class PubSubAuthSchema(Schema):
    """``auth = { kind = "service_account" | "static_token", ... }``."""

    kind = fields.String(
        required=True,
        validate=validate.OneOf(
            AUTH_KINDS, error="must be service_account or static_token (got {input!r})"
        ),
    )
    account_key_path = fields.String(validate=validate.Length(min=1, error="must not be empty"))
    env_token_name = fields.String(
        validate=validate.Regexp(
            _ENV_NAME, error="must be an environment variable name (got {input!r})"
        ),
    )

    @validates_schema
    def _fields_of_kind(self, data: Mapping[str, Any], **_: Any) -> None:
        """Each kind needs its own field and takes no field of the other kind."""
        kind = data.get("kind")
        needs = {"service_account": "account_key_path", "static_token": "env_token_name"}
        problems: dict[str, list[str]] = {}
        for key_kind, key in needs.items():
            if kind == key_kind and not data.get(key):
                problems[key] = [f"required when kind is {kind}"]
            elif kind in needs and kind != key_kind and data.get(key) is not None:
                problems[key] = [f"not used when kind is {kind}"]
        if problems:
            raise ValidationError(problems)


def _positive(limit: int) -> validate.Range:
    return validate.Range(min=1, max=limit, error="must be between {min} and {max}")


class PubSubServiceSchema(Schema):
    """Options of a ``pubsub`` service (unknown keys are rejected)."""

    project_id = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^[a-z0-9][a-z0-9.:_-]*$",
            error="expected a project id such as 'my-project' (got {input!r})",
        ),
    )
    auth = fields.Nested(PubSubAuthSchema, load_default=None, allow_none=True)
    endpoint = fields.String(load_default=None, validate=validate.Length(min=1))
    max_outstanding_messages = fields.Integer(
        load_default=1000, strict=True, validate=_positive(1_000_000)
    )
    max_outstanding_bytes = fields.Integer(
        load_default=100 * 1024 * 1024, strict=True, validate=_positive(10 * 1024**3)
    )
    chunk_size = fields.Integer(load_default=500, strict=True, validate=_positive(100_000))
    chunk_wait_ms = fields.Integer(
        load_default=10, strict=True, validate=validate.Range(min=0, max=10_000)
    )
    publish_batch_max_messages = fields.Integer(
        load_default=100, strict=True, validate=_positive(1000)
    )
    publish_batch_max_bytes = fields.Integer(
        load_default=1_000_000, strict=True, validate=_positive(MAX_MESSAGE_BYTES)
    )
    publish_batch_max_latency_ms = fields.Integer(
        load_default=10, strict=True, validate=validate.Range(min=0, max=60_000)
    )
    publish_max_pending_messages = fields.Integer(
        load_default=10_000, strict=True, validate=_positive(10_000_000)
    )
    publish_max_pending_bytes = fields.Integer(
        load_default=100 * 1024 * 1024,
        strict=True,
        validate=validate.Range(
            min=2 * MAX_MESSAGE_BYTES,
            max=10 * 1024**3,
            error="must be between {min} and {max} (room for the largest message)",
        ),
    )
    flush_timeout_ms = fields.Integer(
        load_default=30_000, strict=True, validate=validate.Range(min=1, max=3_600_000)
    )


class PubSubStepSchema(Schema):
    """Extra keys of a ``pubsub`` step: ``batch_mode`` (sink) = ``array`` | ``messages``."""

    batch_mode = fields.String(
        load_default="array",
        validate=validate.OneOf(
            ["array", "messages"], error="must be array or messages (got {input!r})"
        ),
    )


def resource_path(project: str, resource: str, kind: str) -> str:
    """The full name of a subscription, topic or schema.

    Args:
        project: the service's ``project_id`` (used for short ids).
        resource: a short id or a full ``projects/P/<kind>/ID`` name.
        kind: ``subscriptions``, ``topics`` or ``schemas``.

    Raises:
        ConfigError: the resource is empty or malformed.

    Example:
        >>> resource_path("p", "projects/q/topics/t", "topics")
        'projects/q/topics/t'
        >>> resource_path("p", "projects/q/topics/t", "subscriptions")
        Traceback (most recent call last):
        ...
        mstream.errors.ConfigError: resource 'projects/q/topics/t': expected a subscription id or projects/PROJECT/subscriptions/ID
    """
    text = (resource or "").strip()
    singular = kind[:-1]
    expected = f"expected a {singular} id or projects/PROJECT/{kind}/ID"
    if not text:
        raise ConfigError(f"a pubsub {singular} step needs a resource ({expected})")
    if text.startswith("projects/"):
        match = _FULL.match(text.split("@", 1)[0] if kind == "schemas" else text)
        if match is None or match.group("kind") != kind:
            raise ConfigError(f"resource {resource!r}: {expected}")
        return text
    if not _ID.match(text):
        raise ConfigError(f"resource {resource!r}: {expected}")
    return f"projects/{project}/{kind}/{text}"


def emulator_host() -> str | None:
    """``PUBSUB_EMULATOR_HOST`` when set (then no credentials are needed)."""
    return os.environ.get("PUBSUB_EMULATOR_HOST") or None


def build_credentials(service: ServiceConfig) -> Any:
    """The credentials a client of ``service`` uses, or None for the library's default.

    ``static_token`` reads the token from its environment variable now; ``service_account``
    reads the key file. Without ``auth``: None (Application Default Credentials, or
    anonymous access to the emulator).

    Raises:
        ConfigError: the variable is unset or empty, or the key file cannot be read.

    Example:
        >>> svc = ServiceConfig("ps", "pubsub", {"project_id": "p",
        ...     "auth": {"kind": "static_token", "env_token_name": "MSTREAM_DOC_TOKEN"}})
        >>> os.environ["MSTREAM_DOC_TOKEN"] = "ya29.abc"
        >>> build_credentials(svc).token
        'ya29.abc'
        >>> del os.environ["MSTREAM_DOC_TOKEN"]
        >>> build_credentials(svc)
        Traceback (most recent call last):
        ...
        mstream.errors.ConfigError: pubsub service 'ps': auth.env_token_name: environment variable 'MSTREAM_DOC_TOKEN' is not set
    """
    auth = service.options.get("auth")
    if not auth:
        return None
    where = f"pubsub service {service.name!r}: auth"
    if auth.get("kind") == "static_token":
        var = auth.get("env_token_name") or ""
        token = os.environ.get(var, "").strip()
        if not token:
            raise ConfigError(f"{where}.env_token_name: environment variable {var!r} is not set")
        from google.oauth2.credentials import Credentials

        return Credentials(token)
    from google.oauth2 import service_account

    path = auth.get("account_key_path") or ""
    try:
        return service_account.Credentials.from_service_account_file(path, scopes=[PUBSUB_SCOPE])
    except OSError as exc:
        raise ConfigError(
            f"{where}.account_key_path: cannot read the key file ({exc.strerror})"
        ) from None
    except ValueError as exc:  # malformed JSON or missing fields
        raise ConfigError(
            f"{where}.account_key_path: not a service account key file ({exc})"
        ) from None


def _client_kwargs(service: ServiceConfig) -> dict[str, Any]:
    """Keyword arguments shared by every client of ``service``: credentials and endpoint."""
    kwargs: dict[str, Any] = {}
    credentials = build_credentials(service)
    if emulator_host():
        from google.auth.credentials import AnonymousCredentials

        kwargs["credentials"] = AnonymousCredentials()
        return kwargs
    if credentials is not None:
        kwargs["credentials"] = credentials
    else:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            google.auth.default(scopes=[PUBSUB_SCOPE])
        except DefaultCredentialsError as exc:
            raise ConfigError(
                f"pubsub service {service.name!r}: no auth configured and no Application "
                f"Default Credentials found ({exc}); set auth = {{ kind = ... }} or "
                "PUBSUB_EMULATOR_HOST"
            ) from None
    endpoint = service.options.get("endpoint")
    if endpoint:
        kwargs["client_options"] = {"api_endpoint": endpoint}
    return kwargs


def _api_error(what: str, exc: BaseException) -> DeliveryError:
    return DeliveryError(f"{what}: {type(exc).__name__}: {exc}")


# -- source ----------------------------------------------------------------------------


class PubSubSource(Source):
    """Streaming pull from a subscription, with flow control and ack-after-sinks.

    The subscriber's callback threads put messages into a bounded queue; :meth:`run`
    takes them out in chunks on the source thread. Unacknowledged messages are tracked so
    that a stop or a failure nacks them (immediate redelivery) instead of waiting for
    their ack deadline to pass.
    """

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        opts = service.options
        self.service = service
        self.subscription = resource_path(opts["project_id"], step.resource, "subscriptions")
        self.encoding = step.input_encoding or step.output_encoding
        self.max_messages: int = opts.get("max_outstanding_messages", 1000)
        self.max_bytes: int = opts.get("max_outstanding_bytes", 100 * 1024 * 1024)
        self.chunk_size: int = opts.get("chunk_size", 500)
        self.chunk_wait = opts.get("chunk_wait_ms", 10) / 1000.0
        self.logger = ctx.logger
        self.what = f"pubsub source {self.subscription!r}"
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self.max_messages)
        self._pending: dict[str, Any] = {}  # ack_id -> message emitted, not yet acked
        self._closed = threading.Event()
        self._late: list[Any] = []  # received while closing
        self._client: Any = None
        self._future: Any = None
        self.received = 0  # messages handed to the pipeline (for tests and logs)

    def open(self) -> None:
        """Create the subscriber client and open the streaming pull."""
        from google.api_core.exceptions import GoogleAPIError
        from google.cloud import pubsub_v1

        kwargs = _client_kwargs(self.service)
        try:
            self._client = pubsub_v1.SubscriberClient(**kwargs)
            flow = pubsub_v1.types.FlowControl(
                max_messages=self.max_messages, max_bytes=self.max_bytes
            )
            self._future = self._client.subscribe(
                self.subscription,
                callback=self._on_message,
                flow_control=flow,
                await_callbacks_on_shutdown=True,
            )
        except GoogleAPIError as exc:
            raise _api_error(f"{self.what}: cannot subscribe", exc) from None

    def _on_message(self, message: Any) -> None:
        """Subscriber callback thread: hand the message to the source thread."""
        put = self._queue.put
        while not self._closed.is_set():
            try:
                put(message, timeout=0.1)
                return
            except queue.Full:
                continue
        self._late.append(message)  # nacked by close() once the stream is shut

    def _check_stream(self) -> None:
        future = self._future
        if future is not None and future.done():
            error = future.exception()
            if error is not None:
                raise _api_error(f"{self.what}: streaming pull failed", error)
            raise DeliveryError(f"{self.what}: streaming pull ended")

    def _take(self, stopping: threading.Event) -> list[Any]:
        """Up to ``chunk_size`` messages: wait for the first, then briefly for more."""
        get = self._queue.get
        try:
            first = get(timeout=0.1)
        except queue.Empty:
            return []
        taken = [first]
        size, deadline = self.chunk_size, time.monotonic() + self.chunk_wait
        while len(taken) < size:
            try:
                taken.append(get(block=False))
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stopping.is_set():
                break
            try:
                taken.append(get(timeout=remaining))
            except queue.Empty:
                break
        return taken

    def _acker(self, message: Any) -> Callable[[], None]:
        pending = self._pending
        ack_id = message.ack_id
        pending[ack_id] = message

        def ack() -> None:
            if pending.pop(ack_id, None) is not None:
                message.ack()

        return ack

    def run(self, emit: Emit, stopping: threading.Event) -> None:
        """Emit received messages in chunks until ``stopping``; stream errors raise."""
        encoding, subscription, acker = self.encoding, self.subscription, self._acker
        while not stopping.is_set():
            self._check_stream()
            messages = self._take(stopping)
            if not messages:
                continue
            events: list[Event] = []
            append = events.append
            for m in messages:
                append(
                    Event(
                        m.data,
                        encoding,
                        attributes=dict(m.attributes),
                        metadata={
                            "message_id": m.message_id,
                            "publish_time": m.publish_time,
                            "ordering_key": m.ordering_key,
                            "delivery_attempt": m.delivery_attempt,
                            "subscription": subscription,
                        },
                        ack=acker(m),
                    )
                )
            self.received += len(events)
            emit(events)

    def _unacknowledged(self) -> list[str]:
        """Take the ack ids of every message received and not acknowledged."""
        ack_ids: list[str] = []
        for ack_id in list(self._pending):
            if self._pending.pop(ack_id, None) is not None:
                ack_ids.append(ack_id)
        while True:
            try:
                ack_ids.append(self._queue.get(block=False).ack_id)
            except queue.Empty:
                break
        late, self._late = self._late, []
        ack_ids.extend(m.ack_id for m in late)
        return ack_ids

    def _nack(self, ack_ids: list[str]) -> None:
        """Nack with unary requests (the stream's own dispatcher is stopped by now)."""
        for start in range(0, len(ack_ids), NACK_CHUNK):
            self._client.modify_ack_deadline(
                subscription=self.subscription,
                ack_ids=ack_ids[start : start + NACK_CHUNK],
                ack_deadline_seconds=0,
            )

    def close(self) -> None:
        """Close the stream, nack everything not acknowledged, release the client.

        The stream is shut first (acknowledgements already given are flushed by the
        client's dispatcher, and no new message arrives), then every message still held is
        nacked so that Pub/Sub redelivers it at once rather than after its ack deadline.
        """
        self._closed.set()
        try:
            if self._future is not None:
                self._future.cancel()
                try:
                    self._future.result(timeout=30)
                except Exception:  # cancelled, or the error run() already raised
                    log.debug("%s: streaming pull closed", self.what, exc_info=True)
            ack_ids = self._unacknowledged()
            if ack_ids and self._client is not None:
                try:
                    self._nack(ack_ids)
                except Exception as exc:  # they are redelivered after their deadline anyway
                    self.logger.warning(
                        "%s: could not nack %d messages (%s); they are redelivered after "
                        "their ack deadline",
                        self.what,
                        len(ack_ids),
                        exc,
                    )
                else:
                    self.logger.info(
                        "%s: %d unacknowledged messages nacked", self.what, len(ack_ids)
                    )
        finally:
            self._future = None
            if self._client is not None:
                self._client.close()
                self._client = None


# -- sink ------------------------------------------------------------------------------

OutMessage = tuple[bytes, dict[str, str], list[Event]]
"""One message to publish: ``(data, attributes, the events it holds)``."""


def event_attributes(event: Event) -> dict[str, str]:
    """The attributes published for an event: its attributes plus MongoDB metadata.

    Example:
        >>> e = Event(b"{}", "json", attributes={"a": "1"},
        ...     metadata={"operation_type": "insert", "database": "shop", "offset": 3})
        >>> event_attributes(e)
        {'a': '1', 'operation_type': 'insert', 'database': 'shop'}
    """
    attrs = {str(k): v if type(v) is str else str(v) for k, v in event.attributes.items()}
    metadata = event.metadata
    if metadata:
        for key in MONGODB_ATTRIBUTES:
            value = metadata.get(key)
            if value is not None and key not in attrs:
                attrs[key] = str(value)
    return attrs


def message_problem(data: bytes, attributes: Mapping[str, str]) -> str | None:
    """Why Pub/Sub would refuse this message, or None.

    Example:
        >>> message_problem(b"x", {"googkey": "v"})
        "attribute 'googkey': names starting with 'goog' are reserved by Pub/Sub"
        >>> message_problem(b"", {}) is None
        False
    """
    size = len(data)
    if not data and not attributes:
        return "empty message: Pub/Sub needs data or attributes"
    if len(attributes) > MAX_ATTRIBUTES:
        return f"{len(attributes)} attributes (Pub/Sub allows {MAX_ATTRIBUTES})"
    for key, value in attributes.items():
        key_bytes, value_bytes = len(key.encode()), len(value.encode())
        size += key_bytes + value_bytes
        if not key:
            return "an attribute has an empty name"
        if key.startswith("goog"):
            return f"attribute {key!r}: names starting with 'goog' are reserved by Pub/Sub"
        if key in RESERVED_ATTRIBUTES:
            return f"attribute {key!r}: the client library cannot publish this name"
        if key_bytes > MAX_ATTRIBUTE_KEY_BYTES:
            return f"attribute {key[:40]!r}...: name over {MAX_ATTRIBUTE_KEY_BYTES} bytes"
        if value_bytes > MAX_ATTRIBUTE_VALUE_BYTES:
            return f"attribute {key!r}: value over {MAX_ATTRIBUTE_VALUE_BYTES} bytes"
    if size > MAX_MESSAGE_BYTES:
        return f"message of {size} bytes is over Pub/Sub's {MAX_MESSAGE_BYTES} byte limit"
    return None


class PubSubSink(Sink):
    """Publishes to a topic with google-cloud-pubsub's batching publisher."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        opts = service.options
        self.service = service
        self.options = opts
        self.topic = resource_path(opts["project_id"], step.resource, "topics")
        self.encoding = step.output_encoding
        self.batch_mode: str = step.options.get("batch_mode", "array")
        self.what = f"pubsub sink {self.topic!r}"
        self.flush_timeout = opts.get("flush_timeout_ms", 30_000) / 1000.0
        self._publisher: Any = None
        self._inflight = 0
        self._idle = threading.Condition()

    def open(self) -> None:
        """Create the publisher (batching and blocking flow control from the options)."""
        from google.cloud import pubsub_v1
        from google.cloud.pubsub_v1.types import LimitExceededBehavior, PublishFlowControl

        opts = self.options
        kwargs = _client_kwargs(self.service)
        batch = pubsub_v1.types.BatchSettings(
            max_messages=opts.get("publish_batch_max_messages", 100),
            max_bytes=opts.get("publish_batch_max_bytes", 1_000_000),
            max_latency=opts.get("publish_batch_max_latency_ms", 10) / 1000.0,
        )
        flow = PublishFlowControl(
            message_limit=opts.get("publish_max_pending_messages", 10_000),
            byte_limit=opts.get("publish_max_pending_bytes", 100 * 1024 * 1024),
            limit_exceeded_behavior=LimitExceededBehavior.BLOCK,
        )
        self._publisher = pubsub_v1.PublisherClient(
            batch_settings=batch,
            publisher_options=pubsub_v1.types.PublisherOptions(flow_control=flow),
            **kwargs,
        )

    def messages(self, batch: Batch) -> list[OutMessage]:
        """The messages a batch is published as.

        Example:
            >>> svc = ServiceConfig("ps", "pubsub", {"project_id": "p"})
            >>> sink = PubSubSink(svc, StepConfig("ps", "t"), StepContext("c", "sink"))
            >>> evs = [Event(b'{"n":1}', "json", attributes={"a": "1", "b": "x"}),
            ...        Event(b'{"n":2}', "json", attributes={"a": "2", "b": "x"})]
            >>> [(d, a) for d, a, _ in sink.messages(Batch.of(evs, batched=True))]
            [(b'[{"n":1},{"n":2}]', {'b': 'x'})]
            >>> [(d, a) for d, a, _ in sink.messages(Batch.of(evs, batched=False))]
            [(b'{"n":1}', {'a': '1', 'b': 'x'}), (b'{"n":2}', {'a': '2', 'b': 'x'})]
        """
        events = batch.events
        if batch.batched and self.batch_mode == "array" and events:
            schema: AvroSchema | None = events[0].schema
            data = encode_batch([e.doc for e in events], self.encoding, schema)
            common = event_attributes(events[0])
            for e in events[1:]:
                if not common:
                    break
                attrs = event_attributes(e)
                common = {k: v for k, v in common.items() if attrs.get(k) == v}
            return [(data, common, list(events))]
        return [(e.payload, event_attributes(e), [e]) for e in events]

    def _release(self) -> None:
        with self._idle:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    def write(self, batch: Batch, done: Done) -> None:
        """Publish the batch; ``done`` once every publish resolved (or the first error)."""
        from google.cloud.pubsub_v1.publisher.exceptions import MessageTooLargeError

        publisher = self._publisher
        messages = messages_of(publisher, self.messages, batch, done, self.what)
        if messages is None:
            return
        rejected: list[tuple[Event, str]] = []
        ready: list[OutMessage] = []
        for message in messages:
            problem = message_problem(message[0], message[1])
            if problem is None:
                ready.append(message)
            else:
                rejected.extend((e, f"{self.what}: {problem}") for e in message[2])
        outcome = Completion(len(ready), done, self.what, rejected=rejected)
        if outcome.finish_if_empty():
            return
        release = self._release

        def settle(future: Any) -> None:
            """Publish future callback."""
            try:
                error = future.exception()
            except BaseException as exc:  # cancelled
                error = exc
            try:
                if error is not None:
                    outcome.fail(error)
                else:
                    outcome.ok()
            finally:
                release()

        publish, topic = publisher.publish, self.topic
        for data, attrs, events in ready:
            with self._idle:
                self._inflight += 1
            try:
                future = publish(topic, data, **attrs)
            except MessageTooLargeError as exc:  # our size check is an estimate
                self._release()
                for e in events:
                    outcome.rejected.append((e, f"{self.what}: {exc}"))
                outcome.ok()
                continue
            except Exception as exc:
                self._release()
                outcome.fail(exc)
                return
            future.add_done_callback(settle)

    def flush(self) -> None:
        """Wait until every publish so far has resolved, at most ``flush_timeout_ms``.

        Raises:
            DeliveryError: publishes still pending at the bound (they are not acknowledged,
                so the next run delivers them again).
        """
        deadline = time.monotonic() + self.flush_timeout
        with self._idle:
            while self._inflight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeliveryError(
                        f"{self.what}: {self._inflight} publish(es) still pending after "
                        f"{self.flush_timeout:g}s (flush_timeout_ms)"
                    )
                self._idle.wait(min(left, 0.5))

    def close(self) -> None:
        """Flush, then stop the publisher."""
        if self._publisher is None:
            return
        try:
            self.flush()
        finally:
            try:
                self._publisher.stop()
            finally:
                self._publisher = None


# -- schema registry -------------------------------------------------------------------


def load_schema(service: ServiceConfig, resource: str) -> AvroSchema:
    """Load the Avro schema ``resource`` from the Pub/Sub schema service.

    Raises:
        ConfigError: no such schema, or it is not an Avro schema.
        DeliveryError: the schema service cannot be reached.
    """
    from google.api_core.exceptions import GoogleAPIError, NotFound
    from google.cloud import pubsub_v1

    name = resource_path(service.options["project_id"], resource, "schemas")
    client = pubsub_v1.SchemaServiceClient(**_client_kwargs(service))
    try:
        found = client.get_schema(name=name)
    except NotFound:
        raise ConfigError(
            f"schema {name!r} not found in the Pub/Sub schema service of service {service.name!r}"
        ) from None
    except GoogleAPIError as exc:
        raise _api_error(f"pubsub schema {name!r}", exc) from None
    finally:
        client.transport.close()
    if found.type_ != found.Type.AVRO:
        raise ConfigError(f"schema {name!r} is a {found.type_.name} schema; mstream needs Avro")
    return AvroSchema.parse(found.definition, name=resource)


# -- provider --------------------------------------------------------------------------


def _describe(options: Mapping[str, Any]) -> str:
    host = emulator_host()
    where = f" (emulator at {host})" if host else ""
    return f"Pub/Sub project {options.get('project_id', '?')}{where}"


PROVIDER = ProviderSpec(
    name="pubsub",
    service_schema=PubSubServiceSchema,
    secret_fields=frozenset({"account_key_path", "env_token_name"}),
    source=lambda service, step, ctx: PubSubSource(service, step, ctx),
    sink=lambda service, step, ctx: PubSubSink(service, step, ctx),
    schema_loader=load_schema,
    step_options=PubSubStepSchema,
    describe=_describe,
)
