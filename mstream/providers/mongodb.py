"""``provider = "mongodb"``: a change-stream source, an insert/replace sink and a schema registry.

Service options:

=============================  ==========  =====================================================
``connection_string``          (required)  ``mongodb://`` or ``mongodb+srv://`` URI; its
                                           password and secret query parameters are masked
                                           in API responses and logs.
``db_name``                    (required)  the database of every step of this service.
``write_mode``                 ``insert``  sink: ``insert`` or ``replace`` (upsert by ``_id``).
``chunk_size``                 500         source: most change events emitted in one chunk.
``max_await_time_ms``          200         source: how long one read waits for new changes
                                           (a stop is honoured within about this long).
``max_retries``                3           sink: retries of a write after a transport error.
``base_backoff_ms``            200         sink: first retry delay, doubled each retry.
=============================  ==========  =====================================================

Source: a change stream (``full_document="updateLookup"``) on the collection named by the
step's ``resource``. Each change becomes one event whose payload is raw BSON: the full
document for ``insert``, ``update`` and ``replace`` and the document key (``{"_id": ...}``)
for ``delete`` (and for an update whose document was deleted before the lookup). The
pipeline converts it to the step's ``output_encoding`` (``json`` gives MongoDB Extended
JSON; ``avro`` needs a ``schema_id``). Attributes: ``operation_type``, ``database``,
``collection``; metadata: those plus ``resume_token``, ``document_key``, ``cluster_time``
(and ``wall_time`` when the server sends it). Events without a document (``drop``,
``rename``, ``dropDatabase``, ...) are logged and skipped; after an ``invalidate`` the stream
is reopened with ``start_after`` so it follows a re-created collection.

The checkpoint is ``{"resume_token": ..., "namespace": "db.collection"}``: the token of the
latest change that, with every earlier one, all sinks acknowledged (a
:class:`~mstream.core.PositionTracker`). While the stream is idle the server's
post-batch resume token is recorded too, so a quiet collection's checkpoint stays fresh. A
restarted connector resumes after the saved token (``resume_after``); without one it starts
at *now*.

Sink: the collection named by ``resource``. Each batch (a chunk, or a ``batch = { kind =
"count" }`` unit) is one unordered bulk write: ``insert_many`` in ``insert`` mode, ``ReplaceOne
(upsert=True)`` by ``_id`` in ``replace`` mode. Bad events are dead-lettered one by one with
the reason and the rest of the batch is written: a payload that is not a document, a
document without ``_id`` in ``replace`` mode, a document the server refuses. In ``insert`` mode
a duplicate ``_id`` whose stored document is *identical* counts as already written (the
redelivery of an event after a restart); a duplicate with different content is
dead-lettered. Documents without ``_id`` get an ``ObjectId`` before the first attempt, so a
retried write does not insert them twice.

Schema registry: a ``schemas`` entry whose service is a MongoDB service names a schema
document (Avro or JSON Schema), in the original's form (``resource = "<id or name>"``,
looked up in the ``schemas`` collection or ``[system.schemas].resource``) or in mstream's
(``resource = "<collection>/<schema_id>"``); see :func:`load_schema`.

Example:
    >>> from mstream.config import parse_service
    >>> svc = parse_service({"name": "m", "provider": "mongodb",
    ...     "connection_string": "mongodb://u:pw@127.0.0.1:27017", "db_name": "app"})
    >>> svc.options["write_mode"], svc.options["chunk_size"]
    ('insert', 500)
    >>> try:
    ...     parse_service({"name": "m", "provider": "mongodb", "connection_string":
    ...         "mongodb://h", "db_name": "app", "write_mod": "replace"}, "services[0]")
    ... except Exception as exc:
    ...     print(str(exc).split(" (")[0])
    services[0].write_mod: unknown field
"""

from __future__ import annotations

import contextlib
import functools
import struct
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import bson
import orjson
from bson import ObjectId, json_util
from bson.codec_options import CodecOptions
from bson.errors import BSONError
from bson.raw_bson import RawBSONDocument
from marshmallow import Schema, ValidationError, fields, validate, validates
from pymongo import MongoClient, ReplaceOne
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    ExecutionTimeout,
    InvalidURI,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Batch, Event, LazyEvent, PositionTracker, SharedAck
from mstream.encodings import StepSchema, parse_schema
from mstream.encodings.bsoncodec import DECODE_OPTIONS, decode_bson, encode_bson
from mstream.errors import ConfigError, DeliveryError, EventError, RejectedError
from mstream.providers.base import Emit, ProviderSpec, Source, StepContext, SyncSink
from mstream.providers.emitter import Emitter

