"""The client-independent half of a Kafka source: offsets, rebalances and backpressure.

Threads. Everything the source owns (the consumer, its trackers, the commits to retry,
the pause state) lives on its *poll thread*, the connector thread that calls
:meth:`KafkaSourceBase.run`. Other threads only leave something for it:

* the client's rebalance callbacks record what happened (a :class:`Rebalance`, with the
  client's assignment at that moment) and return; the poll thread applies each record
  after its next poll: it commits what is acknowledged of revoked partitions, forgets
  the trackers of partitions no longer assigned, and seeks new ones to their checkpoint
  or seek-back offset. kafka-python runs the callbacks on its IO thread, whose event loop
  also sends the heartbeats, so nothing may wait there; its listener also pauses newly
  assigned partitions (a flag on the client's subscription state, no I/O), so that
  nothing is read from them before the poll thread has applied the assignment.
  librdkafka calls them from ``consume`` on the poll thread itself: they are applied at
  once.
* an event's ``ack`` (a :class:`~mstream.core.SharedAck` for the partition's part of a
  poll, settled once per batch on a sink client's thread once every sink is done) marks
  that part in the partition's :class:`~mstream.core.PositionTracker` (under the
  tracker's own lock) and counts the chunk done
  (:class:`~mstream.providers.kafka.flow.InFlight`); it touches nothing else.
* ``emit`` runs on an :class:`~mstream.providers.emitter.Emitter` thread.

Backpressure by pausing partitions (as in Quix Streams). ``emit`` runs the pipeline on
the calling thread and blocks while the pipeline is busy: a synchronous sink's write, or
a wait for one of the ``max_in_flight`` slots of the asynchronous sinks, can last as long
as a slow sink takes to retry. Were it called on the poll thread, a slow sink would keep
the consumer from polling for longer than ``max.poll.interval.ms`` and the group would
drop it (a rebalance, and every unacknowledged chunk read again). So the poll thread
never calls ``emit``: it hands each poll's events, one chunk, to the emitter and goes
on polling. Once :attr:`~KafkaSourceBase.pause_at` chunks (12) are handed over and not
wholly acknowledged, it pauses every assigned partition and keeps calling ``poll``,
which returns nothing for paused partitions but keeps the member in its group (the
limit is on the time between polls, not between records); at
:attr:`~KafkaSourceBase.resume_at` (6) or fewer it resumes them. A partition assigned
while paused stays paused until then. What is held is bounded: ``pause_at`` chunks plus
the poll that crossed the line, of ``max.poll.records`` events each.

Delivery is at least once. An offset is committed only once every event before it in
its partition was acknowledged. A partition kept through a rebalance keeps its tracker
(kafka-python also keeps its position), so chunks still in flight are committed in
order; a partition that moves to another member is read again by it from the last
committed offset. A commit that fails (the broker refuses commits while the group
rebalances) is retried with the next one; for a partition that went to another member,
once more right after the new assignment is applied, then left to its new owner.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Ack, Batch, PositionTracker, SharedAck
from mstream.errors import ConfigError, DeliveryError
from mstream.providers.base import Emit, Source, StepContext
from mstream.providers.emitter import Emitter
from mstream.providers.kafka.flow import InFlight
from mstream.providers.kafka.records import KafkaRecords

TP = tuple[str, int]
"""A partition: ``(topic, partition)``."""

REVOKED = "revoked"
ASSIGNED = "assigned"
LOST = "lost"


@dataclass(frozen=True)
class Rebalance:
    """One rebalance callback, as recorded for the poll thread.

    Attributes:
        kind: ``revoked``, ``assigned`` or ``lost``.
        partitions: the partitions the callback named.
        assignment: the client's whole assignment as the callback left it (kafka-python
            keeps revoked and lost partitions in it until the next assignment).
    """

    kind: str
    partitions: frozenset[TP]
    assignment: frozenset[TP]


def _topics(resource: str) -> list[str]:
    topics = [t.strip() for t in resource.split(",") if t.strip()]
    if not topics:
        raise ConfigError("a kafka step needs a topic as its resource")
    return topics


def _resume_offsets(position: Any) -> dict[TP, int]:
    out: dict[TP, int] = {}
    if not isinstance(position, Mapping):
        return out
    for topic, partitions in position.items():
        if not isinstance(partitions, Mapping):
            continue
        for partition, offset in partitions.items():
            try:
                out[(str(topic), int(partition))] = int(offset)
            except (TypeError, ValueError):
                continue
    return out


class KafkaSourceBase(Source):
    """The client-independent half of a Kafka source (see the module docstring).

    Subclasses implement the client calls (:meth:`_poll_chunk`, :meth:`_commit_offsets`,
    :meth:`_seek`, :meth:`_offsets_for_times`, :meth:`_end_offset`, :meth:`_assigned_now`,
    :meth:`_paused_now`, :meth:`_pause`, :meth:`_resume`, :meth:`_client_errors`) and
    report rebalances with :meth:`_record` (from any thread) or :meth:`_apply` (on the
    poll thread).

    Attributes:
        committed_total: commits made so far.
        assignments_total: assignments applied so far (1 for a run without rebalances).
        pauses_total: how often backpressure paused the partitions.
    """

    pause_at = 12
    """Chunks handed to the pipeline and not wholly acknowledged that pause the partitions
    (the window: with 8, a confluent mirror waited for acknowledgements ~20% of its run)."""
    resume_at = 6
    """At this many or fewer, paused partitions are resumed."""
    poll_timeout = 0.1
    """Seconds one poll waits for records."""
    pause_after = 1.0
    """Seconds a full window may take to drain before the partitions are paused (pausing
    drops librdkafka's prefetched messages: ~0.65 s from ``resume`` to the next record,
    measured locally)."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        opts = service.options
        if not opts.get("group.id"):
            raise ConfigError(
                f"kafka source of connector {ctx.connector!r}: "
                f'service {service.name!r} needs "group.id"'
            )
        if not opts.get("bootstrap.servers"):
            raise ConfigError(f'kafka service {service.name!r} needs "bootstrap.servers"')
        self.service = service
        self.options = opts
        self.topics = _topics(step.resource)
        self.what = f"kafka source {','.join(self.topics)}"
        self.encoding = step.input_encoding or step.output_encoding
        self.seek_back: int | None = opts.get("offset_seek_back_seconds")
        self.commit_interval = opts.get("commit_interval_ms", 1000) / 1000.0
        self.bootstrap_timeout_ms: int = opts.get("bootstrap_timeout_ms", 3000)
        self.max_records: int = opts.get("max.poll.records", 500)
        self.checkpointing = ctx.checkpointing
        self.resume = _resume_offsets(ctx.resume_position) if ctx.checkpointing else {}
        self.logger = ctx.logger
        self.stopping = ctx.stopping
        self._lock = threading.Lock()  # _trackers and _positions, read by other threads
        self._trackers: dict[TP, PositionTracker] = {}  # partitions whose assignment is applied
        self._positions: dict[TP, int] = dict(self.resume)  # next offset to read, for checkpoints
        self._seeded: set[TP] = set()  # partitions given their starting offset in this run
        self._retry: dict[TP, int] = {}  # offsets whose commit failed, retried next time
        self._last_commit = time.monotonic()
        self._inbox: deque[Rebalance] = deque()  # recorded by the client's callbacks
        self._inbox_lock = threading.Lock()
        self._in_flight = InFlight()
        self._reading = True  # False once stopping: nothing more is read
        self._throttled = False  # whether the partitions should be paused
        self._pauses_stale = False  # whether the client's pause flags may differ from that
        self.paused: frozenset[TP] = frozenset()  # paused partitions, as last set
        self.committed_total = 0
        self.assignments_total = 0
        self.pauses_total = 0

    # client hooks --------------------------------------------------------------------

    def _poll_chunk(self, timeout: float) -> Batch | None:
        """Poll once, waiting up to ``timeout`` seconds; the records read as one chunk.

        Make it with :meth:`_chunk` (or give every event an ack from :meth:`_chunk_ack`,
        all sharing the callback :meth:`~mstream.providers.kafka.flow.InFlight.open`
        returned for the poll); None when nothing was read.
        """
        raise NotImplementedError

    def _commit_offsets(self, offsets: Mapping[TP, int]) -> None:
        """Commit ``{(topic, partition): next_offset}`` synchronously, in bounded time."""
        raise NotImplementedError

    def _seek(self, tp: TP, offset: int) -> bool:
        """Start reading ``tp`` at ``offset``; False if ``tp`` is no longer assigned."""
        raise NotImplementedError

    def _offsets_for_times(self, tps: list[TP], timestamp_ms: int) -> dict[TP, int | None]:
        """The first offset at or after ``timestamp_ms`` in each partition (None: none)."""
        raise NotImplementedError

    def _end_offset(self, tp: TP) -> int:
        """The partition's end offset (where a seek lands when no record is recent enough)."""
        raise NotImplementedError

    def _assigned_now(self) -> set[TP]:
        """The client's assignment now."""
        raise NotImplementedError

    def _paused_now(self) -> set[TP]:
        """The partitions the client has paused now."""
        raise NotImplementedError

    def _pause(self, tps: set[TP]) -> bool:
        """Pause ``tps``; False if some were revoked meanwhile (tried again next step)."""
        raise NotImplementedError

    def _resume(self, tps: set[TP]) -> bool:
        """Resume ``tps``; False if some were revoked meanwhile (tried again next step)."""
        raise NotImplementedError

    def _client_errors(self) -> tuple[type[Exception], ...]:
        """The client's exception types, reported as :class:`~mstream.errors.DeliveryError`."""
        raise NotImplementedError

    def _check_liveness(self) -> None:
        """Raise :class:`~mstream.errors.DeliveryError` if the client was dropped unawares."""

    # acknowledgements ------------------------------------------------------------------

    def _tracker(self, tp: TP) -> PositionTracker:
        tracker = self._trackers.get(tp)
        if tracker is None:  # records of a partition before its assignment was applied
            tracker = PositionTracker()
            with self._lock:
                self._trackers[tp] = tracker
        return tracker

    def _chunk_ack(
        self,
        tp: TP,
        last_offset: int,
        count: int,
        part_done: Callable[[], None] | None = None,
    ) -> Callable[[], None]:
        """One ack shared by the ``count`` events of ``tp`` read in one poll.

        The events are one tracker position (the last offset): it is committed once every
        event of it and every earlier position of the partition was acknowledged. The ack
        is a :class:`~mstream.core.SharedAck`: a batch settles its run of these events in
        one call, an event acknowledged on its own calls it once. The last one also calls
        ``part_done`` (the poll's :class:`~mstream.providers.kafka.flow.InFlight` count).

        Example:
            >>> from mstream.providers.base import StepContext
            >>> svc = ServiceConfig("k", "kafka", {"bootstrap.servers": "h:1", "group.id": "g"})
            >>> src = KafkaSourceBase(svc, StepConfig("k", "t"), StepContext("c", "source"))
            >>> ack = src._chunk_ack(("t", 0), 41, 2)
            >>> ack(); src.position() is None
            True
            >>> ack(); src.position()
            {'t': {'0': 42}}
        """
        tracker = self._tracker(tp)
        position_done = functools.partial(tracker.ack, tracker.add(last_offset))
        if count == 1 and part_done is None:
            return position_done
        if part_done is None:
            return SharedAck(count, position_done)

        def chunk_done() -> None:
            position_done()
            part_done()

        return SharedAck(count, chunk_done)

    def _chunk(self, records: KafkaRecords, runs: list[tuple[str, int, int, int]]) -> Batch:
        """One poll's records as a chunk, each run of one partition sharing a :meth:`_chunk_ack`.

        Args:
            records: the poll's records, in the order read.
            runs: ``(topic, partition, first index, last offset)`` of each run, in order
                (a partition may have several runs; each is a tracker position of its own).
        """
        part_done = self._in_flight.open(len(runs))
        ends = [first for _, _, first, _ in runs[1:]] + [len(records)]
        acks: list[Ack] = []
        for (topic, partition, first, last_offset), end in zip(runs, ends, strict=True):
            count = end - first
            acks += [self._chunk_ack((topic, partition), last_offset, count, part_done)] * count
        return Batch.of_records(records, acks)

    # rebalances ------------------------------------------------------------------------

    def _record(self, rebalance: Rebalance) -> None:
        """Leave a rebalance for the poll thread (any thread; no I/O, a short lock)."""
        with self._inbox_lock:
            self._inbox.append(rebalance)

    def _apply_recorded(self) -> None:
        """Apply, in order, the rebalances recorded since the last step."""
        with self._inbox_lock:
            if not self._inbox:
                return
            recorded = list(self._inbox)
            self._inbox.clear()
        for rebalance in recorded:
            self._apply(rebalance)

    def _apply(self, rebalance: Rebalance) -> None:
        """Apply one rebalance (poll thread only).

        Revoked partitions: what is acknowledged is committed. Lost partitions (the member
        was dropped): forgotten, nothing committed. Then every tracker of a partition no
        longer in the client's assignment is forgotten. Assigned partitions not tracked
        yet get a tracker and, the first time in this run, their starting offset; commits
        that failed are retried now that the member is in the group again.
        """
        kind, partitions = rebalance.kind, rebalance.partitions
        if kind == LOST:
            self._forget(partitions)
            for tp in partitions:
                self._retry.pop(tp, None)
        elif kind == REVOKED:
            self._commit_acknowledged(force=True, only=partitions)
        self._forget([tp for tp in self._trackers if tp not in rebalance.assignment])
        if kind == ASSIGNED:
            self.assignments_total += 1
            fresh = sorted(tp for tp in partitions if tp not in self._trackers)
            with self._lock:
                for tp in fresh:
                    self._trackers[tp] = PositionTracker()
            self._seed([tp for tp in fresh if tp not in self._seeded])
            if self._retry:
                self._commit_acknowledged(force=True)
                for tp in [tp for tp in self._retry if tp not in rebalance.assignment]:
                    del self._retry[tp]  # its new owner reads it again from the last commit
        self._pauses_stale = True

    def _seed(self, tps: list[TP]) -> None:
        """Seek partitions first assigned in this run: seek back, else to their checkpoint.

        A partition revoked again before the seek is seeded on its next assignment.
        """
        if not tps:
            return
        if self.seek_back is not None:
            at = int(time.time() * 1000) - self.seek_back * 1000
            found = self._offsets_for_times(tps, at)
            for tp in tps:
                offset = found.get(tp)
                target = offset if offset is not None else self._end_offset(tp)
                self.logger.info(
                    "kafka %s[%d]: seeking back %ds to offset %d",
                    tp[0],
                    tp[1],
                    self.seek_back,
                    target,
                )
                if self._seek(tp, target):
                    self._seeded.add(tp)
            return
        for tp in tps:
            if tp not in self.resume:
                self._seeded.add(tp)
                continue
            self.logger.info(
                "kafka %s[%d]: resuming from checkpoint offset %d", tp[0], tp[1], self.resume[tp]
            )
            if self._seek(tp, self.resume[tp]):
                self._seeded.add(tp)

    def _forget(self, tps: Iterable[TP]) -> None:
        """Drop the trackers of partitions no longer held; keep what they acknowledged."""
        with self._lock:
            for tp in tps:
                tracker = self._trackers.pop(tp, None)
                if tracker is not None:
                    committed = tracker.committed()
                    if committed is not None:
                        self._positions[tp] = committed + 1

    # backpressure ----------------------------------------------------------------------

    def _throttle(self) -> None:
        """Pause the partitions at :attr:`pause_at` chunks in flight, resume at :attr:`resume_at`.

        A window that fills while the pipeline keeps up (it is acknowledging chunks) is
        not a reason to pause: pausing makes librdkafka fetch the partition's prefetched
        messages again. So a full window is first given :attr:`pause_after` to drain
        (nothing is read meanwhile, so the bound holds); only when it stays full are the
        partitions paused.
        """
        in_flight = self._in_flight.count
        throttled = self._throttled
        if not self._reading:
            throttled = True
        elif not throttled and in_flight >= self.pause_at:
            throttled = not self._drains_within(self.pause_after)
        elif throttled and in_flight <= self.resume_at:
            throttled = False
        if throttled != self._throttled:
            self._throttled = throttled
            self._pauses_stale = True
            if throttled and self._reading:
                self.pauses_total += 1
            self.logger.debug(
                "%s: %d chunks unacknowledged: %s",
                self.what,
                self._in_flight.count,
                "pausing its partitions" if throttled else "resuming its partitions",
            )
        if self._pauses_stale:
            self._pauses_stale = not self._set_pauses()

    def _drains_within(self, seconds: float) -> bool:
        """Whether the window gets room within ``seconds`` (a stop ends the wait: False)."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            step = min(remaining, self.poll_timeout)
            if self._in_flight.wait_for_at_most(self.pause_at - 1, step):
                return True
            if remaining <= self.poll_timeout:
                return False
        return False

    def _set_pauses(self) -> bool:
        """Make the client's pause flags match :attr:`_throttled`; False: try again.

        Only partitions whose assignment was applied are touched: one assigned since is
        paused by the listener (kafka-python) until its assignment is applied.
        """
        owned = self._assigned_now() & set(self._trackers)
        paused = self._paused_now()
        done = self._pause(owned - paused) if self._throttled else self._resume(owned & paused)
        self.paused = frozenset(self._paused_now())
        return done

    # the poll loop ---------------------------------------------------------------------

    def run(self, emit: Emit, stopping: threading.Event) -> None:
        """Poll and hand each poll's events to the pipeline as one chunk until ``stopping``.

        Raises:
            DeliveryError: the client failed, or ``emit`` did (the pipeline failed).
        """
        emitter = Emitter(emit, f"mstream-kafka-emit-{self.topics[0]}")
        emitter.start()
        try:
            while not stopping.is_set():
                emitter.check()
                self._step(emitter.put)
        except self._client_errors() as exc:
            raise DeliveryError(f"{self.what}: {exc}") from None
        finally:
            emitter.close()
            self._wind_down(emitter)
        emitter.check()

    def _step(self, hand_over: Callable[[Batch], None] | None) -> None:
        """One poll, the rebalances it brought, backpressure, and the periodic commit.

        While paused, the step waits for the pipeline's acknowledgements rather than in the
        poll (which returns nothing then), so the partitions resume as soon as it can.
        """
        timeout = self.poll_timeout
        if self._throttled and self._reading:
            self._in_flight.wait_for_at_most(self.resume_at, timeout)
            timeout = 0.0
        chunk = self._poll_chunk(timeout)
        self._apply_recorded()
        if chunk is not None and hand_over is not None:
            hand_over(chunk)
        self._throttle()
        self._commit_acknowledged()
        self._check_liveness()

    def _wind_down(self, emitter: Emitter) -> None:
        """Keep the member in its group, reading nothing, until the emitter has finished.

        The chunk being emitted goes through the pipeline (it may be blocked by a slow
        sink); chunks still queued, and anything read now, are not emitted and so never
        committed: the partition's next reader reads them again.
        """
        self._reading = False
        while emitter.alive:
            try:
                self._step(None)
            except Exception:  # the client failed as well: wait for the emitter alone
                emitter.join(self.poll_timeout)
        dropped = emitter.dropped()
        if dropped:
            self.logger.info(
                "%s: %d chunks read but not emitted before the stop (read again next time)",
                self.what,
                dropped,
            )

    # commits and positions -------------------------------------------------------------

    def _commit_acknowledged(
        self, *, force: bool = False, only: Iterable[TP] | None = None
    ) -> None:
        """Commit the acknowledged offsets that changed (every ``commit_interval`` unless forced).

        Runs on the poll thread only: the client is not thread-safe.
        """
        now = time.monotonic()
        if not force and now - self._last_commit < self.commit_interval:
            return
        self._last_commit = now
        if only is None:
            trackers = dict(self._trackers)
            offsets = dict(self._retry)
        else:
            wanted = set(only)
            trackers = {tp: t for tp, t in self._trackers.items() if tp in wanted}
            offsets = {tp: o for tp, o in self._retry.items() if tp in wanted}
        for tp, tracker in trackers.items():
            changed, committed = tracker.take_if_changed()
            if changed and committed is not None:
                offsets[tp] = committed + 1
        if not offsets:
            return
        try:
            self._commit_offsets(offsets)
        except Exception as exc:  # the next commit (or the new owner) covers it
            self.logger.warning(
                "kafka: offset commit failed (%s); retrying with the next commit", exc
            )
            self._retry.update(offsets)
            return
        for tp in offsets:
            self._retry.pop(tp, None)
        self.committed_total += 1
        with self._lock:
            self._positions.update(offsets)

    def assignment(self) -> list[TP]:
        """The partitions this source holds now (assignment applied), as ``(topic, partition)``."""
        with self._lock:
            return sorted(self._trackers)

    def commit(self) -> None:
        """Commit every acknowledged offset now (on the poll thread)."""
        self._commit_acknowledged(force=True)

    def position(self) -> Any:
        """``{topic: {partition: next_offset}}`` of every partition seen, acknowledged only.

        Example:
            >>> from mstream.providers.base import StepContext
            >>> svc = ServiceConfig("k", "kafka", {"bootstrap.servers": "h:1", "group.id": "g"})
            >>> src = KafkaSourceBase(svc, StepConfig("k", "t"), StepContext("c", "source",
            ...     checkpointing=True, resume_position={"t": {"0": 5}}))
            >>> src.position()
            {'t': {'0': 5}}
        """
        with self._lock:
            merged = dict(self._positions)
            trackers = list(self._trackers.items())
        for tp, tracker in trackers:
            committed = tracker.committed()
            if committed is not None:
                merged[tp] = committed + 1
        if not merged:
            return None
        out: dict[str, dict[str, int]] = {}
        for (topic, partition), offset in sorted(merged.items()):
            out.setdefault(topic, {})[str(partition)] = offset
        return out
