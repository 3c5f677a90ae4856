"""The change stream source: :class:`ChangeEvent` (one change) and :class:`ChangeStreamSource`."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Event, LazyEvent, PositionTracker, SharedAck
from mstream.encodings.bsoncodec import decode_bson
from mstream.errors import ConfigError, DeliveryError
from mstream.providers.base import Emit, Source, StepContext
from mstream.providers.emitter import Emitter
from mstream.providers.mongodb.config import (
    RAW_OPTIONS,
    check_collection,
    masked_error,
    mongo_client,
    transport_error,
)
from mstream.providers.mongodb.positions import position_to_token, token_to_position

HISTORY_LOST_CODES = frozenset({280, 286})
"""``ChangeStreamFatalError`` and ``ChangeStreamHistoryLost``: the token is no longer usable."""
NOT_REPLICA_SET_CODES = frozenset({40573})
"""``$changeStream`` on a standalone server."""

DOCUMENT_EVENTS = ("insert", "update", "replace", "delete")


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
NAMESPACES_KEPT = 64
"""Distinct ``ns`` documents whose decoding a source keeps (a collection's stream has one)."""


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
        self._namespaces: dict[bytes, tuple[str, str]] = {}
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
        self._client = mongo_client(self.service, self.ctx)
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
            raise transport_error(
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
                f"{prefix}: change streams need a replica set or a sharded cluster ({masked_error(exc)})"
            )
        if exc.code in HISTORY_LOST_CODES:
            return DeliveryError(
                f"{prefix}: the saved resume token is no longer in the oplog; delete the "
                f"connector's checkpoints to start at the current time ({masked_error(exc)})"
            )
        return transport_error(prefix, exc)

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
                raise transport_error(
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
        # the change's top level, decoded once already (the stream read its "_id"), as a
        # dict: lookups without RawBSONDocument's Python-level get, six per change
        fields: dict[str, Any] = dict(change.items())
        token: bytes = fields["_id"].raw
        op: str = fields.get("operationType", "")
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
        key = fields.get("documentKey")
        document = fields.get("fullDocument") if op != "delete" else None
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
        database, collection = self._namespace_of(fields.get("ns"))
        event = ChangeEvent(
            source.raw,
            token,
            op,
            database,
            collection,
            key,
            fields.get("clusterTime"),
            fields.get("wallTime"),
            document is None and op != "delete",
        )
        self._run.append(event)
        return event

    def _namespace_of(self, ns: RawBSONDocument | None) -> tuple[str, str]:
        """A change's database and collection (the stream's when it names none).

        Decoded once per distinct ``ns`` document: a collection's changes all carry the
        same bytes.
        """
        if ns is None:
            return self.db_name, self.collection
        raw = bytes(ns.raw)  # the same object when it is bytes already
        known = self._namespaces.get(raw)
        if known is None:
            known = (ns.get("db", self.db_name), ns.get("coll", self.collection))
            if len(self._namespaces) < NAMESPACES_KEPT:
                self._namespaces[raw] = known
        return known

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
