"""The state stores' contracts: checkpoints, job definitions, service definitions.

The runtime and the API only see these interfaces; behind them is an embedded SQLite file
(one machine keeps state across restarts with no server), memory (tests, notebooks), or
a MongoDB collection (``[system.checkpoints]`` etc.).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Checkpoint:
    """One saved source position of a job.

    Attributes:
        job: the job (connector) name.
        position: JSON-ready position (file offset, Kafka offsets, resume token...).
        created_at: seconds since the epoch.
        totals: the job's counter totals when it was saved (events in and out, errors,
            dead-lettered, filtered), carried across restarts; ``None`` for older ones.
    """

    job: str
    position: Any
    created_at: float
    totals: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the API."""
        out = {"job": self.job, "position": self.position, "created_at": self.created_at}
        if self.totals is not None:
            out["totals"] = dict(self.totals)
        return out


class CheckpointStore(ABC):
    """Saved positions per job, newest last; a bounded history is kept."""

    history_limit = 100

    @abstractmethod
    def save(self, job: str, position: Any, totals: Mapping[str, int] | None = None) -> None:
        """Record a position (JSON-serialisable) for ``job``, with its counter totals."""

    @abstractmethod
    def latest(self, job: str) -> Checkpoint | None:
        """The newest checkpoint of ``job``, if any."""

    @abstractmethod
    def history(self, job: str, limit: int = 50) -> list[Checkpoint]:
        """Checkpoints of ``job``, newest first."""

    @abstractmethod
    def delete(self, job: str) -> None:
        """Forget every checkpoint of ``job``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the store."""


class JobStore(ABC):
    """Job definitions and their last known state, by name."""

    @abstractmethod
    def put(self, name: str, record: dict[str, Any]) -> None:
        """Create or replace the record of job ``name``."""

    @abstractmethod
    def get(self, name: str) -> dict[str, Any] | None:
        """The record of job ``name``, if any."""

    @abstractmethod
    def all(self) -> dict[str, dict[str, Any]]:
        """Every job record by name."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove job ``name`` (no error when absent)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the store."""


class ServiceStore(ABC):
    """Service definitions by name, stored as opaque (encrypted) bytes."""

    @abstractmethod
    def put(self, name: str, blob: bytes) -> None:
        """Create or replace the stored bytes of service ``name``."""

    @abstractmethod
    def get(self, name: str) -> bytes | None:
        """The stored bytes of service ``name``, if any."""

    @abstractmethod
    def all(self) -> dict[str, bytes]:
        """Every stored service by name."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove service ``name`` (no error when absent)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the store."""
