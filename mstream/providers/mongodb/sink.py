"""The sink: each batch one unordered bulk write (insert or replace) to a collection."""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from bson import ObjectId
from bson.errors import BSONError
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient, ReplaceOne
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    WTimeoutError,
)

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Batch, Event
from mstream.encodings.bsoncodec import DECODE_OPTIONS, decode_bson, encode_bson
from mstream.errors import DeliveryError, EventError, RejectedError
from mstream.providers.base import StepContext, SyncSink
from mstream.providers.mongodb.config import (
    RAW_OPTIONS,
    check_collection,
    masked_error,
    mongo_client,
    transport_error,
)

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""MongoDB's document size limit; larger documents are dead-lettered before the write."""

DUPLICATE_KEY_CODES = frozenset({11000, 11001, 12582})


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
        >>> import bson
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
        self._client = mongo_client(self.service, self.ctx)
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
                problem = (
                    f"mongodb sink {self.namespace}: {type(exc).__name__}: {masked_error(exc)}"
                )
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
                f"{masked_error(concern[0].get('errmsg', concern[0]))}"
            )
        errors: list[dict[str, Any]] = details.get("writeErrors") or []
        return errors

    def _insert(self, docs: list[tuple[Event, RawBSONDocument]]) -> list[tuple[Event, str]]:
        try:
            self._coll.insert_many([d for _, d in docs], ordered=False)
        except BulkWriteError as exc:
            errors = self._write_errors(exc)
        except OperationFailure as exc:
            raise transport_error(f"mongodb sink {self.namespace}: insert failed", exc) from None
        else:
            return []
        rejected: list[tuple[Event, str]] = []
        duplicates: list[tuple[Event, RawBSONDocument, str]] = []
        for error in errors:
            event, document = docs[error["index"]]
            message = masked_error(error.get("errmsg", "write error"))
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
            raise transport_error(
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
            raise transport_error(f"mongodb sink {self.namespace}: replace failed", exc) from None
        else:
            return rejected
        for error in errors:
            key = op_keys[error["index"]]
            message = masked_error(error.get("errmsg", "write error"))
            reason = f"replace refused (code {error.get('code')}): {message}"
            rejected.extend((event, reason) for event, _ in groups[key])
        return rejected

    def close(self) -> None:
        """Close the client."""
        if self._client is not None:
            self._client.close()
            self._client = None
            self._coll = None
