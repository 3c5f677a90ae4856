"""Cluster state in MongoDB: instances' heartbeats and job leases with fencing tokens.

Instances (``<job_lifecycle resource>_instances``): one document per instance, rewritten at
every heartbeat with its address and the jobs it runs.

Leases (``<job_lifecycle resource>_leases``): which instance runs a job, until when, under
which fencing token.

One document per job *slot* (``_id`` = ``"<job>#<slot>"``; a job with ``replicas = N`` has
slots 0 to N-1, every other job one). Its owner renews ``expires_at`` at every heartbeat;
another instance may take a slot only once it has expired, and every take increments
``token``, the fencing token: a write made under an older token (a checkpoint of an owner
that was paused past its lease) is refused (:class:`~mstream.cluster.fencing.FencedCheckpoints`).
Each operation is one single-document write, so no transaction is needed.

A slot also records what its owner observed (``state``, ``reason``, ``started_at``) and the
job ``generation`` it ran: a job that completed or failed in a generation is not taken again
until a restart raises the generation, so a finished job never runs twice.

Times are the instances' own clocks (seconds since the epoch): keep them synchronised (NTP)
to well within the lease TTL.

Example:
    >>> Lease("j#0", "j", 0, "a", 3, 12.0).expired(13.0)
    True
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from mstream.errors import StoreError
from mstream.stores.base import Checkpoint, CheckpointStore
from mstream.stores.mongodb import MongoCheckpointStore, MongoConnection, _MongoStore, _reason

FINISHED = ("completed", "failed")
"""Observed states after which a slot is not taken again in the same generation."""


def lease_id(job: str, slot: int) -> str:
    """The id of a job's slot.

    Example:
        >>> lease_id("orders", 1)
        'orders#1'
    """
    return f"{job}#{slot}"


@dataclass(frozen=True)
class Lease:
    """One slot of a job as held by an instance.

    Attributes:
        id: ``"<job>#<slot>"``.
        job: the job name.
        slot: the slot number (0 unless the job has replicas).
        owner: the instance that holds (or last held) it.
        token: the fencing token of that holding.
        expires_at: when it lapses unless renewed (0 once released).
        generation: the job generation it runs.
        state: what the owner last observed (``running``, ``stopped``, ``completed``...).
        reason: the owner's reason for a failed or completed state.
        started_at: when the owner started the job.
    """

    id: str
    job: str
    slot: int
    owner: str
    token: int
    expires_at: float
    generation: int = 0
    state: str | None = None
    reason: str | None = None
    started_at: float | None = None

    def expired(self, now: float) -> bool:
        """Whether the holding has lapsed (or was released) at ``now``."""
        return self.expires_at < now

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``GET /cluster``."""
        return {
            "job": self.job,
            "slot": self.slot,
            "owner": self.owner,
            "token": self.token,
            "expires_at": self.expires_at,
            "generation": self.generation,
            "state": self.state,
            "reason": self.reason,
            "started_at": self.started_at,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Lease:
        """Read a stored slot document."""
        return cls(
            id=str(doc["_id"]),
            job=str(doc.get("job", "")),
            slot=int(doc.get("slot", 0)),
            owner=str(doc.get("owner", "")),
            token=int(doc.get("token", 0)),
            expires_at=float(doc.get("expires_at", 0.0)),
            generation=int(doc.get("generation", 0)),
            state=doc.get("state"),
            reason=doc.get("reason"),
            started_at=doc.get("started_at"),
        )


class LeaseStore(_MongoStore):
    """The lease documents of one collection (blocking calls: run them off the loop).

    Args:
        connection: the job store's connection.
        collection: the collection (``<job_lifecycle resource>_leases``).
        ttl: seconds a holding lasts unrenewed.
    """

    default_label = "system.job_lifecycle leases"

    def __init__(self, connection: MongoConnection, collection: str, ttl: float) -> None:
        super().__init__(connection, collection)
        self.ttl = ttl

    def acquire(self, job: str, slot: int, owner: str, generation: int, now: float) -> Lease | None:
        """Take a slot that is free, lapsed, or already ``owner``'s, with a new token.

        A lapsed slot whose job completed or failed in ``generation`` stays untaken.

        Returns:
            The new holding, or ``None`` when another instance holds the slot.

        Raises:
            StoreError: MongoDB failed.
        """
        ident = lease_id(job, slot)
        free = {"expires_at": {"$lt": now}}
        claimable = {
            "_id": ident,
            "$or": [
                {"owner": owner},
                {**free, "state": {"$nin": list(FINISHED)}},
                {**free, "generation": {"$lt": generation}},
            ],
        }
        update = {
            "$set": {
                "job": job,
                "slot": slot,
                "owner": owner,
                "expires_at": now + self.ttl,
                "generation": generation,
                "state": "starting",
                "reason": None,
                "started_at": now,
            },
            "$inc": {"token": 1},
        }
        try:
            doc = self.collection.find_one_and_update(
                claimable, update, upsert=True, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError:
            return None  # it exists and is not claimable: held by another instance
        except PyMongoError as exc:
            raise StoreError(f"{self._where()}: taking {ident} failed: {_reason(exc)}") from None
        return Lease.from_document(doc) if doc is not None else None

    def renew(self, lease: Lease, now: float, state: str | None = None) -> bool:
        """Extend a holding (recording the owner's observed ``state``).

        Returns:
            ``False`` when the holding is gone: another instance took the slot.
        """
        fields: dict[str, Any] = {"expires_at": now + self.ttl}
        if state is not None:
            fields["state"] = state
        result = self._call(
            f"renewing {lease.id}",
            lambda: self.collection.update_one(
                {"_id": lease.id, "owner": lease.owner, "token": lease.token}, {"$set": fields}
            ),
        )
        return result.matched_count == 1

    def release(self, lease: Lease, state: str, reason: str | None = None) -> bool:
        """Give a holding up, recording the state the job ended in.

        Returns:
            ``False`` when the holding was already gone.
        """
        result = self._call(
            f"releasing {lease.id}",
            lambda: self.collection.update_one(
                {"_id": lease.id, "owner": lease.owner, "token": lease.token},
                {"$set": {"expires_at": 0.0, "state": state, "reason": reason}},
            ),
        )
        return result.matched_count == 1

    def holds(self, lease: Lease) -> bool:
        """Whether ``lease`` is still the slot's current holding (its token not superseded)."""
        found = self._call(
            f"reading {lease.id}",
            lambda: self.collection.find_one(
                {"_id": lease.id, "owner": lease.owner, "token": lease.token}, {"_id": 1}
            ),
        )
        return found is not None

    def current(self, ident: str) -> Lease | None:
        """The slot's stored document, if any."""
        found = self._call(f"reading {ident}", lambda: self.collection.find_one({"_id": ident}))
        return Lease.from_document(found) if found is not None else None

    def all(self) -> list[Lease]:
        """Every slot of every job, sorted by id."""
        rows = self._call("reading leases", lambda: list(self.collection.find({}).sort("_id", 1)))
        return [Lease.from_document(row) for row in rows]

    def forget(self, job: str) -> None:
        """Delete every slot of ``job`` (the job was deleted)."""
        self._call(
            f"deleting the leases of {job}", lambda: self.collection.delete_many({"job": job})
        )


class InstanceStore(_MongoStore):
    """Instances' heartbeat documents (``_id`` = instance id; blocking calls).

    Args:
        connection: the job store's connection.
        collection: the collection (``<job_lifecycle resource>_instances``).
    """

    default_label = "system.job_lifecycle instances"

    def beat(self, instance: str, fields: Mapping[str, Any]) -> None:
        """Write the instance's heartbeat document."""
        self._call(
            "writing the heartbeat",
            lambda: self.collection.update_one(
                {"_id": instance}, {"$set": dict(fields)}, upsert=True
            ),
        )

    def all(self) -> list[dict[str, Any]]:
        """Every instance's document (``id`` instead of ``_id``), sorted by id."""
        rows = self._call(
            "reading instances", lambda: list(self.collection.find({}).sort("_id", 1))
        )
        return [{"id": str(row.pop("_id")), **row} for row in rows]

    def prune(self, before: float) -> None:
        """Delete the documents of instances silent since ``before`` (killed ones)."""
        self._call(
            "pruning heartbeats",
            lambda: self.collection.delete_many({"heartbeat_at": {"$lt": before}}),
        )

    def remove(self, instance: str) -> None:
        """Delete the instance's document (it stopped cleanly)."""
        self._call("removing the heartbeat", lambda: self.collection.delete_one({"_id": instance}))


class LeaseLost(StoreError):
    """A write under a lease that another instance has taken since: it was refused."""


class FencedCheckpoints(CheckpointStore):
    """A job's checkpoint store that saves only while the instance's lease is current.

    Each save first checks that the slot still carries this holding's token, then writes
    the checkpoint with the token; an instance that was paused or cut off past its lease
    (another has taken the job, with a higher token) gets :class:`LeaseLost` instead of
    overwriting the new owner's position. The check is made again after the write: an
    instance paused between the first check and its write (the write lands after the
    takeover) withdraws that checkpoint and gets :class:`LeaseLost`. A write that passes
    the second check was made under a current lease (a token, once superseded, never comes
    back). Reads go straight to the store; :meth:`latest` prefers the highest token, so
    even a write whose withdrawal never came (the process died in between) is not resumed
    from once the new owner has saved.

    Args:
        store: the MongoDB checkpoint store.
        leases: where the lease lives.
        lease: this instance's holding.
    """

    def __init__(self, store: MongoCheckpointStore, leases: LeaseStore, lease: Lease) -> None:
        self.store = store
        self.leases = leases
        self.lease = lease

    def save(self, job: str, position: Any, totals: Mapping[str, int] | None = None) -> None:
        """Save under the current token.

        Raises:
            LeaseLost: another instance holds the job now (nothing was written).
            StoreError: MongoDB failed.
        """
        if not self.leases.holds(self.lease):
            raise self._lost(job)
        began = time.time()
        self.store.save(job, position, totals, token=self.lease.token)
        if not self.leases.holds(self.lease):  # lost while writing (paused, cut off)
            self.store.withdraw(job, self.lease.token, since=began)
            raise self._lost(job)

    def _lost(self, job: str) -> LeaseLost:
        current = self.leases.current(self.lease.id)
        holder = f"{current.owner} (token {current.token})" if current else "nobody"
        return LeaseLost(
            f"checkpoint refused: job {job!r} is held by {holder} now; this instance "
            f"({self.lease.owner}, token {self.lease.token}) lost its lease"
        )

    def latest(self, job: str) -> Checkpoint | None:
        """The checkpoint to resume from."""
        return self.store.latest(job)

    def history(self, job: str, limit: int = 50) -> list[Checkpoint]:
        """Checkpoints of ``job``, newest first."""
        return self.store.history(job, limit)

    def delete(self, job: str) -> None:
        """Forget every checkpoint of ``job``."""
        self.store.delete(job)
