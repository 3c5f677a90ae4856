"""The state stores' contracts: checkpoints, job definitions, service definitions.

The runtime and the API only see these interfaces; behind them is an embedded SQLite file
(one machine keeps state across restarts with no server), memory (tests, notebooks), or
a MongoDB collection (``[system.checkpoints]`` etc.).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Checkpoint:
    """One saved source position of a job.

    Attributes:
        job: the job (connector) name.
        position: JSON-ready position (file offset, Kafka offsets, resume token...).
        created_at: seconds since the epoch.
    """

    job: str
    position: Any
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the API."""
        return {"job": self.job, "position": self.position, "created_at": self.created_at}


class CheckpointStore(ABC):
    """Saved positions per job, newest last; a bounded history is kept."""

    history_limit = 100

    @abstractmethod
    def save(self, job: str, position: Any) -> None:
        """Record a position (JSON-serialisable) for ``job``."""

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
