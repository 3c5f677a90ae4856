"""Dead letters kept in the state store, so they can be listed, replayed or discarded.

Each job keeps at most ``limit`` (10,000) records, newest last; when a new one would pass
the limit the oldest is dropped and counted (``dropped``), so a flood of bad events costs
bounded space and says what it cost. A record is the dead-letter record the router writes
(:func:`~mstream.runtime.dead_letter.dead_letter_record`) plus what a replay needs: the
event's bytes as they were at the failed step (``original``, base64), their ``encoding``
and the ``step`` to resume from.

Example:
    >>> store = MemoryDeadLetterStore(limit=2)
    >>> for n in range(3):
    ...     _ = store.add("job", {"stage": "decode", "reason": f"bad {n}", "time": n})
    >>> items, total = store.page("job")
    >>> [r["reason"] for r in items], total, store.dropped("job")
    (['bad 2', 'bad 1'], 2, 1)
    >>> store.delete("job", [items[0]["id"]]), store.page("job", reason="bad")[1]
    (1, 1)
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from mstream.stores.sqlite import SqliteDatabase

DEFAULT_LIMIT = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    stage TEXT NOT NULL,
    reason TEXT NOT NULL,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_job ON dead_letters (job, id);
CREATE TABLE IF NOT EXISTS dead_letter_drops (job TEXT PRIMARY KEY, dropped INTEGER NOT NULL);
"""


class DeadLetterStore(ABC):
    """Dead-letter records per job, bounded, newest last.

    Args:
        limit: records kept per job; beyond it the oldest are dropped and counted.
    """

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit

    @abstractmethod
    def add(self, job: str, record: Mapping[str, Any]) -> int:
        """Keep ``record`` (JSON-ready); returns its id."""

    @abstractmethod
    def page(
        self,
        job: str,
        *,
        stage: str | None = None,
        reason: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[dict[str, Any]], int]:
        """Records of ``job`` newest first (``stage`` exact, ``reason`` a substring), and
        how many match in all."""

    @abstractmethod
    def get(self, job: str, ids: Sequence[int]) -> list[dict[str, Any]]:
        """The records with these ids (those that exist), oldest first."""

    @abstractmethod
    def delete(self, job: str, ids: Sequence[int] | None = None) -> int:
        """Delete these records (all of the job's with ``None``); returns how many."""

    @abstractmethod
    def dropped(self, job: str) -> int:
        """How many of the job's records were dropped to stay within the limit."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the store."""


def _matches(record: Mapping[str, Any], stage: str | None, reason: str | None) -> bool:
    if stage is not None and record.get("stage") != stage:
        return False
    return reason is None or reason in str(record.get("reason", ""))


class MemoryDeadLetterStore(DeadLetterStore):
    """Dead letters in a dict of lists (lost with the process)."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        super().__init__(limit)
        self._records: dict[str, list[dict[str, Any]]] = {}
        self._dropped: dict[str, int] = {}
        self._next = 0
        self._lock = threading.Lock()

    def add(self, job: str, record: Mapping[str, Any]) -> int:
        """Keep ``record``; drop the oldest beyond the limit."""
        with self._lock:
            self._next += 1
            items = self._records.setdefault(job, [])
            items.append({**record, "id": self._next})
            extra = len(items) - self.limit
            if extra > 0:
                del items[:extra]
                self._dropped[job] = self._dropped.get(job, 0) + extra
            return self._next

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
        with self._lock:
            found = [r for r in reversed(self._records.get(job, [])) if _matches(r, stage, reason)]
        return [dict(r) for r in found[offset : offset + limit]], len(found)

    def get(self, job: str, ids: Sequence[int]) -> list[dict[str, Any]]:
        """Oldest first."""
        wanted = set(ids)
        with self._lock:
            return [dict(r) for r in self._records.get(job, []) if r["id"] in wanted]

    def delete(self, job: str, ids: Sequence[int] | None = None) -> int:
        """Delete by id, or all of the job's."""
        with self._lock:
            items = self._records.get(job, [])
            if ids is None:
                self._records.pop(job, None)
                self._dropped.pop(job, None)
                return len(items)
            wanted = set(ids)
            kept = [r for r in items if r["id"] not in wanted]
            self._records[job] = kept
            return len(items) - len(kept)

    def dropped(self, job: str) -> int:
        """Dropped to stay within the limit."""
        with self._lock:
            return self._dropped.get(job, 0)


