"""MongoDB stores: checkpoints, jobs and services in collections of a ``mongodb`` service.

``[system.checkpoints]``, ``[system.job_lifecycle]`` and ``[system.service_lifecycle]``
each name a ``mongodb`` service (``connection_string``, ``db_name``) and a collection
(``resource``). The stores behave exactly like the embedded SQLite ones
(:mod:`mstream.stores.sqlite`): positions and job records are written as the same JSON
text (so anything SQLite accepts round-trips identically, whatever the server version
allows in field names), service definitions stay opaque encrypted bytes (BSON binary),
and each job keeps its last :attr:`~mstream.stores.base.CheckpointStore.history_limit`
checkpoints.

Documents:

* checkpoints: ``{job, seq, position: "<json>", created_at}``; ``seq`` counts up per job
  (unique index on ``job`` + ``seq``), so "newest" never depends on clocks or on which
  process wrote it;
* jobs: ``{_id: name, record: "<json>"}``;
* services: ``{_id: name, blob: BinData}``.

Calls block (they run on connector threads and the API's executor, never on the IOLoop);
one thread-safe :class:`MongoConnection` (a ``MongoClient``) is shared by the stores that
use the same service and closed when the last of them closes. Every driver failure
becomes a :class:`~mstream.errors.StoreError` that names the store (``system.checkpoints``)
and the server with its password masked.

Example (needs a server, so not run as a doctest)::

    conn = MongoConnection("mongodb://127.0.0.1:27017/", "mstream", service_name="state")
    conn.ping("system.checkpoints")
    checkpoints = MongoCheckpointStore(conn, "mstream-checkpoints")
    checkpoints.save("job", {"offset": 5})
    checkpoints.close()  # the last store using conn closes its client
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
from bson.binary import Binary
from pymongo import DESCENDING, MongoClient, ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError, ServerSelectionTimeoutError

from mstream.errors import StoreError
from mstream.stores.base import Checkpoint, CheckpointStore, JobStore, ServiceStore
from mstream.stores.dead_letters import DEFAULT_LIMIT as DEFAULT_DEAD_LETTERS
from mstream.stores.dead_letters import DeadLetterStore

T = TypeVar("T")

Document = dict[str, Any]

_SEQ_ATTEMPTS = 20
"""How often a checkpoint save retries when another writer took the same sequence number."""


def _mask(text: str) -> str:
    """``text`` with credentials in URLs masked (imported late: the registry imports stores)."""
    from mstream.registry import mask_text

    return mask_text(text)


def _masked_address(connection_string: str) -> str:
    from mstream.registry import mask_connection_string

    return mask_connection_string(connection_string)


def _totals(value: Any) -> dict[str, int] | None:
    """Counter totals as stored, when they are a mapping of integers (else none)."""
    if not isinstance(value, Mapping):
        return None
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int)}


def _reason(exc: BaseException) -> str:
    """A short, masked description of a driver error.

    A server selection timeout carries the whole topology description; the first part
    (``host:port: [Errno 111] Connection refused ...``) is what a reader needs.
    """
    text = str(exc)
    if isinstance(exc, ServerSelectionTimeoutError):
        text = text.split(", Timeout:", 1)[0]
        text = f"no server answered ({text})" if text else "no server answered"
    return _mask(text) or type(exc).__name__


class MongoConnection:
    """A ``MongoClient`` and database for one ``mongodb`` service, shared by its stores.

    The client is closed when the last store using it closes (:meth:`acquire` /
    :meth:`release`), or by :meth:`close`.

    Args:
        connection_string: the service's ``connection_string`` (credentials allowed; only
            the masked form ever appears in messages).
        db_name: the service's ``db_name``.
        service_name: the service's name, for messages.
        **client_options: extra ``MongoClient`` keyword options (they win over the URI's).

    Raises:
        StoreError: the connection string or the database name is invalid.
    """

    def __init__(
        self,
        connection_string: str,
        db_name: str,
        *,
        service_name: str = "",
        **client_options: Any,
    ) -> None:
        self.address = _masked_address(connection_string)
        self.service_name = service_name
        self.db_name = db_name
        self._lock = threading.Lock()
        self._users = 0
        self._closed = False
        try:
            self.client: MongoClient[Document] = MongoClient(connection_string, **client_options)
        except (PyMongoError, ValueError, TypeError) as exc:
            raise StoreError(f"{self.describe()}: {_reason(exc)}") from None
        try:
            self.db = self.client[db_name]
        except (PyMongoError, ValueError, TypeError) as exc:
            self.client.close()
            raise StoreError(f"{self.describe()}: {_reason(exc)}") from None

    def describe(self) -> str:
        """``MongoDB service 'state' at mongodb://u:****@h:27017/ (db 'mstream')``."""
        service = f" service {self.service_name!r}" if self.service_name else ""
        return f"MongoDB{service} at {self.address} (db {self.db_name!r})"

    def ping(self, label: str = "MongoDB store") -> None:
        """Check that the server answers (within the client's server selection timeout).

        Args:
            label: what uses the connection (``system.checkpoints``), for the message.

        Raises:
            StoreError: the server cannot be reached, naming ``label`` and the masked host.
        """
        try:
            self.db.command("ping")
        except PyMongoError as exc:
            raise StoreError(f"{label}: cannot reach {self.describe()}: {_reason(exc)}") from None

    def collection(self, name: str) -> Collection[Document]:
        """The collection ``name`` of the service's database.

        Raises:
            StoreError: ``name`` is not a valid collection name.
        """
        try:
            return self.db[name]
        except (PyMongoError, ValueError, TypeError) as exc:
            raise StoreError(f"{self.describe()}: collection {name!r}: {_reason(exc)}") from None

    def acquire(self) -> None:
        """Register one more store using this connection."""
        with self._lock:
            self._users += 1

    def release(self) -> None:
        """A store is done with the connection; the last one closes the client."""
        with self._lock:
            self._users -= 1
            last = self._users <= 0
        if last:
            self.close()

    def close(self) -> None:
        """Close the client (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.client.close()


class _MongoStore:
    """What the three stores share: a collection, error wrapping and closing."""

    default_label = "MongoDB store"

    def __init__(
        self, connection: MongoConnection, collection: str, label: str | None = None
    ) -> None:
        self.connection = connection
        self.label = label or self.default_label
        self.collection = connection.collection(collection)
        self._closed = False
        connection.acquire()

    def _call(self, action: str, operation: Callable[[], T]) -> T:
        """Run one driver call; a driver failure becomes a :class:`StoreError`."""
        try:
            return operation()
        except PyMongoError as exc:
            raise StoreError(f"{self._where()}: {action} failed: {_reason(exc)}") from None

    def _where(self) -> str:
        return f"{self.label} ({self.connection.describe()}, collection {self.collection.name!r})"

    def _loads(self, text: Any, what: str) -> Any:
        """Decode stored JSON text.

        Raises:
            StoreError: the stored value is not JSON text (edited by hand, another writer).
        """
        try:
            if not isinstance(text, str | bytes):
                raise TypeError(f"expected JSON text, found {type(text).__name__}")
            return orjson.loads(text)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise StoreError(f"{self._where()}: {what} is not readable ({exc})") from None

    def close(self) -> None:
        """Release the connection (its client closes with its last store); idempotent."""
        if self._closed:
            return
        self._closed = True
        self.connection.release()


class MongoCheckpointStore(_MongoStore, CheckpointStore):
    """Checkpoints in a collection, the last ``history_limit`` (100) per job kept.

    Args:
        connection: the service's connection.
        collection: the collection name (``[system.checkpoints] resource``).
        label: the store's name in messages (default ``system.checkpoints``).

    Raises:
        StoreError: the index cannot be created (server unreachable, bad name).
    """

    default_label = "system.checkpoints"

    def __init__(
        self, connection: MongoConnection, collection: str, label: str | None = None
    ) -> None:
        super().__init__(connection, collection, label)
        try:
            self._call(
                "creating the job+seq index",
                lambda: self.collection.create_index(
                    [("job", 1), ("seq", DESCENDING)], unique=True, name="job_seq"
                ),
            )
        except StoreError:
            self.close()
            raise

    def save(
        self,
        job: str,
        position: Any,
        totals: Mapping[str, int] | None = None,
        *,
        token: int | None = None,
    ) -> None:
        """Record a position (JSON-serialisable) and prune the job's oldest ones.

        ``token`` is the writer's fencing token (several instances, see
        :class:`~mstream.stores.cluster.FencedCheckpoints`): :meth:`latest` prefers the
        highest token, so a write that slipped in under a superseded one is never resumed
        from once the new owner has saved.

        Raises:
            TypeError: ``position`` is not JSON-serialisable (as with SQLite).
            StoreError: MongoDB failed.
        """
        text = orjson.dumps(position).decode("utf-8")
        for _ in range(_SEQ_ATTEMPTS):
            newest = self._call(
                "reading the newest checkpoint",
                lambda: self.collection.find_one(
                    {"job": job}, {"seq": 1, "_id": 0}, sort=[("seq", DESCENDING)]
                ),
            )
            seq = int(newest["seq"]) + 1 if newest else 1
            document = {"job": job, "seq": seq, "position": text, "created_at": time.time()}
            if totals is not None:
                document["totals"] = {k: int(v) for k, v in totals.items()}
            if token is not None:
                document["token"] = token
            try:
                self.collection.insert_one(document)
            except DuplicateKeyError:
                continue  # another writer took this number: read the newest again
            except PyMongoError as exc:
                raise StoreError(f"{self._where()}: saving failed: {_reason(exc)}") from None
            break
        else:
            raise StoreError(f"{self._where()}: saving failed: too many concurrent writers")
        self._call(
            "pruning old checkpoints",
            lambda: self.collection.delete_many(
                {"job": job, "seq": {"$lte": seq - self.history_limit}}
            ),
        )

    def latest(self, job: str) -> Checkpoint | None:
        """The newest checkpoint of ``job`` under the highest fencing token, if any."""
        found = self.history(job, 1, by_token=True)
        return found[0] if found else None

    def history(self, job: str, limit: int = 50, *, by_token: bool = False) -> list[Checkpoint]:
        """Checkpoints of ``job``, newest first (``limit`` < 0: all, as SQLite's LIMIT);
        ``by_token``: highest fencing token first, then newest."""
        if limit == 0:
            return []
        order = [("token", DESCENDING), ("seq", DESCENDING)] if by_token else [("seq", DESCENDING)]

        def read() -> list[Document]:
            cursor = self.collection.find(
                {"job": job}, {"_id": 0, "position": 1, "created_at": 1, "totals": 1}
            ).sort(order)
            if limit > 0:
                cursor = cursor.limit(limit)
            return list(cursor)

        rows = self._call("reading checkpoints", read)
        return [
            Checkpoint(
                job,
                self._loads(row.get("position"), f"a checkpoint of job {job!r}"),
                float(row.get("created_at", 0.0)),
                _totals(row.get("totals")),
            )
            for row in rows
        ]

    def delete(self, job: str) -> None:
        """Forget every checkpoint of ``job``."""
        self._call("deleting checkpoints", lambda: self.collection.delete_many({"job": job}))

    def withdraw(self, job: str, token: int, since: float) -> None:
        """Remove the checkpoints of ``job`` saved under ``token`` at or after ``since``
        (Unix seconds): a fenced writer's own, written after it lost its lease."""
        self._call(
            "withdrawing checkpoints",
            lambda: self.collection.delete_many(
                {"job": job, "token": token, "created_at": {"$gte": since}}
            ),
        )


class MongoJobStore(_MongoStore, JobStore):
    """Job records (JSON text) by name in a collection (``_id`` is the job name).

    Args:
        connection: the service's connection.
        collection: the collection name (``[system.job_lifecycle] resource``).
        label: the store's name in messages (default ``system.job_lifecycle``).
    """

    default_label = "system.job_lifecycle"

    def put(self, name: str, record: dict[str, Any]) -> None:
        """Create or replace a record.

        Raises:
            TypeError: ``record`` is not JSON-serialisable (as with SQLite).
            StoreError: MongoDB failed.
        """
        text = orjson.dumps(record).decode("utf-8")
        self._call(
            "saving a job",
            lambda: self.collection.replace_one({"_id": name}, {"record": text}, upsert=True),
        )

    def get(self, name: str) -> dict[str, Any] | None:
        """The record of job ``name``, if any."""
        found = self._call("reading a job", lambda: self.collection.find_one({"_id": name}))
        return None if found is None else self._record(name, found)

    def all(self) -> dict[str, dict[str, Any]]:
        """Every record by name (sorted by name)."""
        rows = self._call("reading jobs", lambda: list(self.collection.find({}).sort("_id", 1)))
        return {str(row["_id"]): self._record(str(row["_id"]), row) for row in rows}

    def delete(self, name: str) -> None:
        """Remove a record (no error when absent)."""
        self._call("deleting a job", lambda: self.collection.delete_one({"_id": name}))

    def _record(self, name: str, document: Mapping[str, Any]) -> dict[str, Any]:
        record = self._loads(document.get("record"), f"the record of job {name!r}")
        if not isinstance(record, dict):
            raise StoreError(f"{self._where()}: the record of job {name!r} is not an object")
        return record


class MongoServiceStore(_MongoStore, ServiceStore):
    """Encrypted service blobs by name in a collection, as BSON binary.

    Args:
        connection: the service's connection.
        collection: the collection name (``[system.service_lifecycle] resource``).
        label: the store's name in messages (default ``system.service_lifecycle``).
    """

    default_label = "system.service_lifecycle"

    def put(self, name: str, blob: bytes) -> None:
        """Create or replace the stored bytes of service ``name``."""
        data = Binary(bytes(blob))
        self._call(
            "saving a service",
            lambda: self.collection.replace_one({"_id": name}, {"blob": data}, upsert=True),
        )

    def get(self, name: str) -> bytes | None:
        """The stored bytes of service ``name``, if any."""
        found = self._call("reading a service", lambda: self.collection.find_one({"_id": name}))
        return None if found is None else self._blob(name, found)

    def all(self) -> dict[str, bytes]:
        """Every stored service by name (sorted by name)."""
        rows = self._call("reading services", lambda: list(self.collection.find({}).sort("_id", 1)))
        return {str(row["_id"]): self._blob(str(row["_id"]), row) for row in rows}

    def delete(self, name: str) -> None:
        """Remove a service (no error when absent)."""
        self._call("deleting a service", lambda: self.collection.delete_one({"_id": name}))

    def _blob(self, name: str, document: Mapping[str, Any]) -> bytes:
        blob = document.get("blob")
        if not isinstance(blob, bytes):
            raise StoreError(f"{self._where()}: service {name!r} holds no binary data")
        return bytes(blob)


__all__ = ["MongoCheckpointStore", "MongoConnection", "MongoJobStore", "MongoServiceStore"]


class MongoDocumentStore(_MongoStore):
    """Saved documents of one kind (the original's ``[system.workspaces]`` or
    ``[system.test_suites]`` collection): ``{_id: id, body: <JSON text>, seq}``.

    Args:
        connection: the service's connection.
        collection: the collection name (the ref's ``resource``).
        label: the store's name in messages (e.g. ``system.workspaces``).
    """

    default_label = "documents"

    def put(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """Save (replace by id; an id is assigned when missing)."""
        saved = dict(document)
        if not saved.get("id"):
            saved["id"] = f"{self.collection.name}-{os.urandom(4).hex()}"
        text = orjson.dumps(saved).decode("utf-8")
        self._call(
            "saving a document",
            lambda: self.collection.update_one(
                {"_id": saved["id"]},
                {"$set": {"body": text}, "$setOnInsert": {"seq": time.time()}},
                upsert=True,
            ),
        )
        return saved

    def get(self, doc_id: str) -> dict[str, Any] | None:
        """By id."""
        found = self._call("reading a document", lambda: self.collection.find_one({"_id": doc_id}))
        return None if found is None else self._loads(found.get("body"), f"document {doc_id!r}")

    def all(self) -> list[dict[str, Any]]:
        """Oldest first."""
        rows = self._call(
            "reading documents", lambda: list(self.collection.find({}).sort("seq", 1))
        )
        return [self._loads(row.get("body"), f"document {row['_id']!r}") for row in rows]

    def delete(self, doc_id: str) -> bool:
        """By id; whether it existed."""
        result = self._call(
            "deleting a document", lambda: self.collection.delete_one({"_id": doc_id})
        )
        return bool(result.deleted_count)


class MongoDeadLetterStore(_MongoStore, DeadLetterStore):
    """Kept dead letters in a collection (next to the checkpoints: ``<collection>_dead_letters``):
    ``{job, id, stage, reason, record: <JSON text>}``, plus one ``{_id: "seq:<job>"}`` counter
    and one ``{_id: "drops:<job>"}`` tally per job.

    Args:
        connection: the service's connection.
        collection: the collection name.
        limit: records kept per job.
    """

    default_label = "dead letters"

    def __init__(
        self, connection: MongoConnection, collection: str, limit: int = DEFAULT_DEAD_LETTERS
    ) -> None:
        _MongoStore.__init__(self, connection, collection, None)
        DeadLetterStore.__init__(self, limit)

    def add(self, job: str, record: Mapping[str, Any]) -> int:
        """Keep ``record``; drop (and count) the oldest beyond the limit."""
        counter = self._call(
            "numbering a dead letter",
            lambda: self.collection.find_one_and_update(
                {"_id": f"seq:{job}"},
                {"$inc": {"n": 1}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            ),
        )
        if counter is None:  # an upsert returning the document after: never None
            raise StoreError(f"{self._where()}: numbering a dead letter returned no counter")
        new_id = int(counter["n"])
        document = {
            "job": job,
            "id": new_id,
            "stage": str(record.get("stage", "")),
            "reason": str(record.get("reason", "")),
            "record": orjson.dumps(dict(record)).decode("utf-8"),
        }
        self._call("keeping a dead letter", lambda: self.collection.insert_one(document))
        count = self._call(
            "counting dead letters", lambda: self.collection.count_documents({"job": job})
        )
        extra = count - self.limit
        if extra > 0:
            oldest = self._call(
                "finding the oldest dead letters",
                lambda: [
                    d["id"]
                    for d in self.collection.find({"job": job}, {"id": 1})
                    .sort("id", 1)
                    .limit(extra)
                ],
            )
            self._call(
                "dropping dead letters",
                lambda: self.collection.delete_many({"job": job, "id": {"$in": oldest}}),
            )
            self._call(
                "counting dropped dead letters",
                lambda: self.collection.update_one(
                    {"_id": f"drops:{job}"}, {"$inc": {"n": len(oldest)}}, upsert=True
                ),
            )
        return new_id

    def _rows(
        self, query: dict[str, Any], skip: int = 0, limit: int = 0, newest: bool = True
    ) -> list[dict[str, Any]]:
        def read() -> list[Document]:
            cursor = self.collection.find(query).sort("id", -1 if newest else 1).skip(skip)
            return list(cursor.limit(limit) if limit else cursor)

        rows = self._call("reading dead letters", read)
        return [{**self._loads(r.get("record"), "a dead letter"), "id": int(r["id"])} for r in rows]

    def page(
        self,
        job: str,
        *,
        stage: str | None = None,
        reason: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[dict[str, Any]], int]:
        """Newest first."""
        query: dict[str, Any] = {"job": job}
        if stage is not None:
            query["stage"] = stage
        if reason is not None:
            query["reason"] = {"$regex": re.escape(reason)}
        total = self._call("counting dead letters", lambda: self.collection.count_documents(query))
        if limit <= 0:
            return [], total
        return self._rows(query, offset, limit), total

    def get(self, job: str, ids: Sequence[int]) -> list[dict[str, Any]]:
        """Oldest first."""
        if not ids:
            return []
        return self._rows({"job": job, "id": {"$in": [int(i) for i in ids]}}, newest=False)

    def delete(self, job: str, ids: Sequence[int] | None = None) -> int:
        """Delete by id, or all of the job's (and its drop count)."""
        query: dict[str, Any] = {"job": job}
        if ids is not None:
            if not ids:
                return 0
            query["id"] = {"$in": [int(i) for i in ids]}
        result = self._call("deleting dead letters", lambda: self.collection.delete_many(query))
        if ids is None:
            self._call(
                "resetting dropped dead letters",
                lambda: self.collection.delete_one({"_id": f"drops:{job}"}),
            )
        return int(result.deleted_count)

    def dropped(self, job: str) -> int:
        """Dropped to stay within the limit."""
        found = self._call(
            "reading dropped dead letters",
            lambda: self.collection.find_one({"_id": f"drops:{job}"}),
        )
        return int(found["n"]) if found else 0
