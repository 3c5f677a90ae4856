"""In-memory stores, for tests, notebooks and throw-away runs.

Example:
    >>> s = MemoryCheckpointStore()
    >>> s.save("job", {"offset": 10}); s.save("job", {"offset": 20})
    >>> [c.position["offset"] for c in s.history("job")]
    [20, 10]
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Mapping
from typing import Any

from mstream.stores.base import Checkpoint, CheckpointStore, JobStore, ServiceStore


class MemoryCheckpointStore(CheckpointStore):
    """Checkpoints kept in a dict of lists."""

    def __init__(self) -> None:
        self._data: dict[str, list[Checkpoint]] = {}
        self._lock = threading.Lock()

    def save(self, job: str, position: Any, totals: Mapping[str, int] | None = None) -> None:
        """Record a position."""
        kept = dict(totals) if totals is not None else None
        with self._lock:
            items = self._data.setdefault(job, [])
            items.append(Checkpoint(job, copy.deepcopy(position), time.time(), kept))
            del items[: -self.history_limit]

    def latest(self, job: str) -> Checkpoint | None:
        """The newest checkpoint."""
        with self._lock:
            items = self._data.get(job)
            return items[-1] if items else None

    def history(self, job: str, limit: int = 50) -> list[Checkpoint]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._data.get(job, [])))[:limit]

    def delete(self, job: str) -> None:
        """Forget a job's checkpoints."""
        with self._lock:
            self._data.pop(job, None)


class MemoryJobStore(JobStore):
    """Job records in a dict."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def put(self, name: str, record: dict[str, Any]) -> None:
        """Create or replace a record."""
        with self._lock:
            self._data[name] = copy.deepcopy(record)

    def get(self, name: str) -> dict[str, Any] | None:
        """One record."""
        with self._lock:
            record = self._data.get(name)
            return copy.deepcopy(record) if record is not None else None

    def all(self) -> dict[str, dict[str, Any]]:
        """Every record."""
        with self._lock:
            return copy.deepcopy(self._data)

    def delete(self, name: str) -> None:
        """Remove a record."""
        with self._lock:
            self._data.pop(name, None)


class MemoryServiceStore(ServiceStore):
    """Service blobs in a dict."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, name: str, blob: bytes) -> None:
        """Create or replace a blob."""
        with self._lock:
            self._data[name] = bytes(blob)

    def get(self, name: str) -> bytes | None:
        """One blob."""
        with self._lock:
            return self._data.get(name)

    def all(self) -> dict[str, bytes]:
        """Every blob."""
        with self._lock:
            return dict(self._data)

    def delete(self, name: str) -> None:
        """Remove a blob."""
        with self._lock:
            self._data.pop(name, None)