WRITE_MODES = ("insert", "replace")
SECRET_FIELDS: frozenset[str] = frozenset()
"""None declared: the registry masks the credentials inside ``connection_string`` (the
password and secret query parameters) and keeps the hosts visible."""
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""MongoDB's document size limit; larger documents are dead-lettered before the write."""

DUPLICATE_KEY_CODES = frozenset({11000, 11001, 12582})
HISTORY_LOST_CODES = frozenset({280, 286})
"""``ChangeStreamFatalError`` and ``ChangeStreamHistoryLost``: the token is no longer usable."""
NOT_REPLICA_SET_CODES = frozenset({40573})
"""``$changeStream`` on a standalone server."""

DOCUMENT_EVENTS = ("insert", "update", "replace", "delete")

RAW_OPTIONS: CodecOptions[RawBSONDocument] = CodecOptions(
    document_class=RawBSONDocument, tz_aware=True
)

_INVALID_DB_CHARS = frozenset('/\\. "$\x00')


# -- options ---------------------------------------------------------------------------


class MongoServiceSchema(Schema):
    """Options of a ``mongodb`` service (unknown keys are rejected)."""

    connection_string = fields.String(required=True)
    db_name = fields.String(required=True)
    write_mode = fields.String(
        load_default="insert",
        validate=validate.OneOf(WRITE_MODES, error="must be insert or replace (got {input!r})"),
    )
    chunk_size = fields.Integer(
        load_default=500, strict=True, validate=validate.Range(min=1, max=100_000)
    )
    max_await_time_ms = fields.Integer(
        load_default=200, strict=True, validate=validate.Range(min=10, max=60_000)
    )
    max_retries = fields.Integer(
        load_default=3, strict=True, validate=validate.Range(min=0, max=100)
    )
    base_backoff_ms = fields.Integer(
        load_default=200, strict=True, validate=validate.Range(min=1, max=600_000)
    )
    server_selection_timeout_ms = fields.Integer(
        load_default=5_000, strict=True, validate=validate.Range(min=100, max=600_000)
    )

    @validates("connection_string")
    def _uri(self, value: str, **_: Any) -> None:
        """Check the URI's scheme and, for ``mongodb://``, its syntax (offline).

        The value is a secret: messages never repeat it.
        """
        check_connection_string(value)

    @validates("db_name")
    def _db(self, value: str, **_: Any) -> None:
        """MongoDB database names: non-empty, none of ``/\\. "$`` or NUL."""
        if not value:
            raise ValidationError("must not be empty")
        bad = sorted(set(value) & _INVALID_DB_CHARS)
        if bad:
            raise ValidationError(
                f"{value!r} is not a valid database name (it contains {''.join(bad)!r})"
            )


def check_connection_string(value: str) -> None:
    """Validate a connection string without contacting any server.

    Raises:
        ValidationError: wrong scheme or invalid ``mongodb://`` syntax (the message does
            not contain the value).

    Example:
        >>> check_connection_string("mongodb://127.0.0.1:27017/?appname=x")
        >>> try:
        ...     check_connection_string("http://u:secret@h")
        ... except ValidationError as exc:
        ...     print(exc.messages[0])
        must start with mongodb:// or mongodb+srv://
    """
    if not value.startswith(("mongodb://", "mongodb+srv://")):
        raise ValidationError("must start with mongodb:// or mongodb+srv://")
    if value.startswith("mongodb+srv://"):
        return  # parsing an SRV URI resolves DNS; it is checked when connecting
    from pymongo.uri_parser import parse_uri

    try:
        parse_uri(value)
    except (InvalidURI, ConfigurationError, ValueError) as exc:
        raise ValidationError(f"invalid MongoDB URI: {_masked(exc)}") from None


def _masked(exc: BaseException | str) -> str:
    """An error message with URL credentials masked."""
    from mstream.registry import mask_text

    text = str(exc) or type(exc).__name__
    return mask_text(text if len(text) <= 500 else text[:500] + "…")


def check_collection(resource: str, role: str) -> str:
    """The collection name a step's ``resource`` gives.

    Raises:
        ConfigError: empty, or not a valid collection name.

    Example:
        >>> check_collection("users", "source")
        'users'
    """
    name = resource.strip()
    if not name:
        raise ConfigError(f"a mongodb {role} needs a collection name as its resource")
    if "$" in name or "\x00" in name or name.startswith("system."):
        raise ConfigError(f"mongodb {role}: {name!r} is not a valid collection name")
    return name