class SqliteDeadLetterStore(DeadLetterStore):
    """Dead letters in the embedded database's ``dead_letters`` table."""

    def __init__(self, db: SqliteDatabase, limit: int = DEFAULT_LIMIT) -> None:
        super().__init__(limit)
        self.db = db
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)

    def add(self, job: str, record: Mapping[str, Any]) -> int:
        """Insert, then drop (and count) the oldest beyond the limit."""
        rows = self.db.execute(
            "INSERT INTO dead_letters (job, stage, reason, record) VALUES (?, ?, ?, ?) "
            "RETURNING id",
            (
                job,
                str(record.get("stage", "")),
                str(record.get("reason", "")),
                orjson.dumps(record),
            ),
        )
        new_id = int(rows[0][0])
        count = int(
            self.db.execute("SELECT COUNT(*) FROM dead_letters WHERE job = ?", (job,))[0][0]
        )
        extra = count - self.limit
        if extra > 0:
            self.db.execute(
                "DELETE FROM dead_letters WHERE id IN "
                "(SELECT id FROM dead_letters WHERE job = ? ORDER BY id LIMIT ?)",
                (job, extra),
            )
            self.db.execute(
                "INSERT INTO dead_letter_drops (job, dropped) VALUES (?, ?) "
                "ON CONFLICT(job) DO UPDATE SET dropped = dropped + excluded.dropped",
                (job, extra),
            )
        return new_id

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
        where, params = "job = ?", [job]
        if stage is not None:
            where += " AND stage = ?"
            params.append(stage)
        if reason is not None:
            where += " AND instr(reason, ?) > 0"
            params.append(reason)
        total = int(
            self.db.execute(f"SELECT COUNT(*) FROM dead_letters WHERE {where}", tuple(params))[0][0]
        )
        rows = self.db.execute(
            f"SELECT id, record FROM dead_letters WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [{**orjson.loads(blob), "id": int(i)} for i, blob in rows], total

    def get(self, job: str, ids: Sequence[int]) -> list[dict[str, Any]]:
        """Oldest first."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            f"SELECT id, record FROM dead_letters WHERE job = ? AND id IN ({marks}) ORDER BY id",
            (job, *[int(i) for i in ids]),
        )
        return [{**orjson.loads(blob), "id": int(i)} for i, blob in rows]

    def delete(self, job: str, ids: Sequence[int] | None = None) -> int:
        """Delete by id, or all of the job's (and its drop count)."""
        if ids is None:
            count = int(
                self.db.execute("SELECT COUNT(*) FROM dead_letters WHERE job = ?", (job,))[0][0]
            )
            self.db.execute("DELETE FROM dead_letters WHERE job = ?", (job,))
            self.db.execute("DELETE FROM dead_letter_drops WHERE job = ?", (job,))
            return count
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        before = int(
            self.db.execute("SELECT COUNT(*) FROM dead_letters WHERE job = ?", (job,))[0][0]
        )
        self.db.execute(
            f"DELETE FROM dead_letters WHERE job = ? AND id IN ({marks})",
            (job, *[int(i) for i in ids]),
        )
        after = int(
            self.db.execute("SELECT COUNT(*) FROM dead_letters WHERE job = ?", (job,))[0][0]
        )
        return before - after

    def dropped(self, job: str) -> int:
        """Dropped to stay within the limit."""
        rows = self.db.execute("SELECT dropped FROM dead_letter_drops WHERE job = ?", (job,))
        return int(rows[0][0]) if rows else 0
