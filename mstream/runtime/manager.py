"""The job manager: owns the connectors of a process, their lifecycle, persistence and services.

Job definitions (``ConnectorConfig.to_dict()``) are kept in the job store with their
*desired state* (``running`` or ``stopped``, set only by a user action: create, stop,
restart) and their last observed state. At start-up :meth:`JobManager.bootstrap` combines
the store with the config file according to ``[system.job_lifecycle] startup_state``:

* ``force_from_file``: the file wins; stored jobs are replaced by the file's connectors.
* ``seed_from_file`` (default): stored jobs (including ones created through the API) are
  restored; a file connector is added only when the store has no job with its name.
* ``keep``: only stored jobs; the file's connectors are used only on the first start (when
  the store holds no job at all).

Restored jobs whose desired state is ``stopped`` stay stopped; ones that had completed stay
completed; the others start again and resume from their checkpoint. A stored job that no
longer validates (say its service was removed) is listed as failed with the reason and
never affects the others.

Concurrency rule (read this before changing the manager; see :mod:`mstream.runtime.control`):

* Every lifecycle operation (create, start, stop, restart, delete, restore, service
  create/delete, a connector's state change) runs **on the control loop**, the IOLoop that
  serves the API. The lifecycle methods are coroutines; their blocking parts (store I/O,
  waiting for a connector to stop) are awaited in the executor, never run on the loop.
  The tables are written only on the loop, so there is no lock; other threads read copies.
* Connector threads report state changes with ``IOLoop.add_callback`` only.
* One lifecycle operation at a time per job name: each claims the name first
  (:meth:`JobManager._exclusive`); a second one on a claimed name is refused at once with
  :class:`~mstream.errors.ConflictError` ("busy"), never queued. So no interleaving of
  calls can leave a connector running that the manager does not list.
* Once :meth:`JobManager.stop_all` has begun, every lifecycle operation is refused, and
  ``stop_all`` waits for the ones already in progress before it stops the jobs.

A script or notebook uses :class:`~mstream.runtime.blocking.BlockingJobs`, which runs each
call on the loop and waits.

Example:
    >>> from mstream.config import parse_config
    >>> from mstream.stores import Stores
    >>> import tempfile
    >>> cfg = parse_config({
    ...     "services": [{"name": "gen", "provider": "generator", "count": 10},
    ...                  {"name": "out", "provider": "file", "base_dir": tempfile.mkdtemp()}],
    ...     "connectors": [{"name": "demo", "source": {"service_name": "gen",
    ...         "resource": "counter", "output_encoding": "json"},
    ...         "sinks": [{"service_name": "out", "resource": "o.jsonl",
    ...                    "output_encoding": "json"}]}]})
    >>> from mstream.runtime.blocking import BlockingJobs
    >>> jobs = BlockingJobs(JobManager(cfg, Stores.in_memory()))
    >>> jobs.start_enabled(); jobs.wait_all(10)
    True
    >>> jobs.get("demo").counters.events_out
    10
    >>> jobs.call(jobs.manager.jobs_using, "out")
    ['demo']
    >>> jobs.close()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tornado.locks import Condition

from mstream.config.checks import connector_problems
from mstream.config.compat import log_not_acted_on
from mstream.config.model import Config, ConnectorConfig, ServiceConfig
from mstream.config.schema import parse_connector, parse_service
from mstream.errors import ConfigError, ConflictError, MstreamError, NotFoundError
from mstream.online_check import failures_of
from mstream.providers.mongodb.schema_registry import install_schema_collection
from mstream.registry import ServiceRegistry
from mstream.runtime.admission import check_files, check_service
from mstream.runtime.broken import BrokenJob
from mstream.runtime.cluster import default_instance_id
from mstream.runtime.connector import (
    COMPLETED,
    CREATED,
    FAILED,
    RETRYING,
    RUNNING,
    STOPPED,
    Connector,
)
from mstream.runtime.control import ControlLoop
from mstream.runtime.history import MetricsHistory
from mstream.runtime.job_views import DESIRED_RUNNING, DESIRED_STOPPED, JobViews
from mstream.runtime.replay import replay
from mstream.stores import Stores

if TYPE_CHECKING:
    from mstream.runtime.cluster import Coordinator

log = logging.getLogger("mstream.jobs")

STARTUP_STATES = ("force_from_file", "seed_from_file", "keep")
RESTART_FROM = ("checkpoint", "beginning")
"""Where a completed job may be restarted from (``POST /jobs/{name}/restart?from=...``)."""
PERSISTED_STATES = (RUNNING, RETRYING, STOPPED, COMPLETED, FAILED)
REPLAY_LIMIT = 1000
"""Dead letters one replay request sends at most (the response says how many remain)."""


class JobManager(JobViews):
    """Creates, starts, stops, restarts and deletes jobs; a failing one never affects others.

    Args:
        config: the loaded configuration (its services and connectors).
        stores: checkpoint, job and service stores.
        control: the control loop (a loop on a thread of its own when omitted).
        registry: the service registry (an in-memory one holding the config's services when
            omitted).
        on_change: called on the control loop after any connector changes state.
        max_restarts: restarts after transport failures before a job is marked failed.
        start_timeout: seconds a job's run may take to open its steps before the start
            watchdog fails it.

    Building one installs ``[system.schemas].resource`` as the collection of the original's
    schema documents and logs, once, the ``[system]`` keys accepted but not acted on.
    """

    def __init__(
        self,
        config: Config,
        stores: Stores,
        *,
        control: ControlLoop | None = None,
        registry: ServiceRegistry | None = None,
        on_change: Callable[[Connector], None] | None = None,
        max_restarts: int = 5,
        start_timeout: float = 60.0,
    ) -> None:
        self.config = config
        schemas = config.system.schemas
        install_schema_collection(schemas.resource if schemas is not None else None)
        log_not_acted_on(config.system, log)
        self.control = control if control is not None else ControlLoop()
        self.max_restarts = max_restarts
        self.start_timeout = start_timeout
        self.stores = stores
        self.registry = (
            registry if registry is not None else ServiceRegistry.in_memory(config.services)
        )
        self.connectors: dict[str, Connector] = {}
        self.broken: dict[str, BrokenJob] = {}
        self.on_change = on_change
        self._desired: dict[str, str] = {}
        self._origin: dict[str, str] = {}
        self._created: dict[str, float] = {}
        self._generation: dict[str, int] = {}  # raised by every restart (several instances)
        self._busy: dict[str, str] = {}  # job name -> the lifecycle operation in progress
        self._idle = Condition()
        self._removing_services: set[str] = set()
        self._closing = False
        # job records are written in order, one at a time, off the loop
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="mstream-jobstore")
        self.history = MetricsHistory()
        self.instance_id = config.system.instance_id or default_instance_id()
        self.cluster: Coordinator | None = None
        """Set when several instances share the stores (:mod:`mstream.runtime.cluster`)."""

    # -- services ------------------------------------------------------------------------

    @property
    def services(self) -> dict[str, ServiceConfig]:
        """Every service by name (a snapshot)."""
        return self.registry.all()

    async def create_service(self, raw: Any, *, online: bool = False) -> ServiceConfig:
        """Validate a service definition (as in ``[[services]]``) and add it.

        Raises:
            ConfigError: invalid definition (one ``path: message`` line per problem), or
                files or a host the operator did not open to the API.
            ConflictError: a service with that name exists.
        """
        self.control.assert_on_loop()
        service = parse_service(raw, "")
        await self.control.io(check_service, service, self.config)
        if online:
            failed = await self.control.io(failures_of, (), {service.name: service})
            if failed:
                raise ConfigError(failed)
        if service.name in self._removing_services:
            raise ConflictError(f"service {service.name!r} is being deleted; try again")
        await self.control.io(self.registry.add, service, origin="api")
        return service

    async def delete_service(self, name: str) -> ServiceConfig:
        """Remove a service that no job uses.

        Every job the manager holds counts as a user - running, stopped, completed or failed
        - because any of them can be restarted; delete the job first to free the service.

        Raises:
            NotFoundError: no such service.
            ConflictError: jobs use it (they are named in the message).
        """
        self.control.assert_on_loop()
        self.registry.get(name)
        users = self.jobs_using(name)
        users += sorted(n for n in self._busy if n not in users)
        if users:
            jobs = ", ".join(users)
            raise ConflictError(
                f"service {name!r} is used by job(s) {jobs}; delete those jobs first"
            )
        if name in self._removing_services:
            raise ConflictError(f"service {name!r} is being deleted")
        self._removing_services.add(name)  # no job may be created with it meanwhile
        try:
            return await self.control.io(self.registry.remove, name)
        finally:
            self._removing_services.discard(name)

    def jobs_using(self, service_name: str) -> list[str]:
        """Names of the jobs (in any state) whose definition uses ``service_name``."""
        connectors, broken = dict(self.connectors), dict(self.broken)
        users = [n for n, c in connectors.items() if service_name in c.config.service_names()]
        users += [n for n, b in broken.items() if service_name in b.service_names()]
        return sorted(users)

    # -- persistence ---------------------------------------------------------------------

    def _record(self, name: str) -> dict[str, Any]:
        connector = self.connectors[name]
        return {
            "definition": connector.config.to_dict(),
            "desired_state": self._desired.get(name, DESIRED_RUNNING),
            "origin": self._origin.get(name, "api"),
            "created_at": self._created.get(name, time.time()),
            "generation": self._generation.get(name, 0),
            "last_state": connector.state,
            "reason": connector.reason,
            "started_at": connector.started_at,
            "stopped_at": connector.stopped_at,
        }

    async def _persist(self, name: str) -> None:
        """Write the job's record (built on the loop) to the job store (off the loop)."""
        if name not in self.connectors:
            return
        record = self._record(name)
        await self.control.loop.run_in_executor(self._writer, self.stores.jobs.put, name, record)

    def _reported(self, connector: Connector) -> None:
        """A connector changed state (called on its thread): hand it to the loop."""
        self.control.post(self._changed, connector)

    async def _changed(self, connector: Connector) -> None:
        if self.cluster is not None:  # the owner's view goes to its lease, not the record
            await self.cluster.observed(connector)
        elif self.connectors.get(connector.name) is connector and (
            connector.state in PERSISTED_STATES
        ):
            try:
                await self._persist(connector.name)
            except MstreamError as exc:
                log.warning("job %s: state not saved: %s", connector.name, exc)
        if self.on_change is not None:
            self.on_change(connector)

    @contextmanager
    def _exclusive(self, name: str, operation: str) -> Iterator[None]:
        """Claim ``name`` for one lifecycle operation; refuse at once if it is claimed.

        Raises:
            ConflictError: another operation on the job is in progress, or the manager is
                stopping.
        """
        self.control.assert_on_loop()
        if self._closing:
            raise ConflictError(f"job {name!r}: mstream is stopping; try again later")
        current = self._busy.get(name)
        if current is not None:
            raise ConflictError(f"job {name!r} is busy ({current} in progress); try again")
        self._busy[name] = operation
        try:
            yield
        finally:
            del self._busy[name]
            self._idle.notify_all()

    def _new_connector(self, definition: ConnectorConfig) -> Connector:
        checkpoints = self.stores.checkpoints
        if self.cluster is not None and definition.name in self.cluster.held:
            checkpoints = self.cluster.checkpoints_for(definition.name)
        return Connector(
            definition,
            self.services,
            checkpoints,
            on_change=self._reported,
            dead_letters=self.stores.dead_letters,
            max_restarts=self.max_restarts,
            start_timeout=self.start_timeout,
        )

    # -- lifecycle (coroutines on the control loop) --------------------------------------

    async def create(
        self,
        definition: ConnectorConfig,
        *,
        start: bool = True,
        origin: str = "api",
        persist: bool = True,
    ) -> Connector:
        """Create (and start) a job.

        Raises:
            ConflictError: a job with that name exists (delete it first to replace it).
        """
        with self._exclusive(definition.name, "create"):
            return await self._create(definition, start=start, origin=origin, persist=persist)

    async def _create(
        self, definition: ConnectorConfig, *, start: bool, origin: str, persist: bool
    ) -> Connector:
        """:meth:`create` for a caller that has claimed the name."""
        if definition.name in self.connectors or definition.name in self.broken:
            raise ConflictError(f"job {definition.name!r} already exists")
        if (
            self.cluster is not None
            and persist
            and await self.control.io(self.stores.jobs.get, definition.name) is not None
        ):  # created on another instance since the last heartbeat
            raise ConflictError(f"job {definition.name!r} already exists")
        for service in definition.service_names():
            if service in self._removing_services:
                raise ConflictError(f"service {service!r} is being deleted")
        connector = self._new_connector(definition)
        if not start:
            connector.mark(STOPPED)
        self.connectors[definition.name] = connector
        self._desired[definition.name] = DESIRED_RUNNING if start else DESIRED_STOPPED
        self._origin[definition.name] = origin
        self._created[definition.name] = time.time()
        if persist:
            await self._persist(definition.name)
        if start and await self._start(definition.name):
            log.info("job %s started", definition.name)
        return self.connectors[definition.name]

    async def create_from_dict(self, raw: Any, *, online: bool = False) -> Connector:
        """Validate a connector definition (as in ``[[connectors]]``), then create and start it.

        Args:
            raw: the definition.
            online: also run the online checks of its services and steps
                (:mod:`mstream.online_check`) before creating it.

        Raises:
            ConfigError: invalid definition (one ``path: message`` line per problem), or a
                failed online check (``online: subject: what: reason``).
            ConflictError: a job with that name exists.
        """
        self.control.assert_on_loop()
        definition = parse_connector(raw, self.services, "")
        await self.control.io(check_files, definition, self.services)
        problems = await self.control.io(connector_problems, definition, self.services, "")
        if problems:
            raise ConfigError(problems)
        if online:
            failed = await self.control.io(failures_of, (definition,), self.services)
            if failed:
                raise ConfigError(failed)
        with self._exclusive(definition.name, "create"):
            connector = await self._create(definition, start=True, origin="api", persist=True)
        log.info(
            "job %s created and %s",
            definition.name,
            "started" if connector.running or self.cluster is None else "handed to the cluster",
        )
        return connector

    async def start_enabled(self) -> None:
        """Create and start every enabled connector of the config (no job store involved)."""
        for definition in self.config.connectors:
            if definition.enabled:
                await self.create(definition, origin="file")

    async def bootstrap(
        self, startup_state: str | None = None, *, safe_mode: bool = False
    ) -> list[str]:
        """Restore and start jobs from the job store and the config file.

        Args:
            startup_state: ``force_from_file``, ``seed_from_file`` or ``keep`` (default:
                ``[system.job_lifecycle] startup_state``).
            safe_mode: restore every job but start none (``mstream --safe-mode``). The
                stored desired states are left as they are, so the next normal start runs
                the jobs that were running; a job is started by restarting it.

        Returns:
            The names of the jobs started.
        """
        self.control.assert_on_loop()
        mode = startup_state or self.config.system.startup_state
        if mode not in STARTUP_STATES:
            raise ConfigError(
                f"startup_state: must be one of {', '.join(STARTUP_STATES)} (got {mode!r})"
            )
        stored = await self.control.io(self.stores.jobs.all)
        file_jobs = {c.name: c for c in self.config.connectors}
        plan: list[tuple[str, ConnectorConfig | None, dict[str, Any] | None]] = []
        if mode == "force_from_file":
            for name in stored:
                if name not in file_jobs:
                    await self.control.io(self.stores.jobs.delete, name)
                    log.info(
                        "job %s: removed from the job store (startup_state = force_from_file)", name
                    )
            plan = [(name, c, None) for name, c in file_jobs.items()]
        elif mode == "seed_from_file" or (mode == "keep" and not stored):
            if mode == "keep" and file_jobs:
                log.info(
                    "startup_state = keep with an empty job store: the file's connectors "
                    "seed it (the Rust original would start none of them)"
                )
            plan = [(name, None, record) for name, record in stored.items()]
            plan += [(name, c, None) for name, c in file_jobs.items() if name not in stored]
        else:
            plan = [(name, None, record) for name, record in stored.items()]

        started: list[str] = []
        for name, from_file, record in plan:
            try:
                if from_file is not None:
                    run = from_file.enabled and not safe_mode
                    # in safe mode a file job is listed, not stored, so the next normal
                    # start seeds it as the file says
                    await self.create(from_file, start=run, origin="file", persist=not safe_mode)
                    if run:
                        started.append(name)
                elif record is not None and self._restore(name, record, start=not safe_mode):
                    started.append(name)
            except ConflictError as exc:
                if self.cluster is None:
                    log.error("job %s: not started: %s", name, exc)
                else:  # another instance stored the file's job first: it is adopted below
                    log.info("job %s: stored by another instance meanwhile", name)
            except MstreamError as exc:  # one bad job never stops the others
                log.error("job %s: not started: %s", name, exc)
        if self.cluster is not None and not safe_mode:
            await self.cluster.beat()  # takes the leases of the jobs that want to run
            return sorted(self.cluster.held)
        return started

    def _restore(self, name: str, record: Mapping[str, Any], *, start: bool = True) -> bool:
        with self._exclusive(name, "restore"):
            return self._restore_claimed(name, record, start=start)

    def _restore_claimed(self, name: str, record: Mapping[str, Any], *, start: bool) -> bool:
        raw = record.get("definition")
        try:
            definition = parse_connector(raw, self.services, "")
        except ConfigError as exc:
            reason = "stored definition is no longer valid: " + "; ".join(exc.problems)
            self.broken[name] = BrokenJob(
                name, dict(raw) if isinstance(raw, Mapping) else {}, reason, record
            )
            log.error("job %s: %s", name, reason)
            return False
        desired = record.get("desired_state", DESIRED_RUNNING)
        last = record.get("last_state")
        run = start and desired == DESIRED_RUNNING and last != COMPLETED
        if name in self.connectors:
            raise ConflictError(f"job {name!r} already exists")
        connector = self._new_connector(definition)
        self.connectors[name] = connector
        self._desired[name] = DESIRED_STOPPED if desired == DESIRED_STOPPED else DESIRED_RUNNING
        self._origin[name] = str(record.get("origin", "api"))
        self._created[name] = float(record.get("created_at") or time.time())
        generation = record.get("generation")
        self._generation[name] = generation if isinstance(generation, int) else 0
        if self.cluster is not None:  # its lease decides where it runs (the next heartbeat)
            connector.mark(COMPLETED if last == COMPLETED else STOPPED, record.get("reason"))
            return False
        if run:
            connector.start()
            log.info("job %s restored and started (resumes from its checkpoint)", name)
            return True
        state = COMPLETED if last == COMPLETED and desired == DESIRED_RUNNING else STOPPED
        if not start and desired == DESIRED_RUNNING and last != COMPLETED:
            connector.mark(state, "safe mode: not started (POST /jobs/{name}/restart starts it)")
            log.info("job %s restored (stopped: safe mode)", name)
            return False
        connector.mark(state, record.get("reason") if state == COMPLETED else None)
        connector.started_at = record.get("started_at")
        connector.stopped_at = record.get("stopped_at")
        log.info("job %s restored (%s)", name, state)
        return False

    async def stop(self, name: str, *, drain: bool = True, timeout: float = 30.0) -> Connector:
        """Stop a job (drains in-flight events and saves the final checkpoint).

        Stopping a job that is not running is allowed; it only records that the user
        wants it stopped (it then stays stopped across process restarts).
        """
        with self._exclusive(name, "stop"):
            connector = self.get(name)
            self._desired[name] = DESIRED_STOPPED
            if self.cluster is not None:
                await self._persist(name)  # first: the job's other owners follow the record
            await self.control.io(connector.stop, drain=drain, timeout=timeout)
            if connector.state == CREATED:
                connector.mark(STOPPED)
            if self.cluster is None:
                await self._persist(name)
            elif self.cluster.elsewhere(name) and not await self.cluster.wait_released(
                name, timeout
            ):
                log.warning("job %s: still running elsewhere %.0fs after the stop", name, timeout)
            log.info("job %s stopped by request (%s)", name, connector.state)
        return connector

    async def restart(
        self, name: str, *, timeout: float = 30.0, start_from: str | None = None
    ) -> Connector:
        """Stop (draining) and start a job again; it resumes from its checkpoint.

        A stored job that could not be restored is validated again (its services may be
        back). A job that has *completed* is run again only when the caller says from
        where, because running it again may write its events a second time:
        ``start_from="checkpoint"`` resumes after its last saved position (a job without
        checkpoints reads its source from the start), ``start_from="beginning"`` deletes
        its checkpoints first.

        Raises:
            NotFoundError: no such job.
            ConfigError: ``start_from`` is neither ``checkpoint`` nor ``beginning``.
            ConflictError: the job's definition is still invalid, it did not stop in time,
                or it completed and ``start_from`` is not given.
        """
        if start_from not in (None, *RESTART_FROM):
            raise ConfigError(
                f"from: must be one of {', '.join(RESTART_FROM)} (got {str(start_from)[:40]!r})"
            )
        with self._exclusive(name, "restart"):
            broken = self.broken.get(name)
            if broken is not None:
                try:
                    definition = parse_connector(broken.definition, self.services, "")
                except ConfigError as exc:
                    raise ConflictError(
                        f"job {name!r} cannot run: " + "; ".join(exc.problems)
                    ) from None
                del self.broken[name]
                self._created.setdefault(
                    name, float(broken.record.get("created_at") or time.time())
                )
                self._origin.setdefault(name, str(broken.record.get("origin", "api")))
            else:
                old = self.get(name)
                # with several instances the state is the owner's (its lease's)
                state = self.describe(name, definition=False)["state"]
                if state == COMPLETED and start_from is None:
                    raise ConflictError(
                        f"job {name!r} has completed; running it again may write its events "
                        "again: restart with from=checkpoint (resume after the last saved "
                        "position) or from=beginning (forget its checkpoints)"
                    )
                elsewhere = self.cluster.elsewhere(name) if self.cluster is not None else []
                if start_from == "beginning" and elsewhere:
                    owners = ", ".join(sorted({lease.owner for lease in elsewhere}))
                    raise ConflictError(
                        f"job {name!r} runs on {owners}; stop it before restarting it from "
                        "the beginning"
                    )
                if not await self.control.io(old.stop, timeout=timeout):
                    raise ConflictError(
                        f"job {name!r} did not stop within {timeout:.0f}s; try again"
                    )
                definition = old.config
            if self.cluster is not None:
                self.cluster.drop(name)  # its owners elsewhere follow the new generation
            if start_from == "beginning":
                await self.control.io(self.stores.checkpoints.delete, name)
            self.connectors[name] = self._new_connector(definition)
            self._desired[name] = DESIRED_RUNNING
            self._generation[name] = self._generation.get(name, 0) + 1
            await self._persist(name)
            await self._start(name)
            log.info(
                "job %s restarted (%s)",
                name,
                "from the beginning"
                if start_from == "beginning"
                else "resumes from its checkpoint",
            )
        return self.connectors[name]

    async def _start(self, name: str) -> bool:
        """Start a job here, or with several instances take a free slot of it (another
        instance may run it instead).

        Returns:
            Whether it runs here now.
        """
        if self.cluster is not None:
            return await self.cluster.claim(name)
        self.connectors[name].start()
        return True

    async def delete(self, name: str, *, keep_checkpoints: bool = False) -> None:
        """Delete a job that is not running (and, unless kept, its checkpoints).

        Raises:
            NotFoundError: no such job.
            ConflictError: the job is running; stop it first.
        """
        with self._exclusive(name, "delete"):
            connector = self.connectors.get(name)
            if connector is None and name not in self.broken:
                raise NotFoundError(f"job {name!r} not found")
            # a failed job may still have a thread stuck in a step's open (the start
            # watchdog failed it); it is stopping and owns nothing the next run needs
            if connector is not None and connector.running and connector.state != FAILED:
                raise ConflictError(
                    f"job {name!r} is {connector.state}; stop it before deleting it"
                )
            if self.cluster is not None and self.cluster.elsewhere(name):
                owners = sorted({lease.owner for lease in self.cluster.elsewhere(name)})
                raise ConflictError(
                    f"job {name!r} runs on {', '.join(owners)}; stop it before deleting it"
                )
            self.forget(name)
            await self.control.loop.run_in_executor(self._writer, self.stores.jobs.delete, name)
            if self.cluster is not None:
                await self.control.io(self.cluster.leases.forget, name)
            if not keep_checkpoints:
                await self.control.io(self.stores.checkpoints.delete, name)
            log.info("job %s deleted", name)

    async def stop_all(self, *, drain: bool = True, timeout: float = 30.0) -> list[str]:
        """Stop every job (signals them all first, then waits). Desired states are kept, so
        the jobs that were running start again with the next process.

        From its first call on, lifecycle operations are refused; the ones already in
        progress are waited for (up to ``timeout``) before the jobs are stopped, so a job
        that one of them starts is stopped too.

        Returns:
            The names of the jobs still running after ``timeout`` (empty when all stopped).
        """
        self.control.assert_on_loop()
        deadline = time.monotonic() + timeout
        self._closing = True
        while self._busy:
            left = deadline - time.monotonic()
            if left <= 0 or not await self._idle.wait(timeout=timedelta(seconds=left)):
                break
        connectors = list(self.connectors.values())
        for connector in connectors:
            connector.stop(drain=drain, timeout=0)  # signal only; waited for below

        def wait_for_all() -> None:
            for connector in connectors:
                connector.wait(max(0.0, deadline - time.monotonic()))

        await self.control.io(wait_for_all)
        return sorted(c.name for c in connectors if c.running)

    def abandon_all(self) -> None:
        """Stop every job now without draining (a second Ctrl-C); returns at once.

        What was acknowledged and checkpointed stays saved; in-flight events are delivered
        again by the next run.
        """
        self._closing = True
        for connector in list(self.connectors.values()):
            connector.stop(drain=False, timeout=0)  # signal only

    def close(self) -> None:
        """Release the job store writer (after :meth:`stop_all`)."""
        self._writer.shutdown(wait=True)

    # -- several instances (driven by mstream.runtime.cluster, on the loop) -------------

    def generation(self, name: str) -> int:
        """How many times the job has been restarted (its record's ``generation``)."""
        return self._generation.get(name, 0)

    def busy(self, name: str) -> bool:
        """Whether a lifecycle operation on the job is in progress."""
        return name in self._busy

    def run_held(self, name: str) -> None:
        """Start a job whose lease this instance has just taken, with a fresh connector
        (its checkpoint writes fenced by the lease)."""
        fresh = self._new_connector(self.connectors[name].config)
        self.connectors[name] = fresh
        fresh.start()

    def adopt(self, name: str, record: Mapping[str, Any]) -> None:
        """List a job another instance created (not started: its lease decides)."""
        self._restore_claimed(name, record, start=False)

    def follow(self, name: str, desired: str, generation: int) -> None:
        """Take the job record's desired state and generation (written on any instance)."""
        self._desired[name] = desired
        self._generation[name] = generation

    def forget(self, name: str) -> None:
        """Drop a job from the tables (deleted here or on another instance)."""
        self.connectors.pop(name, None)
        self.broken.pop(name, None)
        for table in (self._desired, self._origin, self._created, self._generation):
            table.pop(name, None)
        self.history.forget(name)

    # -- dead letters --------------------------------------------------------------------

    async def replay_dead_letters(
        self, name: str, ids: list[int] | None = None, edits: Mapping[int, Any] | None = None
    ) -> dict[str, Any]:
        """Send kept dead letters (up to ``REPLAY_LIMIT`` of them when ``ids`` is ``None``)
        through the job's pipeline from the step each failed at (:mod:`.replay`).

        Raises:
            NotFoundError: no such job.
            ConflictError: another operation on the job is in progress.
        """
        with self._exclusive(name, "replay"):
            connector = self.get(name)
            store = self.stores.dead_letters
            if ids is None:
                newest, _ = await self.control.io(store.page, name, limit=REPLAY_LIMIT)
                ids = [r["id"] for r in newest]
            records = await self.control.io(store.get, name, ids)
            outcome = await self.control.io(replay, connector, records, edits)
            _, left = await self.control.io(store.page, name, limit=0)
        result = outcome.to_dict()
        result["remaining"] = left
        log.info(
            "job %s: replayed %d dead letter(s): %d delivered, %d rejected again%s",
            name,
            outcome.replayed,
            outcome.delivered,
            outcome.rejected_again,
            f"; stopped: {outcome.error}" if outcome.error else "",
        )
        return result