def _client(service: ServiceConfig, ctx: StepContext | None) -> MongoClient[Any]:
    """A client for ``service`` (connects lazily).

    Raises:
        ConfigError: the connection string or its options are invalid.
    """
    appname = f"mstream-{ctx.connector}" if ctx is not None else "mstream"
    uri = service.options["connection_string"]
    extra: dict[str, Any] = {}
    if "serverselectiontimeoutms" not in uri.lower():  # the connection string's own wins
        # pymongo waits 30 s for a server by default: an unreachable one is reported (and
        # the job retried) within seconds instead
        extra["serverSelectionTimeoutMS"] = service.options.get(
            "server_selection_timeout_ms", 5_000
        )
    try:
        return MongoClient(uri, appname=appname, connect=False, **extra)
    except (ConfigurationError, InvalidURI, ValueError, TypeError) as exc:
        raise ConfigError(
            f"service {service.name!r}: invalid MongoDB connection: {_masked(exc)}"
        ) from None


def _transport(what: str, exc: BaseException) -> DeliveryError:
    return DeliveryError(f"{what}: {type(exc).__name__}: {_masked(exc)}")


# -- positions -------------------------------------------------------------------------


def token_to_position(token: bytes, namespace: str, *, start_after: bool = False) -> dict[str, Any]:
    """A JSON-ready checkpoint from a raw BSON resume token.

    Example:
        >>> raw = bson.encode({"_data": "8265A1"})
        >>> token_to_position(raw, "app.users")
        {'resume_token': {'_data': '8265A1'}, 'namespace': 'app.users'}
    """
    doc = bson.decode(token)
    position: dict[str, Any] = {
        "resume_token": orjson.loads(
            json_util.dumps(doc, json_options=json_util.CANONICAL_JSON_OPTIONS)
        ),
        "namespace": namespace,
    }
    if start_after:
        position["start_after"] = True
    return position


def position_to_token(position: Mapping[str, Any]) -> Mapping[str, Any]:
    """The resume token (a BSON document) a checkpoint holds.

    Raises:
        ConfigError: the checkpoint holds no usable token.

    Example:
        >>> position_to_token({"resume_token": {"_data": "8265A1"}})
        {'_data': '8265A1'}
    """
    token = position.get("resume_token")
    if not isinstance(token, Mapping) or not token:
        raise ConfigError(f"mongodb checkpoint has no resume token: {position!r}")
    result: Mapping[str, Any] = json_util.loads(orjson.dumps(token).decode())
    return result


# -- source ----------------------------------------------------------------------------


class ChangeEvent(LazyEvent):
    """One change of a change stream: its facts in slots, dictionaries made on first use.

    ``metadata`` decodes the resume token and the document key only when something reads
    it (a dead letter, a script); a MongoDB → Kafka pipeline never does (see
    :class:`~mstream.core.LazyEvent`).

    Example:
        >>> e = ChangeEvent(bson.encode({"n": 1}), bson.encode({"_data": "82"}), "insert",
        ...     "app", "users", RawBSONDocument(bson.encode({"_id": 1})), None, None, False)
        >>> e.key_and_headers(), e.metadata_built  # what a Kafka sink asks: nothing decoded
        ((None, None), False)
        >>> e.attributes
        {'operation_type': 'insert', 'database': 'app', 'collection': 'users'}
        >>> e.metadata["resume_token"], e.metadata["document_key"]
        ({'_data': '82'}, {'_id': 1})
    """

    __slots__ = (
        "cluster_time",
        "collection",
        "database",
        "document_key",
        "missing",
        "operation_type",
        "token",
        "wall_time",
    )

    def __init__(
        self,
        payload: bytes,
        token: bytes,
        operation_type: str,
        database: str,
        collection: str,
        document_key: RawBSONDocument | None,
        cluster_time: Any,
        wall_time: Any,
        missing: bool,
    ) -> None:
        self._init_lazy(payload, "bson")
        self.token = token
        self.operation_type = operation_type
        self.database = database
        self.collection = collection
        self.document_key = document_key
        self.cluster_time = cluster_time
        self.wall_time = wall_time
        self.missing = missing

    def _build_metadata(self) -> dict[str, Any]:
        key = self.document_key
        metadata: dict[str, Any] = {
            "resume_token": bson.decode(self.token),
            "operation_type": self.operation_type,
            "database": self.database,
            "collection": self.collection,
            "document_key": decode_bson(key.raw) if key is not None else None,
            "cluster_time": self.cluster_time,
        }
        if self.wall_time is not None:
            metadata["wall_time"] = self.wall_time
        if self.missing:
            metadata["full_document_missing"] = True
        return metadata

    def _build_attributes(self) -> dict[str, str]:
        return {
            "operation_type": self.operation_type,
            "database": self.database,
            "collection": self.collection,
        }

    def _own_key_and_headers(self) -> tuple[Any, Any]:
        return None, None  # a change's metadata has neither


