"""The job manager: owns the connectors of a process, their lifecycle and their counters.

The manager's methods that block (stop, restart) run off the IOLoop; the API and the CLI
call them through an executor.

Example:
    >>> from mstream.config import parse_config
    >>> from mstream.stores import Stores
    >>> cfg = parse_config({
    ...     "services": [{"name": "gen", "provider": "generator", "count": 10},
    ...                  {"name": "out", "provider": "file", "base_dir": __import__("tempfile").mkdtemp()}],
    ...     "connectors": [{"name": "demo", "source": {"service_name": "gen",
    ...         "resource": "counter", "output_encoding": "json"},
    ...         "sinks": [{"service_name": "out", "resource": "o.jsonl", "output_encoding": "json"}]}]})
    >>> m = JobManager(cfg, Stores.in_memory())
    >>> m.start_enabled(); m.wait_all(10)
    True
    >>> m.get("demo").counters.events_out
    10
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from mstream.config.model import Config, ConnectorConfig, ServiceConfig
from mstream.errors import ConflictError, NotFoundError
from mstream.runtime.connector import Connector
from mstream.stores import Stores

log = logging.getLogger("mstream.jobs")


class JobManager:
    """Creates, starts, stops and restarts connectors; a failing one never affects others.

    Args:
        config: the loaded configuration (its services and connectors).
        stores: checkpoint, job and service stores.
        on_change: called after any connector changes state.
        max_restarts: restarts after transport failures before a job is marked failed.
    """

    def __init__(
        self,
        config: Config,
        stores: Stores,
        *,
        on_change: Callable[[Connector], None] | None = None,
        max_restarts: int = 5,
    ) -> None:
        self.config = config
        self.max_restarts = max_restarts
        self.stores = stores
        self.services: dict[str, ServiceConfig] = {s.name: s for s in config.services}
        self.connectors: dict[str, Connector] = {}
        self.on_change = on_change
        self._lock = threading.RLock()

    def create(self, definition: ConnectorConfig, *, start: bool = True) -> Connector:
        """Create (and start) a connector.

        Raises:
            ConflictError: a running connector already has that name.
        """
        with self._lock:
            existing = self.connectors.get(definition.name)
            if existing is not None and existing.running:
                raise ConflictError(f"job {definition.name!r} is already running")
            connector = Connector(
                definition,
                self.services,
                self.stores.checkpoints,
                on_change=self.on_change,
                max_restarts=self.max_restarts,
            )
            self.connectors[definition.name] = connector
        if start:
            connector.start()
            log.info("job %s started", definition.name)
        return connector

    def start_enabled(self) -> None:
        """Create and start every enabled connector of the config."""
        for definition in self.config.connectors:
            if definition.enabled:
                self.create(definition)

    def get(self, name: str) -> Connector:
        """The connector called ``name``.

        Raises:
            NotFoundError: no such job.
        """
        with self._lock:
            connector = self.connectors.get(name)
        if connector is None:
            raise NotFoundError(f"job {name!r} not found")
        return connector

    def stop(self, name: str, *, drain: bool = True, timeout: float = 30.0) -> Connector:
        """Stop a job (blocking; drains in-flight events first)."""
        connector = self.get(name)
        connector.stop(drain=drain, timeout=timeout)
        return connector

    def restart(self, name: str, *, timeout: float = 30.0) -> Connector:
        """Stop (draining) and start a job again; it resumes from its checkpoint."""
        old = self.get(name)
        old.stop(timeout=timeout)
        with self._lock:
            fresh = Connector(
                old.config,
                self.services,
                self.stores.checkpoints,
                on_change=self.on_change,
                max_restarts=self.max_restarts,
            )
            self.connectors[name] = fresh
        fresh.start()
        return fresh

    def stop_all(self, *, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop every job (signals them all first, then waits)."""
        with self._lock:
            connectors = list(self.connectors.values())
        waits = []
        for connector in connectors:
            thread = threading.Thread(target=connector.stop, kwargs={"drain": drain, "timeout": timeout})
            thread.start()
            waits.append(thread)
        for thread in waits:
            thread.join()

    def wait_all(self, timeout: float | None = None) -> bool:
        """Wait until every job has finished."""
        with self._lock:
            connectors = list(self.connectors.values())
        return all(c.wait(timeout) for c in connectors)

    def all_finished(self) -> bool:
        """Whether no job is running any more."""
        with self._lock:
            return all(not c.running for c in self.connectors.values())

    def progress_line(self) -> str:
        """One line with every job's counters, for the periodic progress log."""
        parts = []
        with self._lock:
            connectors = list(self.connectors.values())
        for c in connectors:
            snap = c.counters.snapshot()
            parts.append(
                f"{c.name} [{c.state}] in={snap['events_in']:,} out={snap['events_out']:,} "
                f"dead={snap['dead_lettered']:,} errors={snap['errors']:,} "
                f"{snap['throughput_per_sec']:,.0f} ev/s"
            )
        return "; ".join(parts) if parts else "no jobs"

    def sample(self) -> None:
        """Take a throughput sample of every job (call every second)."""
        with self._lock:
            connectors = list(self.connectors.values())
        for c in connectors:
            c.counters.sample()
