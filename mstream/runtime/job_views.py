"""What the job manager shows: jobs, their states and counters, checkpoints, dead letters.

:class:`JobViews` is the read side of :class:`~mstream.runtime.manager.JobManager` (which
inherits it): quick, non-blocking reads of the manager's tables, on the control loop or a
copy from elsewhere; what a read needs from a store is awaited in the executor. With
several instances, a job's description adds where it runs
(:meth:`mstream.runtime.cluster.Coordinator.describe`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from mstream.core import ConnectorCounters
from mstream.errors import ConflictError, NotFoundError
from mstream.runtime.broken import BrokenJob
from mstream.runtime.connector import FAILED, Connector
from mstream.runtime.control import ControlLoop
from mstream.runtime.history import MetricsHistory
from mstream.runtime.monitoring import job_metrics
from mstream.stores import Stores

if TYPE_CHECKING:
    from mstream.runtime.cluster import Coordinator

log = logging.getLogger("mstream.jobs")

DESIRED_RUNNING = "running"
DESIRED_STOPPED = "stopped"


class JobViews:
    """The manager's reads (see the module docstring); the manager owns the tables."""

    connectors: dict[str, Connector]
    broken: dict[str, BrokenJob]
    control: ControlLoop
    stores: Stores
    history: MetricsHistory
    cluster: Coordinator | None
    _desired: dict[str, str]
    _origin: dict[str, str]

    def get(self, name: str) -> Connector:
        """The connector called ``name``.

        Raises:
            NotFoundError: no such job.
            ConflictError: the stored job cannot run (its reason is given).
        """
        connector = self.connectors.get(name)
        if connector is None:
            broken = self.broken.get(name)
            if broken is not None:
                raise ConflictError(f"job {name!r} cannot run: {broken.reason}")
            raise NotFoundError(f"job {name!r} not found")
        return connector

    def exists(self, name: str) -> bool:
        """Whether a job (runnable or broken) called ``name`` exists."""
        return name in self.connectors or name in self.broken

    def running_jobs(self) -> list[str]:
        """Names of the jobs whose connector is running now."""
        return sorted(n for n, c in dict(self.connectors).items() if c.running)

    def all_finished(self) -> bool:
        """Whether no job is running any more."""
        return all(not c.running for c in list(self.connectors.values()))

    def describe(self, name: str, *, definition: bool = True) -> dict[str, Any]:
        """A job's state, times, counters (and definition), JSON-ready.

        Raises:
            NotFoundError: no such job.
        """
        connector = self.connectors.get(name)
        broken = self.broken.get(name)
        desired = self._desired.get(name, DESIRED_RUNNING)
        origin = self._origin.get(name, "api")
        if connector is not None:
            out = connector.status()
            out["desired_state"] = desired
            out["origin"] = origin
            out["services"] = sorted(connector.config.service_names())
            if definition:
                out["definition"] = connector.config.to_dict()
            if self.cluster is not None:
                self.cluster.describe(name, out)
            return out
        if broken is not None:
            out = {
                "name": name,
                "state": FAILED,
                "reason": broken.reason,
                "started_at": broken.record.get("started_at"),
                "stopped_at": broken.record.get("stopped_at"),
                "restarts": 0,
                "counters": ConnectorCounters().snapshot(),
                "desired_state": broken.record.get("desired_state", DESIRED_RUNNING),
                "origin": broken.record.get("origin", "api"),
                "services": sorted(broken.service_names()),
            }
            if definition:
                out["definition"] = broken.definition
            return out
        raise NotFoundError(f"job {name!r} not found")

    def list_jobs(self) -> list[dict[str, Any]]:
        """Every job (without definitions), sorted by name."""
        out = []
        for name in sorted(set(self.connectors) | set(self.broken)):
            try:
                out.append(self.describe(name, definition=False))
            except NotFoundError:  # deleted meanwhile
                continue
        return out

    async def checkpoints(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        """A job's checkpoint history, newest first.

        Raises:
            NotFoundError: no such job.
        """
        if not self.exists(name):
            raise NotFoundError(f"job {name!r} not found")
        history = await self.control.io(self.stores.checkpoints.history, name, limit)
        return [c.to_dict() for c in history]

    # -- dead letters --------------------------------------------------------------------

    async def dead_letters(
        self,
        name: str,
        *,
        stage: str | None = None,
        reason: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> dict[str, Any]:
        """A page of the job's kept dead letters, newest first, and how many were dropped.

        Raises:
            NotFoundError: no such job.
        """
        if not self.exists(name):
            raise NotFoundError(f"job {name!r} not found")
        store = self.stores.dead_letters
        items, total = await self.control.io(
            store.page, name, stage=stage, reason=reason, offset=offset, limit=limit
        )
        dropped = await self.control.io(store.dropped, name)
        for item in items:
            item.pop("original", None)  # the bytes a replay needs; the payload shows them
        return {
            "job": name,
            "dead_letters": items,
            "total": total,
            "offset": offset,
            "dropped": dropped,
        }

    async def discard_dead_letters(self, name: str, ids: list[int] | None = None) -> int:
        """Delete kept dead letters (all of the job's when ``ids`` is ``None``).

        Raises:
            NotFoundError: no such job.
        """
        if not self.exists(name):
            raise NotFoundError(f"job {name!r} not found")
        count: int = await self.control.io(self.stores.dead_letters.delete, name, ids)
        log.info("job %s: %d dead letter(s) discarded", name, count)
        return count

    def progress_line(self) -> str:
        """One line with every job's counters, for the periodic progress log."""
        parts = []
        for c in list(self.connectors.values()):
            if self.cluster is not None and not c.running and c.name not in self.cluster.held:
                continue  # runs elsewhere, or nowhere
            snap = c.counters.snapshot()
            parts.append(
                f"{c.name} [{c.state}] in={snap['events_in']:,} out={snap['events_out']:,} "
                f"dead={snap['dead_lettered']:,} errors={snap['errors']:,} "
                f"{snap['throughput_per_sec']:,.0f} ev/s"
            )
        if parts:
            return "; ".join(parts)
        return "no jobs" if self.cluster is None else "no jobs on this instance"

    def sample(self) -> None:
        """Take a throughput sample of every job (call every second, on the loop); keep a
        point of throughput and lag for the last hour's chart."""
        now = time.time()
        for c in list(self.connectors.values()):
            c.counters.sample()
            if c.running:
                self.history.offer(c.name, now, job_metrics(c.status(), now))