READ_AHEAD_WAIT = 0.05
"""Seconds between checks for a failed pipeline or a stop while the read-ahead is full."""


class ChangeStreamSource(Source):
    """Reads a collection's change stream in chunks, from the checkpointed resume token."""

    read_ahead = 2
    """Chunks read and not yet emitted at most (one being emitted, one waiting)."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        opts = service.options
        self.service = service
        self.ctx = ctx
        self.logger = ctx.logger
        self.db_name: str = opts["db_name"]
        self.collection = check_collection(step.resource, "source")
        self.namespace = f"{self.db_name}.{self.collection}"
        self.chunk_size: int = opts.get("chunk_size", 500)
        self.max_await_ms: int = opts.get("max_await_time_ms", 200)
        self.checkpointing = ctx.checkpointing
        self.tracker = PositionTracker()
        self._client: MongoClient[Any] | None = None
        self._stream: Any = None
        self._resume: Mapping[str, Any] | None = None
        self._start_after = False
        self._last_token: bytes | None = None
        self._run: list[ChangeEvent] = []  # events read since the last tracker position
        saved = ctx.resume_position if ctx.checkpointing else None
        if isinstance(saved, Mapping) and saved.get("resume_token"):
            if saved.get("namespace", self.namespace) != self.namespace:
                self.logger.warning(
                    "mongodb source %s: the checkpoint is for %s; starting at the current time",
                    self.namespace,
                    saved.get("namespace"),
                )
            else:
                self._resume = position_to_token(saved)
                self._start_after = bool(saved.get("start_after"))

    def open(self) -> None:
        """Connect and open the change stream (after the saved token, or at now).

        Raises:
            ConfigError: the server cannot run change streams (a standalone ``mongod``).
            DeliveryError: the server is unreachable or refused the stream.
        """
        self._client = _client(self.service, self.ctx)
        self._open_stream()

    def _open_stream(self) -> None:
        assert self._client is not None
        coll = self._client[self.db_name].get_collection(self.collection, codec_options=RAW_OPTIONS)
        kwargs: dict[str, Any] = {
            "full_document": "updateLookup",
            "max_await_time_ms": self.max_await_ms,
            "batch_size": self.chunk_size,
        }
        if self._resume is not None:
            kwargs["start_after" if self._start_after else "resume_after"] = self._resume
        try:
            self._stream = coll.watch(**kwargs)
        except OperationFailure as exc:
            raise self._stream_error(exc, "cannot open the change stream") from None
        except PyMongoError as exc:
            raise _transport(
                f"mongodb source {self.namespace}: cannot open the change stream", exc
            ) from None
        where = (
            "after the saved resume token" if self._resume is not None else "at the current time"
        )
        self.logger.info("mongodb source %s: change stream open %s", self.namespace, where)
        self._note_idle()

    def _stream_error(self, exc: OperationFailure, what: str) -> Exception:
        prefix = f"mongodb source {self.namespace}: {what}"
        if exc.code in NOT_REPLICA_SET_CODES:
            return ConfigError(
                f"{prefix}: change streams need a replica set or a sharded cluster ({_masked(exc)})"
            )
        if exc.code in HISTORY_LOST_CODES:
            return DeliveryError(
                f"{prefix}: the saved resume token is no longer in the oplog; delete the "
                f"connector's checkpoints to start at the current time ({_masked(exc)})"
            )
        return _transport(prefix, exc)

    def _note_idle(self) -> None:
        """Record the stream's post-batch resume token as a checkpoint position (idle stream)."""
        if not self.checkpointing or self._stream is None:
            return
        token = self._stream.resume_token
        if token is None:
            return
        raw = bytes(token.raw) if isinstance(token, RawBSONDocument) else bson.encode(token)
        if raw != self._last_token:
            self._last_token = raw
            self.tracker.ack(self.tracker.add((raw, False)))

    def run(self, emit: Emit, stopping: threading.Event) -> None:
        """Emit changes in chunks (up to ``chunk_size``, or what arrives within one wait).

        The chunks are emitted on an :class:`~mstream.providers.emitter.Emitter` thread,
        at most :attr:`read_ahead` of them waiting: while the pipeline converts and
        writes one chunk, the next ``getMore`` is already on its way (the change stream
        stays on this thread). Every chunk read is emitted, in order, before ``run``
        returns or raises; a chunk waiting for room when ``stopping`` is set is not
        (never acknowledged, it is read again from the checkpoint).

        Raises:
            DeliveryError: the stream failed, or ``emit`` did (the pipeline failed).
        """
        room = threading.BoundedSemaphore(self.read_ahead)

        def emit_one(chunk: list[Event]) -> None:
            try:
                emit(chunk)
            finally:
                room.release()

        emitter = Emitter(emit_one, f"mstream-mongodb-emit-{self.collection}")

        def hand_over(chunk: list[Event]) -> None:
            while not room.acquire(timeout=READ_AHEAD_WAIT):
                emitter.check()  # the pipeline failed: stop reading
                if stopping.is_set():
                    return
            emitter.check()
            emitter.put(chunk)

        emitter.start()
        try:
            self._read(hand_over, stopping)
        finally:
            emitter.finish()
            emitter.join()
        emitter.check()

    def _read(self, hand_over: Callable[[list[Event]], None], stopping: threading.Event) -> None:
        budget = self.max_await_ms / 1000.0
        while not stopping.is_set():
            stream = self._stream
            chunk: list[Event] = []
            idle = False
            started = time.monotonic()
            try:
                while len(chunk) < self.chunk_size:
                    change = stream.try_next()
                    if change is None:
                        idle = True
                        break
                    event = self._event(change)
                    if event is not None:
                        chunk.append(event)
                    if stopping.is_set() or time.monotonic() - started > budget:
                        break
            except OperationFailure as exc:
                self._close_run()
                if chunk:
                    hand_over(chunk)
                raise self._stream_error(exc, "change stream failed") from None
            except PyMongoError as exc:
                self._close_run()
                if chunk:
                    hand_over(chunk)
                raise _transport(
                    f"mongodb source {self.namespace}: change stream failed", exc
                ) from None
            self._close_run()
            if chunk:
                hand_over(chunk)
            if idle:
                self._note_idle()
            if not stream.alive and not stopping.is_set():
                self._reopen_after_invalidate()

    def _reopen_after_invalidate(self) -> None:
        """The stream ended (``invalidate``): follow the collection when it is re-created."""
        self.logger.warning(
            "mongodb source %s: the change stream was invalidated (collection dropped or "
            "renamed); reopening it to follow the collection if it is re-created",
            self.namespace,
        )
        with contextlib.suppress(PyMongoError):
            self._stream.close()
        if self._last_token is not None:
            self._resume = RawBSONDocument(self._last_token, RAW_OPTIONS)
            self._start_after = True
        self._open_stream()

    def _close_run(self) -> None:
        """Give the events read since the last tracker position one shared acknowledgement.

        Their position is the last one's token: it is saved once every one of them (and
        everything before) is acknowledged. A skipped change closes the run before its own
        position is recorded, so positions stay in stream order.
        """
        run = self._run
        if not run:
            return
        self._run = []
        if not self.checkpointing:
            return
        done = functools.partial(self.tracker.ack, self.tracker.add((run[-1].token, False)))
        ack = done if len(run) == 1 else SharedAck(len(run), done)
        for event in run:
            event.ack = ack

    def _event(self, change: RawBSONDocument) -> Event | None:
        token: bytes = change["_id"].raw
        op: str = change.get("operationType", "")
        self._last_token = token
        if op not in DOCUMENT_EVENTS:
            # no document to deliver: skip it, and let the checkpoint move past it
            if op == "invalidate":
                position: Any = (token, True)
            else:
                position = (token, False)
                self.logger.info(
                    "mongodb source %s: %s event skipped (no document)", self.namespace, op
                )
            if self.checkpointing:
                self._close_run()
                self.tracker.ack(self.tracker.add(position))
            return None
        key = change.get("documentKey")
        document = change.get("fullDocument") if op != "delete" else None
        source = document if document is not None else key
        if source is None:
            self.logger.warning(
                "mongodb source %s: %s event without a document or document key skipped",
                self.namespace,
                op,
            )
            if self.checkpointing:
                self._close_run()
                self.tracker.ack(self.tracker.add((token, False)))
            return None
        ns = change.get("ns")
        database = self.db_name
        collection = self.collection
        if ns is not None:
            database = ns.get("db", database)
            collection = ns.get("coll", collection)
        event = ChangeEvent(
            source.raw,
            token,
            op,
            database,
            collection,
            key,
            change.get("clusterTime"),
            change.get("wallTime"),
            document is None and op != "delete",
        )
        self._run.append(event)
        return event

    def position(self) -> Any:
        """``{"resume_token": ..., "namespace": ...}`` of the last fully delivered change."""
        if not self.checkpointing:
            return None
        committed = self.tracker.committed()
        if committed is None:
            return None
        token, start_after = committed
        return token_to_position(token, self.namespace, start_after=start_after)

    def close(self) -> None:
        """Close the change stream and the client."""
        if self._stream is not None:
            with contextlib.suppress(PyMongoError):
                self._stream.close()
            self._stream = None
        if self._client is not None:
            self._client.close()
            self._client = None


