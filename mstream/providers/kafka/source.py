"""The Kafka source: offsets, trackers, seeks and commits, and the kafka-python consumer."""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Event, PositionTracker
from mstream.errors import ConfigError, DeliveryError
from mstream.providers import kafka_python_join
from mstream.providers.base import Emit, Source, StepContext
from mstream.providers.kafka.config import CONSUMER, client_options

TP = tuple[str, int]


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
    """The client-independent half of a Kafka source: offsets, trackers, seeks, commits.

    Subclasses poll their client and call :meth:`_assigned`, :meth:`_revoked` and
    :meth:`_lost` from the client's rebalance callbacks, :meth:`_commit_acknowledged`
    from the poll loop, and implement :meth:`_commit_offsets`, :meth:`_seek`,
    :meth:`_offsets_for_times` and :meth:`_end_offset`.
    """

    revoke_wait = 5.0
    """Seconds a revocation waits for in-flight events of the revoked partitions."""

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
        self.encoding = step.input_encoding or step.output_encoding
        self.seek_back: int | None = opts.get("offset_seek_back_seconds")
        self.commit_interval = opts.get("commit_interval_ms", 1000) / 1000.0
        self.max_records: int = opts.get("max.poll.records", 500)
        self.checkpointing = ctx.checkpointing
        self.resume = _resume_offsets(ctx.resume_position) if ctx.checkpointing else {}
        self.logger = ctx.logger
        self.stopping = ctx.stopping
        self._lock = threading.Lock()
        self._trackers: dict[TP, PositionTracker] = {}
        self._positions: dict[TP, int] = dict(self.resume)  # next offset to read, for checkpoints
        self._seeded: set[TP] = set()  # partitions given their starting offset in this run
        self._retry: dict[TP, int] = {}  # offsets whose commit failed, retried next time
        self._last_commit = time.monotonic()
        self.committed_total = 0  # how many commits were made (for tests and logs)

    # client hooks --------------------------------------------------------------------

    def _commit_offsets(self, offsets: Mapping[TP, int]) -> None:
        """Commit ``{(topic, partition): next_offset}`` synchronously."""
        raise NotImplementedError

    def _seek(self, tp: TP, offset: int) -> None:
        """Start reading ``tp`` at ``offset``."""
        raise NotImplementedError

    def _offsets_for_times(self, tps: list[TP], timestamp_ms: int) -> dict[TP, int | None]:
        """The first offset at or after ``timestamp_ms`` in each partition (None: none)."""
        raise NotImplementedError

    def _end_offset(self, tp: TP) -> int:
        """The partition's end offset (where a seek lands when no record is recent enough)."""
        raise NotImplementedError

    # shared logic ----------------------------------------------------------------------

    def _tracker(self, tp: TP) -> PositionTracker:
        tracker = self._trackers.get(tp)
        if tracker is None:
            tracker = PositionTracker()
            with self._lock:
                self._trackers[tp] = tracker
        return tracker

    def _chunk_ack(self, tp: TP, last_offset: int, count: int) -> Callable[[], None]:
        """One ack shared by the ``count`` events of ``tp`` read in one poll.

        The chunk is one tracker position (its last offset): it is committed once every
        event of it and every earlier chunk of the partition was acknowledged. Each event
        calls the shared ack once (``next`` on ``itertools.count`` is atomic), so the
        per-event cost is one call, not a tracker entry.

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
        seq = tracker.add(last_offset)
        if count == 1:
            return functools.partial(tracker.ack, seq)
        counter = itertools.count(1)
        tracker_ack = tracker.ack

        def ack() -> None:
            if next(counter) == count:
                tracker_ack(seq)

        return ack

    def _assigned(self, tps: Iterable[TP]) -> None:
        """New partitions: fresh trackers, then the starting offsets (seek back or checkpoint)."""
        tps = list(tps)
        fresh = [tp for tp in tps if tp not in self._seeded]
        with self._lock:
            for tp in tps:
                if tp not in self._trackers:
                    self._trackers[tp] = PositionTracker()
        if not fresh:
            return
        self._seeded.update(fresh)
        if self.seek_back is not None:
            self._seek_back(fresh)
            return
        for tp in fresh:
            if tp in self.resume:
                self.logger.info(
                    "kafka %s[%d]: resuming from checkpoint offset %d",
                    tp[0],
                    tp[1],
                    self.resume[tp],
                )
                self._seek(tp, self.resume[tp])

    def _seek_back(self, tps: list[TP]) -> None:
        """Seek ``tps`` to their offsets at now minus ``offset_seek_back_seconds``.

        Clients whose rebalance callbacks may not block override this to defer the lookup.
        """
        at = int(time.time() * 1000) - (self.seek_back or 0) * 1000
        found = self._offsets_for_times(tps, at)
        for tp in tps:
            offset = found.get(tp)
            target = offset if offset is not None else self._end_offset(tp)
            self.logger.info(
                "kafka %s[%d]: seeking back %ds to offset %d", tp[0], tp[1], self.seek_back, target
            )
            self._seek(tp, target)

    def _revoked(self, tps: Iterable[TP]) -> None:
        """Partitions taken away: wait briefly for their in-flight events, commit, forget."""
        revoked = [tp for tp in tps if tp in self._trackers]
        deadline = time.monotonic() + self.revoke_wait
        while any(self._trackers[tp].pending for tp in revoked) and time.monotonic() < deadline:
            if self.stopping.wait(0.01):
                break
        self._commit_acknowledged(force=True, only=revoked)
        self._lost(revoked)

    def _lost(self, tps: Iterable[TP]) -> None:
        """Partitions gone without a chance to commit: forget their trackers."""
        with self._lock:
            for tp in tps:
                tracker = self._trackers.pop(tp, None)
                self._retry.pop(tp, None)
                if tracker is not None:
                    committed = tracker.committed()
                    if committed is not None:
                        self._positions[tp] = committed + 1

    def _commit_acknowledged(
        self, *, force: bool = False, only: Iterable[TP] | None = None
    ) -> None:
        """Commit the acknowledged offsets that changed (every ``commit_interval`` unless forced).

        Runs on the consumer's thread only: the client is not thread-safe.
        """
        now = time.monotonic()
        if not force and now - self._last_commit < self.commit_interval:
            return
        self._last_commit = now
        trackers = (
            self._trackers
            if only is None
            else {tp: self._trackers[tp] for tp in only if tp in self._trackers}
        )
        offsets: dict[TP, int] = {tp: o for tp, o in self._retry.items() if tp in trackers}
        for tp, tracker in list(trackers.items()):
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
        """The partitions this source holds now, as ``(topic, partition)``."""
        with self._lock:
            return sorted(self._trackers)

    def commit(self) -> None:
        """Commit every acknowledged offset now (on the consumer's thread)."""
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

    def run(self, emit: Emit, stopping: threading.Event) -> None:  # pragma: no cover - abstract
        """Poll and emit chunks until ``stopping`` (implemented per client)."""
        raise NotImplementedError


def _header_attributes(headers: Iterable[tuple[str, Any]]) -> dict[str, str]:
    """Kafka headers as string attributes (UTF-8, undecodable bytes replaced).

    Example:
        >>> _header_attributes([("a", b"1"), ("b", None), ("c", "x")])
        {'a': '1', 'c': 'x'}
    """
    try:  # the common case: every value is bytes
        return {
            name: value.decode("utf-8", "replace") for name, value in headers if value is not None
        }
    except AttributeError:
        pass
    attrs: dict[str, str] = {}
    for name, value in headers:
        if isinstance(value, bytes | bytearray):
            attrs[name] = bytes(value).decode("utf-8", "replace")
        elif value is not None:
            attrs[name] = str(value)
    return attrs


class KafkaPythonSource(KafkaSourceBase):
    """A Kafka source on kafka-python's ``KafkaConsumer``."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        super().__init__(service, step, ctx)
        self._consumer: Any = None
        self._thread: threading.Thread | None = None
        self._deferred: list[TP] = []  # partitions paused until their seek-back lookup
        self._stalled = False
        self._next_liveness_check = 0.0

    def open(self) -> None:
        """Create the consumer (auto commit off) and subscribe with a rebalance listener.

        kafka-python 3 runs rebalance callbacks on its IO thread, where blocking calls are
        refused: there the listener commits with ``commit_async`` (sent before the group
        rejoin, on the same coordinator connection) and the timestamp lookup of a seek
        back is deferred to the poll thread (the partitions stay paused until then).
        """
        from kafka import ConsumerRebalanceListener, KafkaConsumer
        from kafka.errors import KafkaError

        source = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                source._revoked([(tp.topic, tp.partition) for tp in revoked])

            def on_partitions_assigned(self, assigned: Any) -> None:
                source._assigned([(tp.topic, tp.partition) for tp in assigned])

            def on_partitions_lost(self, lost: Any) -> None:
                source._lost([(tp.topic, tp.partition) for tp in lost])

        self._thread = threading.current_thread()
        config = client_options(self.options, CONSUMER)
        config["enable_auto_commit"] = False
        config.setdefault("auto_offset_reset", "earliest")
        try:
            self._consumer = KafkaConsumer(**config)
            kafka_python_join.install(self._consumer)
            self._await_topic_metadata()
            self._consumer.subscribe(self.topics, listener=Listener())
        except KafkaError as exc:
            raise DeliveryError(f"kafka source {self.topics}: cannot connect: {exc}") from None

    def _await_topic_metadata(self, timeout: float = 10.0) -> None:
        """Load the subscribed topics' partitions into the client's metadata before joining.

        A member that joins the group before its metadata lists the topic's partitions is
        assigned nothing and, as leader, rejoins when the metadata arrives: one needless
        rebalance per start. A topic that does not exist yet is waited for at most
        ``timeout`` seconds, then the source subscribes anyway.
        """
        deadline = time.monotonic() + timeout
        for topic in self.topics:
            while not self._consumer.partitions_for_topic(topic):
                if time.monotonic() > deadline or self.stopping.wait(0.1):
                    self.logger.warning(
                        "kafka topic %s: no partitions known yet; subscribing anyway", topic
                    )
                    return

    def _commit_offsets(self, offsets: Mapping[TP, int]) -> None:
        from kafka import OffsetAndMetadata, TopicPartition

        structs = {
            TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()
        }
        if threading.current_thread() is self._thread:
            self._consumer.commit(structs)
        else:  # a rebalance callback on the client's IO thread: must not block
            self._consumer.commit_async(structs)

    def _seek_back(self, tps: list[TP]) -> None:
        from kafka import TopicPartition

        if threading.current_thread() is self._thread:
            super()._seek_back(tps)
            return
        self._consumer.pause(*[TopicPartition(*tp) for tp in tps])
        self._deferred.extend(tps)

    def _apply_deferred(self) -> None:
        from kafka import TopicPartition

        tps, self._deferred = self._deferred, []
        assigned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        tps = [tp for tp in tps if tp in assigned]
        if tps:
            super()._seek_back(tps)
            self._consumer.resume(*[TopicPartition(*tp) for tp in tps])

    def _seek(self, tp: TP, offset: int) -> None:
        from kafka import TopicPartition

        self._consumer.seek(TopicPartition(*tp), offset)

    def _offsets_for_times(self, tps: list[TP], timestamp_ms: int) -> dict[TP, int | None]:
        from kafka import TopicPartition

        found = self._consumer.offsets_for_times(
            {TopicPartition(*tp): max(0, timestamp_ms) for tp in tps}
        )
        return {
            (tp.topic, tp.partition): (v.offset if v is not None else None)
            for tp, v in found.items()
        }

    def _end_offset(self, tp: TP) -> int:
        from kafka import TopicPartition

        key = TopicPartition(*tp)
        return int(self._consumer.end_offsets([key])[key])

    def run(self, emit: Emit, stopping: threading.Event) -> None:
        """Poll; emit each poll result as one chunk; commit acknowledged offsets periodically."""
        from kafka.errors import KafkaError

        consumer, encoding = self._consumer, self.encoding
        try:
            while not stopping.is_set():
                polled = consumer.poll(timeout_ms=100, max_records=self.max_records)
                if self._deferred:
                    self._apply_deferred()
                if polled:
                    events: list[Event] = []
                    append = events.append
                    for tp, records in polled.items():
                        topic, partition = tp.topic, tp.partition
                        ack = self._chunk_ack((topic, partition), records[-1].offset, len(records))
                        for r in records:
                            headers = r.headers
                            append(
                                Event(
                                    r.value if r.value is not None else b"",
                                    encoding,
                                    attributes=_header_attributes(headers) if headers else None,
                                    metadata={
                                        "topic": topic,
                                        "partition": partition,
                                        "offset": r.offset,
                                        "timestamp": r.timestamp,
                                        "key": r.key,
                                        "headers": headers if headers else [],
                                    },
                                    ack=ack,
                                )
                            )
                    emit(events)
                self._commit_acknowledged()
                self._check_liveness()
        except KafkaError as exc:
            raise DeliveryError(f"kafka source {','.join(self.topics)}: {exc}") from None

    def _check_liveness(self) -> None:
        """Fail the source when the group member has stopped heartbeating.

        A member whose last heartbeat is older than the session timeout, and which is not
        waiting for a JoinGroup answer (heartbeats pause then, legitimately), has been
        dropped by the broker while this consumer still believes it is in the group. The
        corrected join loop (:mod:`mstream.providers.kafka_python_join`) removes the one
        way kafka-python 3.0 was seen to get there; this check is the safety net for any
        other: a DeliveryError makes the connector restart the source with a fresh
        consumer, from the committed offsets.
        """
        now = time.monotonic()
        if now < self._next_liveness_check:
            return
        self._next_liveness_check = now + 1.0
        heartbeat = getattr(getattr(self._consumer, "_coordinator", None), "heartbeat", None)
        if heartbeat is None or not self._consumer.assignment():
            return
        join_task = getattr(self._consumer._coordinator, "_join_task", None)
        if join_task is not None and not join_task.is_done:
            return  # waiting for the group to rebalance: heartbeats are paused
        last = max(getattr(heartbeat, "last_send", now), getattr(heartbeat, "last_reset", now))
        limit = self.options.get("session.timeout.ms", 45_000) / 1000.0 + 5.0
        if now - last > limit:
            self._stalled = True
            raise DeliveryError(
                f"kafka source {','.join(self.topics)}: no group heartbeat for {now - last:.0f}s "
                "(the broker has dropped this member); restarting the consumer"
            )

    def close(self) -> None:
        """Commit what is acknowledged, then leave the group."""
        if self._consumer is None:
            return
        try:
            if not self._stalled:  # a dropped member cannot commit: its offsets are redelivered
                self.commit()
        finally:
            self._consumer.close(autocommit=False, timeout_ms=5000)
            self._consumer = None
