"""A running connector: builds the Rx pipeline from its definition and runs it on a thread.

Pipeline::

    source ─► batch ─► convert(source encoding) ─► middleware … ─► deliver(sinks) ─► acks
                 └────────── bad events ──► dead-letter sink ◄──────────┘

Two threads per job. The *source thread* runs the pipeline (the source's reads,
conversions, middlewares and synchronous sink writes), so a slow sink slows the source:
backpressure without queues. Asynchronous sinks complete on their client's threads; at
most ``max_in_flight`` batches wait for them. The *connector thread* supervises: it opens
the steps, subscribes, saves the source's position (only positions whose every predecessor
is acknowledged) every ``checkpoint.interval_ms`` and once more after a drained stop, and
restarts the pipeline with backoff after a transport failure.

States: ``starting`` (steps opening), ``running`` (the source is open), ``retrying``
(between a failed run and the next attempt: see :attr:`Connector.retry`), ``stopping``,
and the final ``stopped``, ``completed``, ``failed``. Only the connector thread writes the
state; :meth:`Connector.stop` only signals, and ``stopping`` is what the state reads as
while a requested stop is under way - so a stop racing a completion cannot leave a job
"stopping" for good.

One stop signal per run (``halt``): the user's stop, a pipeline error and the start
watchdog all set it; the source, every provider's retry wait (``StepContext.stopping``)
and the backoff watch it.

Threads are not daemons: at interpreter exit every job still running is stopped (drained
within its bound, then abandoned) before Python waits for them, so exiting a script never
cuts a write or loses the final checkpoint (:func:`_stop_at_exit`).

Example:
    >>> from mstream.config import parse_config
    >>> cfg = parse_config({
    ...     "services": [{"name": "gen", "provider": "generator", "count": 1000},
    ...                  {"name": "out", "provider": "stdout"}],
    ...     "connectors": [{"name": "demo", "source": {"service_name": "gen",
    ...         "resource": "counter", "output_encoding": "json"},
    ...         "sinks": [{"service_name": "out", "output_encoding": "json"}]}]})
    >>> import contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()):
    ...     c = Connector(cfg.connectors[0], {s.name: s for s in cfg.services})
    ...     c.start(); finished = c.wait(10)
    >>> finished, c.state, c.counters.events_out
    (True, 'completed', 1000)
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from reactivex import abc
from reactivex.scheduler import EventLoopScheduler

from mstream import operators as ops
from mstream.config.model import ConnectorConfig, ServiceConfig, StepConfig
from mstream.core import Batch, ConnectorCounters, Event
from mstream.encodings import StepSchema
from mstream.errors import ConfigError, DeliveryError, MstreamError
from mstream.providers import get_provider
from mstream.providers.base import Middleware, Sink, Source, StepContext
from mstream.runtime.dead_letter import DeadLetterRouter
from mstream.runtime.source import source_observable
from mstream.runtime.steps import build_steps
from mstream.stores import CheckpointStore, DeadLetterStore, MemoryCheckpointStore

log = logging.getLogger("mstream.connector")

STARTING = "starting"
RUNNING = "running"
RETRYING = "retrying"
STOPPING = "stopping"
STOPPED = "stopped"
COMPLETED = "completed"
FAILED = "failed"
CREATED = "created"
ACTIVE = (STARTING, RUNNING, RETRYING)
"""States in which a stop request reads as ``stopping``."""


class Connector:
    """One job: its definition, its pipeline, its state and counters.

    Args:
        config: the connector definition.
        services: every service by name.
        checkpoints: where positions are saved (memory when omitted).
        scheduler: the scheduler of batch flush timers (virtual time in tests).
        max_in_flight: batches that may wait for asynchronous sinks.
        max_restarts: how many transport failures in a row restart the pipeline (with
            exponential backoff) before the job is marked failed. A run that stayed up
            for ``healthy_after`` seconds before failing starts the count (and the
            backoff) afresh, so a long-lived job survives occasional outages.
        healthy_after: seconds of uptime after which a run counts as recovered.
        restart_backoff: the first restart's delay in seconds; it doubles per failure in a
            row, up to 30 s.
        start_timeout: seconds a run may take to open its steps (schemas, dead-letter sink,
            middlewares, sinks, source); past it the start watchdog marks the job failed
            and stops it, so a step stuck connecting never leaves it "running" for ever.
        on_change: called after every state change, from whichever thread changed it (the
            job manager only posts it to the control loop).
        dead_letters: where rejected events are also kept for replay (none when omitted).
    """

    def __init__(
        self,
        config: ConnectorConfig,
        services: Mapping[str, ServiceConfig],
        checkpoints: CheckpointStore | None = None,
        *,
        scheduler: abc.SchedulerBase | None = None,
        max_in_flight: int = 32,
        max_restarts: int = 5,
        healthy_after: float = 60.0,
        restart_backoff: float = 1.0,
        start_timeout: float = 60.0,
        on_change: Callable[[Connector], None] | None = None,
        dead_letters: DeadLetterStore | None = None,
    ) -> None:
        self.config = config
        self.dead_letters = dead_letters
        self.name = config.name
        self.services = dict(services)
        self.checkpoints = checkpoints if checkpoints is not None else MemoryCheckpointStore()
        self.scheduler = scheduler
        self.max_in_flight = max_in_flight
        self.max_restarts = max_restarts
        self.healthy_after = healthy_after
        self.restart_backoff = restart_backoff
        self.start_timeout = start_timeout
        self.on_change = on_change
        self.counters = ConnectorCounters()
        self._state = CREATED
        self.reason: str | None = None
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.restarts = 0  # every restart since start()
        self.retry: dict[str, Any] | None = None
        """While ``retrying``: ``attempt``, ``of``, ``next_try_at`` (epoch s), ``last_error``."""
        self._failures_in_a_row = 0
        self.logger = logging.getLogger(f"mstream.connector.{config.name}")
        self._stop_requested = threading.Event()  # the user's intent, kept across runs
        self._halt = threading.Event()  # the current run's one stop signal
        self._abandon = threading.Event()  # stop without draining
        self._drain = True
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: Source | None = None
        self._last_saved: Any = None
        self._on_open: Callable[[], None] | None = None
        self._wedged = False  # failed by the start watchdog while its thread is stuck
        self._totals_carried = False

    # -- control -------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The job's state; ``stopping`` while a requested stop is under way."""
        if self._state in ACTIVE and self._stop_requested.is_set() and self.running:
            return STOPPING
        return self._state

    def mark(self, state: str, reason: str | None = None) -> None:
        """Set the state of a connector that is not running (a restored, unstarted job)."""
        if self.running:
            raise RuntimeError(f"connector {self.name!r} is running; only its thread sets it")
        self._state = state
        self.reason = reason

    def start(self) -> None:
        """Start the connector's thread; returns at once."""
        if self.running:
            return
        self._stop_requested.clear()
        self._abandon.clear()
        self._finished.clear()
        self._drain = True
        self.reason = None
        self.retry = None
        self.restarts = self._failures_in_a_row = 0
        self._totals_carried = False
        self.started_at = time.time()
        self.stopped_at = None
        self._thread = threading.Thread(target=self._run, name=f"mstream-{self.name}")
        _live.add(self)
        self._set_state(STARTING)
        self._thread.start()

    def stop(self, *, drain: bool = True, timeout: float | None = 30.0) -> bool:
        """Stop: the source stops reading; with ``drain`` in-flight events are delivered and
        acknowledged and the final checkpoint saved. Only signals the connector thread, then
        waits up to ``timeout`` (``0``: do not wait; call it off the IOLoop otherwise).

        Returns:
            ``True`` if the connector finished within ``timeout``.
        """
        if not self.running:
            return True
        if not drain:
            self._drain = False
            self._abandon.set()
        first = not self._stop_requested.is_set()
        self._stop_requested.set()
        self._halt.set()
        if first:
            self._notify()
        return self._finished.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the connector has finished (completed, stopped or failed)."""
        if self._thread is None:
            return True
        return self._finished.wait(timeout)

    @property
    def running(self) -> bool:
        """Whether the connector's thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        """State, reason, times and counters, JSON-ready."""
        out = {
            "name": self.name,
            "state": self.state,
            "reason": self.reason,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "restarts": self.restarts,
            "counters": self.counters.snapshot(),
        }
        retry = self.retry
        if retry is not None and out["state"] == RETRYING:
            out["retry"] = dict(retry)
        return out

    # -- internals -----------------------------------------------------------------------

    def _notify(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self)
            except Exception:
                self.logger.exception("state change callback failed")

    def _set_state(self, state: str, reason: str | None = None) -> None:
        if self._wedged and state != FAILED:
            return  # failed by the start watchdog: what its stuck thread does later is moot
        self._state = state
        if reason is not None:
            self.reason = reason
        if state != RETRYING:
            self.retry = None
        if state in (STOPPED, COMPLETED, FAILED):
            self.stopped_at = time.time()
        self._notify()

    def _opened(self) -> None:
        if self._state in (STARTING, RETRYING):
            self._set_state(RUNNING)

    def _run(self) -> None:
        backoff = self.restart_backoff
        try:
            while True:
                began = time.monotonic()
                try:
                    self._watched_run_once()
                except ConfigError as exc:
                    self._fail(str(exc))
                    return
                except Exception as exc:
                    reason = _reason(exc)
                    if self._stop_requested.is_set():
                        self._set_state(STOPPED)
                        return
                    if time.monotonic() - began >= self.healthy_after:
                        self._failures_in_a_row, backoff = 0, self.restart_backoff  # recovered
                    if self._failures_in_a_row >= self.max_restarts or not isinstance(
                        exc, DeliveryError | OSError
                    ):
                        self._fail(reason)
                        return
                    self._failures_in_a_row += 1
                    self.restarts += 1
                    self.counters.last_error = reason
                    self.logger.warning(
                        "connector %s: %s; restarting from the last checkpoint in %.1fs (%d/%d)",
                        self.name,
                        reason,
                        backoff,
                        self._failures_in_a_row,
                        self.max_restarts,
                    )
                    self.retry = {
                        "attempt": self._failures_in_a_row,
                        "of": self.max_restarts,
                        "next_try_at": time.time() + backoff,
                        "last_error": reason,
                    }
                    self._state = RETRYING  # retry is set first, so readers see both
                    self._notify()
                    if self._stop_requested.wait(backoff):
                        self._set_state(STOPPED)
                        return
                    backoff = min(backoff * 2, 30.0)
                    continue
                if self._stop_requested.is_set():
                    self._set_state(STOPPED)
                else:
                    self._set_state(COMPLETED)
                    self.logger.info(
                        "connector %s completed: %d events delivered",
                        self.name,
                        self.counters.events_out,
                    )
                return
        finally:
            self._finished.set()
            _live.discard(self)

    def _watched_run_once(self) -> None:
        """:meth:`_run_once` under the start watchdog (disarmed once the source is open)."""
        opened = threading.Event()
        watchdog = threading.Timer(self.start_timeout, self._start_wedged, (opened,))
        watchdog.name = f"mstream-{self.name}-watchdog"
        watchdog.daemon = True  # it only marks state; it never holds data

        def on_open() -> None:
            opened.set()
            self._opened()

        self._on_open = on_open
        watchdog.start()
        try:
            self._run_once()
        finally:
            watchdog.cancel()

    def _start_wedged(self, opened: threading.Event) -> None:
        if opened.is_set() or self._stop_requested.is_set():
            return
        self._wedged = True
        self._stop_requested.set()
        self._halt.set()
        self._fail(
            f"did not start within {self.start_timeout:.0f}s (a step is stuck opening: "
            "schemas, sinks, middlewares or the source); stopped"
        )

    def _fail(self, reason: str) -> None:
        if self._wedged and self._state == FAILED:
            return
        self.logger.error("connector %s failed: %s", self.name, reason)
        self._set_state(FAILED, reason)

    def _service(self, name: str) -> ServiceConfig:
        service = self.services.get(name)
        if service is None:
            raise ConfigError(f"connector {self.name!r}: service {name!r} is not defined")
        return service

    def _context(self, role: str, index: int = 0) -> StepContext:
        return StepContext(
            connector=self.name,
            role=role,
            index=index,
            counters=self.counters,
            stopping=self._halt,
            logger=self.logger,
        )

    def _load_schemas(self) -> dict[str, StepSchema]:
        schemas: dict[str, StepSchema] = {}
        for ref in self.config.schemas:
            service = self._service(ref.service_name)
            loader = get_provider(service.provider).schema_loader
            if loader is None:
                raise ConfigError(
                    f"schema {ref.id!r}: provider {service.provider!r} cannot serve schemas"
                )
            schemas[ref.id] = loader(service, ref.resource)
        return schemas

    def _make_sink(self, step: StepConfig, ctx: StepContext) -> Sink:
        service = self._service(step.service_name)
        factory = get_provider(service.provider).sink
        if factory is None:
            raise ConfigError(f"provider {service.provider!r} cannot be a sink")
        return factory(service, step, ctx)

    def _run_once(self) -> None:
        cfg = self.config
        halt = self._halt = threading.Event()  # this run's stop signal (contexts watch it)
        if self._stop_requested.is_set():
            halt.set()
        schemas = self._load_schemas()
        opened: list[Sink | Middleware] = []
        reject: DeadLetterRouter | None = None
        try:
            dead_letter_sink: Sink | None = None
            if cfg.dead_letter is not None:
                dl_step = StepConfig(
                    service_name=cfg.dead_letter.service_name,
                    resource=cfg.dead_letter.resource,
                    output_encoding=cfg.dead_letter.output_encoding,
                )
                dead_letter_sink = self._make_sink(dl_step, self._context("dead_letter"))
                dead_letter_sink.open()
                opened.append(dead_letter_sink)
            reject = DeadLetterRouter(
                self.name,
                self.counters,
                dead_letter_sink,
                cfg.dead_letter.output_encoding if cfg.dead_letter else "json",
                self.logger,
                store=self.dead_letters,
            )

            source_service = self._service(cfg.source.service_name)
            source_factory = get_provider(source_service.provider).source
            if source_factory is None:
                raise ConfigError(f"provider {source_service.provider!r} cannot be a source")
            source_ctx = self._context("source")
            source_ctx.checkpointing = cfg.checkpoint
            if cfg.checkpoint:
                saved = self.checkpoints.latest(self.name)
                source_ctx.resume_position = saved.position if saved is not None else None
                self._last_saved = source_ctx.resume_position
                if not self._totals_carried:  # once per start(): later runs share counters
                    self._totals_carried = True
                    self.counters.carry(saved.totals if saved is not None else None)
            source = source_factory(source_service, cfg.source, source_ctx)
            self._source = source

            timer = self.scheduler
            if timer is None and cfg.batch is not None:
                timer = EventLoopScheduler(
                    lambda target: threading.Thread(
                        target=target, name=f"mstream-{self.name}-timer", daemon=True
                    )
                )
                opened.append(_SchedulerCloser(timer))
            steps, targets = build_steps(
                self, schemas, reject, opened, self.counters, verify=cfg.verify_payloads
            )
            pipeline: list[Any] = [
                ops.batch(
                    cfg.batch.size if cfg.batch else None,
                    (cfg.batch.max_wait_ms if cfg.batch else 1000) / 1000.0,
                    timer,
                ),
                ops.map_each(self._count_in),
                *steps,
            ]
            pipeline.append(
                ops.deliver(
                    targets,
                    reject,
                    max_in_flight=self.max_in_flight,
                    counters=self.counters,
                    abandon=self._abandon,
                )
            )

            self._supervise(source, halt, pipeline, targets, reject)
            self.logger.info(
                "connector %s: source ended after %d events in, %d out",
                self.name,
                self.counters.events_in,
                self.counters.events_out,
            )
        finally:
            if reject is not None:
                reject.flush_summary()
            for item in reversed(opened):
                try:
                    item.close()
                except Exception:
                    self.logger.warning(
                        "connector %s: closing a step failed", self.name, exc_info=True
                    )

    def _supervise(
        self,
        source: Source,
        halt: threading.Event,
        pipeline: list[Any],
        targets: list[Any],
        reject: DeadLetterRouter,
    ) -> None:
        """Subscribe, save checkpoints until the pipeline ends, then drain and save the last.

        Raises:
            Exception: the pipeline's error (the run is then restarted or failed).
        """
        cfg = self.config
        ended = threading.Event()
        source_closed = threading.Event()
        outcome: list[BaseException] = []

        def on_error(error: BaseException) -> None:
            outcome.append(error)
            halt.set()  # stop reading: nothing more is acknowledged after a failure
            ended.set()

        subscription = (
            source_observable(
                source,
                halt,
                self._on_open,
                on_exit=source_closed.set,
                thread_name=f"mstream-{self.name}-source",
            )
            .pipe(*pipeline)
            .subscribe(on_error=on_error, on_completed=ended.set)
        )
        interval = cfg.checkpoint_interval_ms / 1000.0
        next_save = time.monotonic() + interval
        give_up = _AbandonClock(self._abandon, grace=2.0)  # a stop without draining
        try:
            while not ended.wait(min(interval, 0.5)) and not give_up():
                reject.tick()
                if cfg.checkpoint and time.monotonic() >= next_save:
                    next_save = time.monotonic() + interval
                    try:
                        self._save_checkpoint(source)
                    except MstreamError as exc:
                        self.logger.warning(
                            "connector %s: checkpoint not saved: %s", self.name, exc
                        )
        finally:
            subscription.dispose()
            # the steps close after the source has (a failed run hands its messages back)
            while not source_closed.wait(0.5) and not give_up():
                pass
        if outcome:
            raise outcome[0]
        if cfg.checkpoint and self._drain:
            try:
                for target in targets:
                    target.sink.flush()
                self._save_checkpoint(source)
            except Exception as exc:
                reason = _reason(exc)
                self.reason = f"final checkpoint not saved: {reason}"
                self.logger.error(
                    "connector %s: final checkpoint not saved: %s; the next run resumes from "
                    "the last saved one (events after it are delivered again)",
                    self.name,
                    reason,
                )

    def _count_in(self, batch: Batch) -> Batch:
        self.counters.record_in(
            batch.source_count, sum(map(len, batch.payloads())), batch.source_time()
        )
        return batch

    def _save_checkpoint(self, source: Source) -> None:
        position = source.position()
        if position is None or position == self._last_saved:
            return
        self.checkpoints.save(self.name, position, self.counters.totals())
        self._last_saved = position