# -- sink ------------------------------------------------------------------------------


class DocumentsRejectedError(RejectedError):
    """Some events of a sink batch were refused for good, each with its own reason.

    The deliver operator dead-letters exactly :attr:`rejected`; the other events of the
    batch were written.

    Attributes:
        rejected: ``(event, reason)`` pairs.
    """

    def __init__(self, rejected: list[tuple[Event, str]]) -> None:
        self.rejected = rejected
        first = rejected[0][1] if rejected else "rejected"
        more = f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""
        super().__init__(first + more)


_OID_ELEMENT = b"\x07_id\x00"


def with_object_id(raw: bytes) -> bytes:
    """Prepend a fresh ``_id: ObjectId`` to a BSON document that has none.

    Example:
        >>> doc = bson.decode(with_object_id(bson.encode({"a": 1})))
        >>> list(doc), isinstance(doc["_id"], ObjectId)
        (['_id', 'a'], True)
    """
    size = len(raw) + len(_OID_ELEMENT) + 12
    return struct.pack("<i", size) + _OID_ELEMENT + ObjectId().binary + raw[4:]


def _id_key(value: Any) -> bytes:
    """A hashable key for an ``_id`` value of any BSON type."""
    return encode_bson({"_id": value})


class MongoSink(SyncSink):
    """Writes each batch to a collection as one unordered bulk write (insert or replace)."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        opts = service.options
        self.service = service
        self.ctx = ctx
        self.db_name: str = opts["db_name"]
        self.collection = check_collection(step.resource, "sink")
        self.namespace = f"{self.db_name}.{self.collection}"
        self.mode: str = opts.get("write_mode", "insert")
        self.max_retries: int = opts.get("max_retries", 3)
        self.base_backoff = opts.get("base_backoff_ms", 200) / 1000.0
        self._client: MongoClient[Any] | None = None
        self._coll: Any = None

    def open(self) -> None:
        """Create the client (it connects on the first write)."""
        self._client = _client(self.service, self.ctx)
        self._coll = self._client[self.db_name].get_collection(self.collection)

    def _document(self, event: Event) -> RawBSONDocument:
        """The event as a BSON document ready to write.

        Raises:
            RejectedError: not a document, too large, or no ``_id`` in replace mode.
        """
        if event.encoding == "bson":
            raw = event.payload
        else:
            try:
                doc = event.doc
            except EventError as exc:
                raise RejectedError(str(exc)) from None
            if not isinstance(doc, Mapping):
                raise RejectedError(
                    f"a MongoDB document must be an object, got {type(doc).__name__}"
                )
            try:
                raw = encode_bson(doc)
            except EventError as exc:
                raise RejectedError(str(exc)) from None
        document = RawBSONDocument(raw, RAW_OPTIONS)
        try:
            has_id = "_id" in document
        except (BSONError, ValueError) as exc:
            raise RejectedError(f"invalid BSON document: {exc}") from None
        if not has_id:
            if self.mode == "replace":
                raise RejectedError(
                    "write_mode replace needs an _id in every document (upsert by _id); "
                    "this document has none"
                )
            document = RawBSONDocument(with_object_id(raw), RAW_OPTIONS)
        if len(document.raw) > MAX_DOCUMENT_BYTES:
            raise RejectedError(
                f"document of {len(document.raw)} bytes exceeds MongoDB's 16 MiB limit"
            )
        return document

    def write_batch(self, batch: Batch) -> None:
        """Write the batch as one bulk write; refused documents are dead-lettered one by one.

        Raises:
            DocumentsRejectedError: some events were refused (the rest were written).
            DeliveryError: a transport failure that outlasted the retries.
        """
        if self._coll is None:
            raise DeliveryError(f"mongodb sink {self.namespace} is not open")
        rejected: list[tuple[Event, str]] = []
        docs: list[tuple[Event, RawBSONDocument]] = []
        for event in batch.events:
            try:
                docs.append((event, self._document(event)))
            except RejectedError as exc:
                rejected.append((event, str(exc)))
        if docs:
            write = self._insert if self.mode == "insert" else self._replace
            rejected.extend(self._with_retries(lambda: write(docs)))
        if rejected:
            raise DocumentsRejectedError(rejected)

    def _with_retries(
        self, attempt: Callable[[], list[tuple[Event, str]]]
    ) -> list[tuple[Event, str]]:
        """Run a write, retrying transport failures with exponential backoff.

        Both write modes are idempotent (replace by ``_id``; an insert's duplicate of an
        identical document counts as written), so retrying a half-done bulk write is safe.
        """
        delay = self.base_backoff
        tries = 0
        while True:
            try:
                return attempt()
            except (ConnectionFailure, ExecutionTimeout, WTimeoutError) as exc:
                problem = f"mongodb sink {self.namespace}: {type(exc).__name__}: {_masked(exc)}"
            except DeliveryError as exc:
                problem = str(exc)
            if tries >= self.max_retries:
                raise DeliveryError(f"{problem} (after {tries} retr{'y' if tries == 1 else 'ies'})")
            tries += 1
            self.ctx.counters.record_retry()
            self.ctx.logger.warning(
                "%s; retry %d/%d in %.1fs", problem, tries, self.max_retries, delay
            )
            if self.ctx.stopping.wait(delay):
                raise DeliveryError(f"{problem} (connector stopping; not retried)")
            delay = min(delay * 2, 30.0)

    def _write_errors(self, exc: BulkWriteError) -> list[dict[str, Any]]:
        details = exc.details or {}
        concern = details.get("writeConcernErrors") or []
        if concern:
            raise DeliveryError(
                f"mongodb sink {self.namespace}: write concern error: "
                f"{_masked(concern[0].get('errmsg', concern[0]))}"
            )
        errors: list[dict[str, Any]] = details.get("writeErrors") or []
        return errors

    def _insert(self, docs: list[tuple[Event, RawBSONDocument]]) -> list[tuple[Event, str]]:
        try:
            self._coll.insert_many([d for _, d in docs], ordered=False)
        except BulkWriteError as exc:
            errors = self._write_errors(exc)
        except OperationFailure as exc:
            raise _transport(f"mongodb sink {self.namespace}: insert failed", exc) from None
        else:
            return []
        rejected: list[tuple[Event, str]] = []
        duplicates: list[tuple[Event, RawBSONDocument, str]] = []
        for error in errors:
            event, document = docs[error["index"]]
            message = _masked(error.get("errmsg", "write error"))
            if error.get("code") in DUPLICATE_KEY_CODES:
                duplicates.append((event, document, message))
            else:
                rejected.append((event, f"insert refused (code {error.get('code')}): {message}"))
        if duplicates:
            rejected.extend(self._check_duplicates(duplicates))
        return rejected

    def _check_duplicates(
        self, duplicates: list[tuple[Event, RawBSONDocument, str]]
    ) -> list[tuple[Event, str]]:
        """Duplicates of identical stored documents are written already; the rest are refused."""
        ids = [document["_id"] for _, document, _ in duplicates]
        stored: dict[bytes, dict[str, Any]] = {}
        try:
            found = self._coll.with_options(codec_options=DECODE_OPTIONS).find(
                {"_id": {"$in": ids}}
            )
            for doc in found:
                stored[_id_key(doc["_id"])] = doc
        except OperationFailure as exc:
            raise _transport(
                f"mongodb sink {self.namespace}: duplicate check failed", exc
            ) from None
        rejected: list[tuple[Event, str]] = []
        for event, document, message in duplicates:
            existing = stored.get(_id_key(document["_id"]))
            if existing is not None and existing == decode_bson(document.raw):
                continue  # the same document was written before (a redelivery)
            rejected.append((event, f"duplicate key: a different document is stored ({message})"))
        return rejected

    def _replace(self, docs: list[tuple[Event, RawBSONDocument]]) -> list[tuple[Event, str]]:
        # the last document per _id wins, as it would if the replaces ran one by one
        groups: dict[bytes, list[tuple[Event, RawBSONDocument]]] = {}
        for event, document in docs:
            groups.setdefault(_id_key(document["_id"]), []).append((event, document))
        keys = list(groups)
        rejected: list[tuple[Event, str]] = []
        ops: list[ReplaceOne[Any]] = []
        op_keys: list[bytes] = []
        for key in keys:
            last = groups[key][-1][1]
            try:
                ops.append(ReplaceOne({"_id": last["_id"]}, last, upsert=True))
            except (ValueError, TypeError) as exc:
                rejected.extend((event, f"replace refused: {exc}") for event, _ in groups[key])
                continue
            op_keys.append(key)
        if not ops:
            return rejected
        try:
            self._coll.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            errors = self._write_errors(exc)
        except OperationFailure as exc:
            raise _transport(f"mongodb sink {self.namespace}: replace failed", exc) from None
        else:
            return rejected
        for error in errors:
            key = op_keys[error["index"]]
            message = _masked(error.get("errmsg", "write error"))
            reason = f"replace refused (code {error.get('code')}): {message}"
            rejected.extend((event, reason) for event, _ in groups[key])
        return rejected

    def close(self) -> None:
        """Close the client."""
        if self._client is not None:
            self._client.close()
            self._client = None
            self._coll = None


# -- schema registry -------------------------------------------------------------------

DEFAULT_SCHEMA_COLLECTION = "schemas"
"""Where schema documents in the original's form are looked up without ``[system.schemas]``."""

