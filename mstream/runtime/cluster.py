"""Several instances sharing MongoDB state stores: heartbeats, job leases, one control plane.

Active when both ``[system.job_lifecycle]`` and ``[system.checkpoints]`` are in MongoDB
(:func:`cluster_stores`); with the embedded store nothing here runs.

* Each instance (``[system] instance_id``, default ``<host>-<pid>``) writes a heartbeat
  document every ``heartbeat_interval_ms``, listing the jobs it runs (``GET /cluster``).
* A job runs only where its lease is held (:mod:`mstream.stores.cluster`): one slot for a
  single-reader source (MongoDB change stream, file, generator), ``replicas`` slots for a
  Kafka or Pub/Sub source, where the broker spreads the work among the replicas' consumers.
  The owner renews its leases at every heartbeat; a lease it cannot renew for
  ``lease_ttl_ms`` (store unreachable, process paused) or that another instance has taken
  stops the job there at once, without draining, and its checkpoint writes are refused.
  Another instance takes a lapsed slot and resumes from the last checkpoint.
* Lifecycle calls on any instance write the job's desired state (and, for a restart, a new
  *generation*) to the job store; the owner applies them at its next heartbeat. What an
  owner observes (running, completed, failed) goes into its lease, not the job record, so
  owners never overwrite a desired state another instance wrote.

Concurrency: everything here runs on the control loop (store calls in the executor), like
the job manager it drives.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tornado import gen

from mstream.config.model import ClusterConfig
from mstream.errors import ConflictError, MstreamError, StoreError
from mstream.runtime.connector import COMPLETED, FAILED, STOPPED, Connector
from mstream.stores import Stores
from mstream.stores.base import CheckpointStore
from mstream.stores.cluster import FINISHED, FencedCheckpoints, InstanceStore, Lease, LeaseStore

if TYPE_CHECKING:
    from mstream.runtime.manager import JobManager
    from mstream.stores.mongodb import MongoCheckpointStore, MongoJobStore

log = logging.getLogger("mstream.cluster")

ENDED = (STOPPED, COMPLETED, FAILED)
SHOWN_TTLS = 3
"""An instance silent for this many lease TTLs is no longer listed by ``GET /cluster``..."""
STALE_TTLS = 30
"""...and its heartbeat document is deleted after this many."""


def default_instance_id() -> str:
    """``<host>-<pid>``: unique per process on a host.

    Example:
        >>> default_instance_id().endswith(f"-{os.getpid()}")
        True
    """
    return f"{socket.gethostname()}-{os.getpid()}"


def cluster_stores(stores: Stores) -> tuple[MongoJobStore, MongoCheckpointStore] | None:
    """The job and checkpoint stores when both are in MongoDB (several instances can share
    them), else ``None``."""
    from mstream.stores.mongodb import MongoCheckpointStore, MongoJobStore, MongoServiceStore

    if isinstance(stores.jobs, MongoJobStore) and isinstance(
        stores.checkpoints, MongoCheckpointStore
    ):
        if not isinstance(stores.services, MongoServiceStore):
            log.warning(
                "services are in the embedded store: a service created through the API of "
                "one instance is unknown to the others (set [system.service_lifecycle])"
            )
        return stores.jobs, stores.checkpoints
    if isinstance(stores.jobs, MongoJobStore):
        log.warning(
            "jobs are in MongoDB but checkpoints are not: several instances need "
            "[system.checkpoints] in MongoDB too, so jobs are not shared between instances"
        )
    return None


class Coordinator:
    """This instance's part in the cluster, driven by the job manager and a heartbeat.

    Args:
        manager: the job manager (its tables are changed through its own methods).
        stores: the shared job and checkpoint stores (:func:`cluster_stores`).
        instance_id: this instance's id.
        settings: ``[system.cluster]``.
        api_url: where this instance's API answers (shown in ``GET /cluster``).
    """

    def __init__(
        self,
        manager: JobManager,
        stores: tuple[MongoJobStore, MongoCheckpointStore],
        instance_id: str,
        settings: ClusterConfig,
        api_url: str | None = None,
    ) -> None:
        jobs, self.checkpoints = stores
        self.manager = manager
        self.id = instance_id
        self.settings = settings
        self.ttl = settings.lease_ttl_ms / 1000.0
        self.api_url = api_url
        self.started_at = time.time()
        base = jobs.collection.name
        self.leases = LeaseStore(jobs.connection, f"{base}_leases", self.ttl)
        self.instances = InstanceStore(jobs.connection, f"{base}_instances")
        self.held: dict[str, Lease] = {}  # job -> this instance's holding
        self.seen: list[Lease] = []  # every slot, as of the last heartbeat
        self.members: list[dict[str, Any]] = []
        self.beat_s = settings.heartbeat_interval_ms / 1000.0
        # when each holding's last successful renewal (or its taking) began
        self._renewed_at: dict[str, float] = {}
        self._beating = False
        self._services_problem: str | None = None

    # -- what the job manager asks ------------------------------------------------------

    def checkpoints_for(self, name: str) -> CheckpointStore:
        """The checkpoint store of a job held here: writes are fenced by its lease."""
        return FencedCheckpoints(self.checkpoints, self.leases, self.held[name])

    def live(self, name: str, now: float | None = None) -> list[Lease]:
        """The job's slots held (unexpired) by any instance, this one included."""
        at = time.time() if now is None else now
        out = [
            lease
            for lease in self.seen
            if lease.job == name and not lease.expired(at) and lease.owner != self.id
        ]
        mine = self.held.get(name)  # this instance's own holdings: what it holds now
        if mine is not None:
            out.append(mine)
        return sorted(out, key=lambda lease: lease.slot)

    def elsewhere(self, name: str) -> list[Lease]:
        """The job's live slots held by other instances."""
        return [lease for lease in self.live(name) if lease.owner != self.id]

    def drop(self, name: str) -> Lease | None:
        """Forget this instance's holding of a job (given up, lost or released)."""
        self._renewed_at.pop(name, None)
        return self.held.pop(name, None)

    async def claim(self, name: str) -> bool:
        """Take a free slot of a job that wants to run and start it here.

        Returns:
            Whether the job now runs here.
        """
        if name in self.held:
            return True
        connector = self.manager.connectors.get(name)
        if connector is None:
            return False
        replicas = connector.config.replicas
        generation = self.manager.generation(name)
        now = time.time()
        taken = {lease.slot for lease in self.live(name, now)}
        for slot in range(replicas):
            if slot in taken:
                continue
            began = time.monotonic()
            lease = await self.manager.control.io(
                self.leases.acquire, name, slot, self.id, generation, now
            )
            if lease is not None:
                self.held[name] = lease
                self._renewed_at[name] = began
                self.manager.run_held(name)
                log.info(
                    "job %s: lease %s taken (token %d); running it here",
                    name,
                    lease.id,
                    lease.token,
                )
                return True
        return False

    async def observed(self, connector: Connector) -> None:
        """Record a job's new state in its lease; give the lease up when the job ended."""
        lease = self.held.get(connector.name)
        if lease is None or self.manager.connectors.get(connector.name) is not connector:
            return
        state = connector.state
        try:
            if state in ENDED:  # the thread reports its last state just before it ends
                self.drop(connector.name)
                await self.manager.control.io(self.leases.release, lease, state, connector.reason)
                log.info("job %s: %s here; lease %s released", connector.name, state, lease.id)
            else:
                await self.manager.control.io(self.leases.renew, lease, time.time(), state)
        except StoreError as exc:
            log.warning("job %s: state not recorded in its lease: %s", connector.name, exc)

    async def wait_released(self, name: str, timeout: float) -> bool:
        """Wait until no instance holds the job (its owners stopped it).

        Returns:
            ``False`` when some still hold it after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            slots = await self.manager.control.io(self.leases.all)
            now = time.time()
            if not any(s.job == name and not s.expired(now) for s in slots):
                self.seen = slots
                return True
            if time.monotonic() >= deadline:
                return False
            await gen.sleep(min(0.2, self.beat_s))

    def describe(self, name: str, out: dict[str, Any]) -> None:
        """Add where the job runs (``instance``, ``instances``) to its description, and
        the owner's state and start time when it runs elsewhere."""
        live = self.live(name)
        owners = [lease.owner for lease in live]
        out["instances"] = owners
        out["instance"] = owners[0] if owners else None
        if name in self.held:
            return
        if live:
            first = live[0]
            out["state"] = first.state or "running"
            out["started_at"] = first.started_at
            return
        generation = self.manager.generation(name)
        ended = [s for s in self.seen if s.job == name and s.generation == generation]
        if ended and out.get("state") in (None, "created", STOPPED):
            last = max(ended, key=lambda s: s.token)
            if last.state in (COMPLETED, FAILED):
                out["state"] = last.state
                out["reason"] = last.reason

    def view(self) -> dict[str, Any]:
        """``GET /cluster``: instances, their heartbeats and jobs, and every lease."""
        now = time.time()
        stale = SHOWN_TTLS * self.ttl
        return {
            "enabled": True,
            "instance_id": self.id,
            "lease_ttl_ms": self.settings.lease_ttl_ms,
            "heartbeat_interval_ms": self.settings.heartbeat_interval_ms,
            "instances": [
                {**member, "alive": now - float(member.get("heartbeat_at", 0.0)) < self.ttl}
                for member in self.members
                if now - float(member.get("heartbeat_at", 0.0)) < stale or member["id"] == self.id
            ],
            "leases": [{**lease.to_dict(), "live": not lease.expired(now)} for lease in self.seen],
        }

    # -- the heartbeat --------------------------------------------------------------------

    def tick(self) -> None:
        """Every ``heartbeat_interval_ms`` (a periodic callback on the loop): check the
        lease deadlines by the clock, then start a heartbeat unless the last one still
        waits for the store."""
        self._check_deadlines()
        if not self._beating:
            self.manager.control.loop.spawn_callback(self.beat)

    async def beat(self) -> None:
        """One heartbeat: renew this instance's leases, apply the job store's desired
        states (start, stop, restart, forget) to the jobs here, then publish what runs."""
        if self._beating:
            return  # the previous one is still waiting for the store
        self._beating = True
        try:
            await self._renew()
            self.seen = await self.manager.control.io(self.leases.all)
            await self._reconcile()
            await self._publish()
        except StoreError as exc:
            log.warning("cluster heartbeat: %s", exc)
        except Exception as exc:  # a record edited by hand, say: the next beat tries again
            log.error("cluster heartbeat failed: %s: %s", type(exc).__name__, exc)
        finally:
            self._beating = False

    def _check_deadlines(self) -> None:
        """Stop every job whose lease may lapse before the next heartbeat: it was not
        renewed for a TTL less one heartbeat (the store does not answer, or the process
        was paused). Runs by the clock, even while a store call hangs, so a job is
        stopped here before another instance may take it."""
        limit = self.ttl - self.beat_s
        now = time.monotonic()
        for name in list(self.held):
            if now - self._renewed_at.get(name, now) > limit:
                self._fence(name, f"not renewed for {limit:.1f}s")

    async def _renew(self) -> None:
        for name, lease in list(self.held.items()):
            connector = self.manager.connectors.get(name)
            state = connector.state if connector is not None else None
            began = time.monotonic()
            try:
                renewed = await self.manager.control.io(
                    self.leases.renew, lease, time.time(), state
                )
            except StoreError as exc:
                log.warning("job %s: lease %s not renewed: %s", name, lease.id, exc)
                continue
            if self.held.get(name) is not lease:
                continue  # fenced or given up meanwhile
            if renewed:
                self._renewed_at[name] = began
            else:
                self._fence(name, "another instance has taken it")

    def _fence(self, name: str, why: str) -> None:
        """Stop a job whose lease is gone, at once and without draining: its checkpoint
        writes are refused now, and the new owner delivers what was in flight again."""
        lease = self.drop(name)
        connector = self.manager.connectors.get(name)
        if connector is not None:
            connector.stop(drain=False, timeout=0)
        log.warning(
            "job %s: lease %s lost (%s); stopped here without draining",
            name,
            lease.id if lease else "?",
            why,
        )

    async def _publish(self) -> None:
        from mstream import __version__

        jobs = sorted(f"{lease.id}" for lease in self.held.values())
        document = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "api_url": self.api_url,
            "version": __version__,
            "started_at": self.started_at,
            "heartbeat_at": time.time(),
            "jobs": jobs,
        }
        await self.manager.control.io(self.instances.beat, self.id, document)
        await self.manager.control.io(self.instances.prune, time.time() - STALE_TTLS * self.ttl)
        self.members = await self.manager.control.io(self.instances.all)

    async def _reconcile(self) -> None:
        manager = self.manager
        services_changed = await self._load_services()
        records = await manager.control.io(manager.stores.jobs.all)
        for name in sorted(set(manager.connectors) | set(manager.broken)):
            if name not in records and not manager.busy(name):
                self._spawn(name, self._forget)
        for name, record in records.items():
            if manager.busy(name):
                continue
            if self._replaced(name, record) or (services_changed and name in manager.broken):
                manager.forget(name)  # listed again from its record
            if not manager.exists(name):
                manager.adopt(name, record)
            if name not in manager.connectors:
                continue  # stored but invalid here: listed as broken
            action = self._follow(name, record)
            if action is None:
                continue
            if action[0] == self._restart_here:  # waits for a drain: not in the heartbeat
                self._spawn(name, *action)
            else:
                await self._apply(name, *action)

    async def _load_services(self) -> bool:
        """Read the services other instances created (the service store is shared too).

        Returns:
            Whether the set of services changed.
        """
        registry = self.manager.registry
        before = registry.all()
        try:
            await self.manager.control.io(registry.load)
        except MstreamError as exc:
            if str(exc) != self._services_problem:  # once, not at every heartbeat
                log.warning("cluster: stored services not read: %s", exc)
            self._services_problem = str(exc)
            return False
        self._services_problem = None
        return registry.all() != before

    def _replaced(self, name: str, record: dict[str, Any]) -> bool:
        """Whether the stored job was deleted and created anew (on another instance) with
        another definition than the one listed here, while it does not run here."""
        connector = self.manager.connectors.get(name)
        if connector is None or name in self.held or connector.running:
            return False
        return record.get("definition") != connector.config.to_dict()

    def _spawn(self, name: str, step: Any, *args: Any) -> None:
        """Run a step that waits for a job to stop as a task of its own, so the heartbeat
        (which renews every lease) never waits for a drain."""
        self.manager.control.loop.spawn_callback(self._apply, name, step, *args)

    async def _apply(self, name: str, step: Any, *args: Any) -> None:
        try:
            with self._claimed(name):
                await step(name, *args)
        except ConflictError:
            pass  # an API call on the job is under way: next heartbeat
        except MstreamError as exc:
            log.error("job %s: %s", name, exc)

    @contextmanager
    def _claimed(self, name: str) -> Iterator[None]:
        with self.manager._exclusive(name, "heartbeat"):
            yield

    async def _forget(self, name: str) -> None:
        """The job was deleted on another instance."""
        if name in self.held:
            connector = self.manager.connectors[name]
            await self.manager.control.io(connector.stop, timeout=30.0)
            self.drop(name)
        self.manager.forget(name)
        log.info("job %s: deleted on another instance; forgotten here", name)

    def _follow(self, name: str, record: dict[str, Any]) -> tuple[Any, ...] | None:
        """Take the job record's desired state and decide what to do here to follow it:
        ``(step, *args)`` to run with the job claimed, or ``None`` (nothing; the job is
        not claimed, so an API call on it is never refused because of a heartbeat)."""
        manager = self.manager
        desired = record.get("desired_state", "running")
        raw_generation = record.get("generation", 0)
        generation = raw_generation if isinstance(raw_generation, int) else 0
        manager.follow(name, desired, generation)
        lease = self.held.get(name)
        if lease is not None:
            if desired != "running" and manager.connectors[name].running:
                return (self._stop_here,)
            if desired == "running" and generation > lease.generation:
                return (self._restart_here, lease, generation)
            return None
        finished_before = record.get("last_state") == COMPLETED and not any(
            s.job == name for s in self.seen
        )  # completed before its store was shared: it has no lease to say so
        if desired == "running" and not finished_before and self._free_slot(name):
            return (self.claim,)
        return None

    def _free_slot(self, name: str) -> bool:
        """Whether, as of the last heartbeat, some slot of the job may be taken: not held
        by a live lease, and not finished (completed, failed) in the job's generation."""
        replicas = self.manager.connectors[name].config.replicas
        generation = self.manager.generation(name)
        now = time.time()
        blocked = {
            s.slot
            for s in self.seen
            if s.job == name
            and (not s.expired(now) or (s.state in FINISHED and s.generation >= generation))
        }
        return any(slot not in blocked for slot in range(replicas))

    async def _stop_here(self, name: str) -> None:
        self.manager.connectors[name].stop(timeout=0)  # drains on its thread
        log.info("job %s: stopping here (stop requested on another instance)", name)

    async def _restart_here(self, name: str, lease: Lease, generation: int) -> None:
        """Stop the job here, then run it in its new generation under a new token."""
        connector = self.manager.connectors[name]
        await self.manager.control.io(connector.stop, timeout=30.0)
        began = time.monotonic()
        renewed = await self.manager.control.io(
            self.leases.acquire, name, lease.slot, self.id, generation, time.time()
        )
        if renewed is None:
            self.drop(name)
            return
        self.held[name] = renewed
        self._renewed_at[name] = began
        self.manager.run_held(name)
        log.info("job %s: restarted here (restart requested on another instance)", name)

    async def leave(self) -> None:
        """After the jobs here have stopped: give every lease up so another instance takes
        the jobs at once, and remove this instance's heartbeat."""
        for name, lease in list(self.held.items()):
            connector = self.manager.connectors.get(name)
            state = connector.state if connector is not None else STOPPED
            try:
                await self.manager.control.io(self.leases.release, lease, state, None)
            except StoreError as exc:
                log.warning(
                    "job %s: lease not released (it lapses in %.0fs): %s", name, self.ttl, exc
                )
        for name in list(self.held):
            self.drop(name)
        try:
            await self.manager.control.io(self.instances.remove, self.id)
        except StoreError as exc:
            log.warning("cluster: heartbeat not removed: %s", exc)

    def close(self) -> None:
        """Release the lease and instance stores."""
        self.leases.close()
        self.instances.close()
