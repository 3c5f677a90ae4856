"""The job manager for a script or a notebook: each call runs on the control loop and the
calling thread waits (:mod:`mstream.runtime.control`).

Example:
    >>> from mstream.config import parse_config
    >>> from mstream.stores import Stores
    >>> jobs = BlockingJobs(JobManager(parse_config({}), Stores.in_memory()))
    >>> jobs.list_jobs()
    []
    >>> jobs.close()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mstream.config.model import ConnectorConfig
from mstream.runtime.connector import Connector
from mstream.runtime.manager import JobManager


class BlockingJobs:
    """The job manager for a script or a notebook: each call runs on the control loop and
    this thread waits for it.

    Args:
        manager: the job manager (its own control loop thread when it was given none).
    """

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` (a manager method) on the loop and wait."""
        return self.manager.control.call(lambda: fn(*args, **kwargs))

    def start_enabled(self) -> None:
        """See :meth:`JobManager.start_enabled`."""
        self.call(self.manager.start_enabled)

    def create(self, definition: ConnectorConfig, **kwargs: Any) -> Connector:
        """See :meth:`JobManager.create`."""
        return self.call(self.manager.create, definition, **kwargs)

    def stop(self, name: str, **kwargs: Any) -> Connector:
        """See :meth:`JobManager.stop`."""
        return self.call(self.manager.stop, name, **kwargs)

    def restart(self, name: str, **kwargs: Any) -> Connector:
        """See :meth:`JobManager.restart`."""
        return self.call(self.manager.restart, name, **kwargs)

    def delete(self, name: str, **kwargs: Any) -> None:
        """See :meth:`JobManager.delete`."""
        self.call(self.manager.delete, name, **kwargs)

    def stop_all(self, **kwargs: Any) -> list[str]:
        """See :meth:`JobManager.stop_all`."""
        return self.call(self.manager.stop_all, **kwargs)

    def get(self, name: str) -> Connector:
        """See :meth:`JobManager.get`."""
        return self.call(self.manager.get, name)

    def list_jobs(self) -> list[dict[str, Any]]:
        """See :meth:`JobManager.list_jobs`."""
        return self.call(self.manager.list_jobs)

    def wait_all(self, timeout: float | None = None) -> bool:
        """Wait (on this thread) until every job has finished."""
        connectors: list[Connector] = self.call(lambda: list(self.manager.connectors.values()))
        return all(c.wait(timeout) for c in connectors)

    def close(self) -> None:
        """Stop every job, then the manager's writer and its own control loop."""
        self.stop_all()
        self.manager.close()
        self.manager.control.close()
