"""Embedded SQLite stores: state kept in one file under the data directory.

One :class:`SqliteDatabase` (a file such as ``mstream-data/mstream.db``, WAL mode) backs
the three stores; calls are serialised by a lock and run on the caller's thread, never on
the IOLoop (the API hands them to an executor).

Example:
    >>> import tempfile, os
    >>> db = SqliteDatabase(os.path.join(tempfile.mkdtemp(), "state.db"))
    >>> cps = SqliteCheckpointStore(db)
    >>> cps.save("job", {"offset": 5}); cps.latest("job").position
    {'offset': 5}
    >>> db.close()
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from mstream.errors import StoreError
from mstream.stores.base import Checkpoint, CheckpointStore, JobStore, ServiceStore

log = logging.getLogger("mstream.stores")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    position BLOB NOT NULL,
    created_at REAL NOT NULL,
    totals BLOB
);
CREATE INDEX IF NOT EXISTS checkpoints_job ON checkpoints (job, id);
CREATE TABLE IF NOT EXISTS jobs (name TEXT PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS services (name TEXT PRIMARY KEY, blob BLOB NOT NULL);
"""


def _private(path: Path) -> None:
    """Make the data directory 0700 and the database file 0600 (SQLite gives its WAL and
    SHM files the database's mode), tightening existing ones and saying so once."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for target, mode in ((directory, 0o700), (path, 0o600)):
        if not target.exists():
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o600))
        current = stat.S_IMODE(target.stat().st_mode)
        if current & ~mode:
            os.chmod(target, mode)
            log.warning("state: %s was mode %o, now %o (private)", target, current, mode)
    for suffix in ("-wal", "-shm", "-journal"):
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists() and stat.S_IMODE(sidecar.stat().st_mode) & ~0o600:
            os.chmod(sidecar, 0o600)


class SqliteDatabase:
    """A SQLite file shared by the embedded stores.

    Raises:
        StoreError: the file cannot be opened or is not a database.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            _private(self.path)
            self.conn = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
            columns = {row[1] for row in self.conn.execute("PRAGMA table_info(checkpoints)")}
            if "totals" not in columns:  # a database from before counter totals
                self.conn.execute("ALTER TABLE checkpoints ADD COLUMN totals BLOB")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open state database {str(self.path)!r}: {exc}") from None
        self.lock = threading.Lock()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement and return its rows.

        Raises:
            StoreError: SQLite failed.
        """
        with self.lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"state database {str(self.path)!r}: {exc}") from None

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.conn.close()


class SqliteCheckpointStore(CheckpointStore):
    """Checkpoints in the ``checkpoints`` table (the last 100 per job are kept)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    def save(self, job: str, position: Any, totals: Mapping[str, int] | None = None) -> None:
        """Record a position (and the job's counter totals) and prune old ones."""
        self.db.execute(
            "INSERT INTO checkpoints (job, position, created_at, totals) VALUES (?, ?, ?, ?)",
            (
                job,
                orjson.dumps(position),
                time.time(),
                orjson.dumps(dict(totals)) if totals is not None else None,
            ),
        )
        self.db.execute(
            "DELETE FROM checkpoints WHERE job = ? AND id <= "
            "(SELECT id FROM checkpoints WHERE job = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (job, job, self.history_limit),
        )

    def latest(self, job: str) -> Checkpoint | None:
        """The newest checkpoint."""
        found = self.history(job, 1)
        return found[0] if found else None

    def history(self, job: str, limit: int = 50) -> list[Checkpoint]:
        """Newest first."""
        rows = self.db.execute(
            "SELECT position, created_at, totals FROM checkpoints WHERE job = ? "
            "ORDER BY id DESC LIMIT ?",
            (job, limit),
        )
        return [
            Checkpoint(job, orjson.loads(pos), created, orjson.loads(t) if t else None)
            for pos, created, t in rows
        ]

    def delete(self, job: str) -> None:
        """Forget a job's checkpoints."""
        self.db.execute("DELETE FROM checkpoints WHERE job = ?", (job,))


class SqliteJobStore(JobStore):
    """Job records (JSON) in the ``jobs`` table."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    def put(self, name: str, record: dict[str, Any]) -> None:
        """Create or replace a record."""
        self.db.execute(
            "INSERT INTO jobs (name, record) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET record = excluded.record",
            (name, orjson.dumps(record)),
        )

    def get(self, name: str) -> dict[str, Any] | None:
        """One record."""
        rows = self.db.execute("SELECT record FROM jobs WHERE name = ?", (name,))
        return orjson.loads(rows[0][0]) if rows else None

    def all(self) -> dict[str, dict[str, Any]]:
        """Every record."""
        return {
            name: orjson.loads(rec)
            for name, rec in self.db.execute("SELECT name, record FROM jobs ORDER BY name")
        }

    def delete(self, name: str) -> None:
        """Remove a record."""
        self.db.execute("DELETE FROM jobs WHERE name = ?", (name,))


class SqliteServiceStore(ServiceStore):
    """Service blobs (encrypted by the registry) in the ``services`` table."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    def put(self, name: str, blob: bytes) -> None:
        """Create or replace a blob."""
        self.db.execute(
            "INSERT INTO services (name, blob) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET blob = excluded.blob",
            (name, bytes(blob)),
        )

    def get(self, name: str) -> bytes | None:
        """One blob."""
        rows = self.db.execute("SELECT blob FROM services WHERE name = ?", (name,))
        return bytes(rows[0][0]) if rows else None

    def all(self) -> dict[str, bytes]:
        """Every blob."""
        return {
            name: bytes(blob)
            for name, blob in self.db.execute("SELECT name, blob FROM services ORDER BY name")
        }

    def delete(self, name: str) -> None:
        """Remove a blob."""
        self.db.execute("DELETE FROM services WHERE name = ?", (name,))