class _SchedulerCloser(Middleware):
    """Disposes a connector's timer scheduler with the other steps (closed last-in first-out)."""

    def __init__(self, scheduler: EventLoopScheduler) -> None:
        self.scheduler = scheduler

    def process(
        self, batch: Batch, reject: Any
    ) -> list[Event]:  # pragma: no cover - never in a pipeline
        return batch.events

    def close(self) -> None:
        self.scheduler.dispose()


class _AbandonClock:
    """True once ``abandon`` has been set for longer than ``grace`` seconds."""

    def __init__(self, abandon: threading.Event, grace: float) -> None:
        self.abandon = abandon
        self.grace = grace
        self.since: float | None = None

    def __call__(self) -> bool:
        if not self.abandon.is_set():
            return False
        if self.since is None:
            self.since = time.monotonic()
        return time.monotonic() - self.since > self.grace


def _stop_at_exit() -> None:
    """At interpreter exit, before Python waits for non-daemon threads: stop every job.

    Each is drained within its bound (30 s), then abandoned (what is acknowledged and
    checkpointed stays saved); a job whose step ignores both is named on the log, and
    Python then waits for its thread as for any other.
    """
    connectors = list(_live)
    if not connectors:
        return
    for connector in connectors:
        connector.stop(timeout=0)
    deadline = time.monotonic() + 30.0
    for connector in connectors:
        if not connector.wait(max(0.0, deadline - time.monotonic())):
            connector.stop(drain=False, timeout=5.0)
    stuck = sorted(c.name for c in connectors if c.running)
    if stuck:
        log.error("at exit: job(s) %s still running after their stop bound", ", ".join(stuck))


_live: weakref.WeakSet[Connector] = weakref.WeakSet()
"""Connectors whose thread is running, stopped by :func:`_stop_at_exit`."""
threading._register_atexit(_stop_at_exit)  # type: ignore[attr-defined]  # before thread joins


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, MstreamError):
        return text
    return f"{type(exc).__name__}: {text}"