_schema_collection = DEFAULT_SCHEMA_COLLECTION


def install_schema_collection(name: str | None) -> None:
    """Set the collection of the original's schema documents for every MongoDB service.

    ``[system.schemas].resource`` (``None``: :data:`DEFAULT_SCHEMA_COLLECTION`). As in the
    original it is one setting for the whole process, installed by the job manager.

    Example:
        >>> install_schema_collection("team-schemas"); schema_collection()
        'team-schemas'
        >>> install_schema_collection(None); schema_collection()
        'schemas'
    """
    global _schema_collection
    _schema_collection = name or DEFAULT_SCHEMA_COLLECTION


def schema_collection() -> str:
    """The collection the original's schema documents are looked up in now."""
    return _schema_collection


def load_schema(service: ServiceConfig, resource: str) -> StepSchema:
    """Read a schema stored in a collection, in either of two forms.

    * The original's: ``resource = "<schema id or name>"`` (no ``/``). The document in the
      ``schemas`` collection (or ``[system.schemas].resource``) whose ``id`` or ``name`` is
      ``resource``; its ``encoding`` (``avro`` or ``json``) says what its ``definition``
      (a JSON string, or an embedded document) is.
    * mstream's: ``resource = "<collection>/<schema id>"``. The document whose ``_id`` (or
      ``schema_id``) is the id; ``schema_definition`` (or ``schema``) holds the schema,
      ``schema_encoding`` is ``avro`` (the default) or ``json``.

    Raises:
        ConfigError: no such document, or not a usable schema.
        DeliveryError: the server is unreachable.
    """
    where = f"schema {resource!r} of service {service.name!r}"
    collection, slash, schema_id = resource.partition("/")
    if slash:
        if not collection or not schema_id:
            raise ConfigError(
                f"{where}: a mongodb schema resource is '<schema id>' (the original's schema "
                "documents) or '<collection>/<schema_id>'"
            )
        query: list[dict[str, Any]] = [{"_id": schema_id}, {"schema_id": schema_id}]
        fields_used = ("schema_encoding", "schema_definition", "schema")
    else:
        collection = schema_collection()
        query = [{"$or": [{"id": resource}, {"name": resource}]}]
        fields_used = ("encoding", "definition", "definition")
    check_collection(collection, "schema registry")
    client = _client(service, None)
    try:
        coll = client[service.options["db_name"]].get_collection(
            collection, codec_options=DECODE_OPTIONS
        )
        doc = next((found for q in query if (found := coll.find_one(q)) is not None), None)
    except PyMongoError as exc:
        raise _transport(where, exc) from None
    finally:
        client.close()
    if doc is None:
        keys = "_id or schema_id" if slash else "id or name"
        raise ConfigError(
            f"{where}: no document with {keys} {schema_id or resource!r} in {collection!r}"
        )
    encoding_key, definition_key, fallback_key = fields_used
    encoding = doc.get(encoding_key, "avro" if slash else None)
    if not isinstance(encoding, str):
        raise ConfigError(
            f"{where}: the document has no {encoding_key!r} field (expected avro or json)"
        )
    definition = doc.get(definition_key, doc.get(fallback_key))
    if definition is None:
        raise ConfigError(f"{where}: the document has no {definition_key!r} field")
    if not isinstance(definition, str | bytes | dict):
        raise ConfigError(
            f"{where}: {definition_key!r} must be a JSON string or a document, "
            f"got {type(definition).__name__}"
        )
    return parse_schema(definition, encoding.lower(), resource)


PROVIDER = ProviderSpec(
    name="mongodb",
    service_schema=MongoServiceSchema,
    secret_fields=SECRET_FIELDS,
    source=lambda service, step, ctx: ChangeStreamSource(service, step, ctx),
    sink=lambda service, step, ctx: MongoSink(service, step, ctx),
    schema_loader=load_schema,
    source_encodings=("bson",),
)
