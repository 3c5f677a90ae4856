"""State stores: checkpoints, jobs and services (memory, embedded SQLite, MongoDB).

Example:
    >>> stores = Stores.in_memory()
    >>> stores.checkpoints.save("j", 1); stores.checkpoints.latest("j").position
    1
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mstream.stores.base import Checkpoint, CheckpointStore, JobStore, ServiceStore
from mstream.stores.memory import MemoryCheckpointStore, MemoryJobStore, MemoryServiceStore
from mstream.stores.sqlite import (
    SqliteCheckpointStore,
    SqliteDatabase,
    SqliteJobStore,
    SqliteServiceStore,
)


@dataclass
class Stores:
    """The three stores a process uses."""

    checkpoints: CheckpointStore
    jobs: JobStore
    services: ServiceStore

    @classmethod
    def in_memory(cls) -> Stores:
        """Stores that live as long as the process."""
        return cls(MemoryCheckpointStore(), MemoryJobStore(), MemoryServiceStore())

    @classmethod
    def embedded(cls, data_dir: str | Path) -> Stores:
        """Stores in ``data_dir/mstream.db`` (SQLite), kept across restarts."""
        db = SqliteDatabase(Path(data_dir) / "mstream.db")
        return cls(SqliteCheckpointStore(db), SqliteJobStore(db), SqliteServiceStore(db))

    def close(self) -> None:
        """Close every store."""
        for store in (self.checkpoints, self.jobs, self.services):
            store.close()
        for store in (self.checkpoints, self.jobs, self.services):
            db = getattr(store, "db", None)
            if isinstance(db, SqliteDatabase):
                db.close()
                break


__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "JobStore",
    "MemoryCheckpointStore",
    "MemoryJobStore",
    "MemoryServiceStore",
    "ServiceStore",
    "SqliteCheckpointStore",
    "SqliteDatabase",
    "SqliteJobStore",
    "SqliteServiceStore",
    "Stores",
]
