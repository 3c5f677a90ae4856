"""``client = "kafka-python"``: the Kafka source and sink on kafka-python.

``client = "auto"`` (the default) picks it when ``confluent-kafka`` is not importable.

kafka-python 3 runs the group protocol (heartbeats, JoinGroup/SyncGroup) and the
rebalance callbacks on its own IO thread. The source's listener only records each
callback (and pauses newly assigned partitions until the poll thread has applied them);
see :mod:`mstream.providers.kafka.source` for what the poll thread does with it.

Both clients bootstrap within the service's ``bootstrap_timeout_ms`` (3000; the
library's own default is 30 s): a dead broker is reported as a
:class:`~mstream.errors.DeliveryError` after 3 s, not 30.

Example:
    >>> from mstream.config import ServiceConfig, StepConfig
    >>> from mstream.providers.base import StepContext
    >>> svc = ServiceConfig("k", "kafka", {"bootstrap.servers": "127.0.0.1:1", "group.id": "g"})
    >>> src = KafkaPythonSource(svc, StepConfig("k", "topic-a"), StepContext("c", "source"))
    >>> src.topics, src.commit_timeout_ms
    (['topic-a'], 30000)
"""

from __future__ import annotations

import functools
import operator
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Batch
from mstream.errors import DeliveryError, RejectedError
from mstream.providers import kafka_python_join
from mstream.providers.base import Done, StepContext
from mstream.providers.completion import Completion, messages_of
from mstream.providers.kafka.config import CONSUMER, PRODUCER, client_options, unreachable
from mstream.providers.kafka.records import KafkaEvent, KafkaRecords
from mstream.providers.kafka.sink import KafkaSinkBase, normal_headers
from mstream.providers.kafka.source import (
    ASSIGNED,
    LOST,
    REVOKED,
    TP,
    KafkaSourceBase,
    Rebalance,
)


def _tps(partitions: Iterable[Any]) -> frozenset[TP]:
    return frozenset((tp.topic, tp.partition) for tp in partitions)


def _with_bootstrap_timeout(config: dict[str, Any], client: Any, timeout_ms: int) -> None:
    """Bound the client's bootstrap: ``bootstrap_timeout_ms`` in kafka-python 3, the
    version probe's ``api_version_auto_timeout_ms`` in 2.x (which has no bootstrap step)."""
    if "bootstrap_timeout_ms" in client.DEFAULT_CONFIG:
        config["bootstrap_timeout_ms"] = timeout_ms
    else:
        config["api_version_auto_timeout_ms"] = timeout_ms


def _unreachable_errors() -> tuple[type[Exception], ...]:
    """What kafka-python raises when no bootstrap server answered (3: a timeout; 2.x:
    ``NoBrokersAvailable``)."""
    from kafka import errors

    return (
        errors.KafkaTimeoutError,
        getattr(errors, "NoBrokersAvailable", errors.KafkaTimeoutError),
    )


class KafkaPythonRecords(KafkaRecords):
    """One poll's records: kafka-python ``ConsumerRecord`` tuples."""

    __slots__ = ()

    value_of = staticmethod(operator.attrgetter("value"))
    key_of = staticmethod(operator.attrgetter("key"))
    headers_of = staticmethod(operator.attrgetter("headers"))

    def _event(self, message: Any, payload: bytes) -> KafkaEvent:
        headers = message.headers
        return KafkaEvent(
            payload,
            self.encoding,
            message.topic,
            message.partition,
            message.offset,
            message.timestamp,
            message.key,
            tuple(headers) if headers else (),
        )

    def _timestamp_ms(self, message: Any) -> int | None:
        stamp: int | None = message.timestamp
        return stamp


class KafkaPythonSource(KafkaSourceBase):
    """A Kafka source on kafka-python's ``KafkaConsumer``.

    Attributes:
        commit_timeout_ms: how long a commit may block the poll thread: the request
            timeout, at most half of ``max.poll.interval.ms``.
    """

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        super().__init__(service, step, ctx)
        self._consumer: Any = None
        self._stalled = False
        self._next_liveness_check = 0.0
        self.commit_timeout_ms: int = min(
            self.options.get("request.timeout.ms", 30_000),
            self.options.get("max.poll.interval.ms", 300_000) // 2,
        )

    def open(self) -> None:
        """Create the consumer (auto commit off) and subscribe with a recording listener.

        Raises:
            DeliveryError: no bootstrap server answered within ``bootstrap_timeout_ms``,
                or the client could not be set up.
        """
        from kafka import ConsumerRebalanceListener, KafkaConsumer
        from kafka.errors import KafkaError

        source = self

        class Listener(ConsumerRebalanceListener):
            """Records each rebalance for the poll thread (runs on kafka-python's IO thread)."""

            def on_partitions_revoked(self, revoked: Any) -> None:
                source._record_change(REVOKED, revoked)

            def on_partitions_assigned(self, assigned: Any) -> None:
                if assigned:  # nothing is read from them until the poll thread applied this
                    source._consumer.pause(*assigned)
                source._record_change(ASSIGNED, assigned)

            def on_partitions_lost(self, lost: Any) -> None:
                source._record_change(LOST, lost)

        config = client_options(self.options, CONSUMER)
        config["enable_auto_commit"] = False
        config.setdefault("auto_offset_reset", "earliest")
        _with_bootstrap_timeout(config, KafkaConsumer, self.bootstrap_timeout_ms)
        try:
            self._consumer = KafkaConsumer(**config)
        except _unreachable_errors() as exc:
            raise unreachable(
                self.service.name,
                self.options["bootstrap.servers"],
                self.bootstrap_timeout_ms,
                self.what,
                exc,
                self.logger,
            ) from None
        except KafkaError as exc:
            raise DeliveryError(f"{self.what}: cannot connect: {exc}") from None
        try:
            kafka_python_join.install(self._consumer)
            self._await_topic_metadata()
            self._consumer.subscribe(self.topics, listener=Listener())
        except KafkaError as exc:
            raise DeliveryError(f"{self.what}: cannot subscribe: {exc}") from None

    def _record_change(self, kind: str, partitions: Iterable[Any]) -> None:
        """Record one callback with the client's assignment as it stands (IO thread)."""
        self._record(Rebalance(kind, _tps(partitions), frozenset(self._assigned_now())))

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

    # client hooks --------------------------------------------------------------------

    def _poll_chunk(self, timeout: float) -> Batch | None:
        polled = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=self.max_records)
        if not polled:
            return None
        records: list[Any] = []
        runs: list[tuple[str, int, int, int]] = []
        for tp, part in polled.items():
            if part:
                runs.append((tp.topic, tp.partition, len(records), part[-1].offset))
                records += part
        if not records:
            return None
        return self._chunk(KafkaPythonRecords(records, self.encoding), runs)

    def _commit_offsets(self, offsets: Mapping[TP, int]) -> None:
        from kafka import OffsetAndMetadata, TopicPartition

        structs = {
            TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()
        }
        self._consumer.commit(structs, timeout_ms=self.commit_timeout_ms)

    def _seek(self, tp: TP, offset: int) -> bool:
        from kafka import TopicPartition

        try:
            self._consumer.seek(TopicPartition(*tp), offset)
        except (ValueError, KeyError):  # revoked again since the assignment was recorded
            return False
        return True

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

    def _assigned_now(self) -> set[TP]:
        return set(_tps(self._consumer.assignment()))

    def _paused_now(self) -> set[TP]:
        return set(_tps(self._consumer.paused()))

    def _pause(self, tps: set[TP]) -> bool:
        return self._flag(self._consumer.pause, tps)

    def _resume(self, tps: set[TP]) -> bool:
        return self._flag(self._consumer.resume, tps)

    @staticmethod
    def _flag(call: Callable[..., None], tps: set[TP]) -> bool:
        from kafka import TopicPartition

        done = True
        for tp in tps:
            try:
                call(TopicPartition(*tp))
            except KeyError:  # revoked by the IO thread meanwhile
                done = False
        return done

    def _client_errors(self) -> tuple[type[Exception], ...]:
        from kafka.errors import KafkaError

        return (KafkaError,)

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
                f"{self.what}: no group heartbeat for {now - last:.0f}s "
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


# -- sink ------------------------------------------------------------------------------

_TOO_LARGE = frozenset({"MessageSizeTooLargeError", "RecordTooLargeError"})
"""kafka-python errors meaning a message can never be accepted as it is."""


def _classifier(what: str) -> Callable[[BaseException], BaseException]:
    """A :class:`~mstream.providers.completion.Completion` classifier for kafka-python."""

    def classify(error: BaseException) -> BaseException:
        if type(error).__name__ in _TOO_LARGE:  # refused by the broker: never retried
            return RejectedError(f"{what}: message too large for the broker: {error}")
        return DeliveryError(f"{what}: {type(error).__name__}: {error}")

    return classify


def settle_at_tail(
    futures: list[Any], countdown: Completion, fail: Callable[[int, BaseException], None]
) -> None:
    """Settle ``countdown`` from ``futures`` with one callback, on the last of them.

    kafka-python completes a batch's futures in the order they were sent, on its sender
    thread, and sends all of a broker's ready batches in one request: when the last
    future of a chunk is done, the others nearly always are too. Its callback reads each
    future's state: the successes are counted at once, each failure is reported with its
    index (``fail(i, error)``), and only a future still pending (another broker, a retry)
    gets callbacks of its own. ``None`` entries (nothing sent) are skipped.

    Example:
        >>> from kafka.future import Future
        >>> outcomes, failed = [], []
        >>> futures = [Future(), None, Future(), Future()]
        >>> countdown = Completion(4, outcomes.append, "sink")
        >>> countdown.ok()  # the None: a message settled before sending
        >>> settle_at_tail(futures, countdown, lambda i, e: failed.append((i, str(e))))
        >>> _ = futures[0].success("m"); futures[3].success("m") and outcomes
        []
        >>> _ = futures[2].success("m"); outcomes, failed
        ([None], [])
        >>> futures = [Future(), Future()]
        >>> countdown = Completion(2, outcomes.append, "sink")
        >>> settle_at_tail(futures, countdown, lambda i, e: failed.append((i, str(e))))
        >>> _ = futures[0].failure(OSError("reset")); _ = futures[1].success("m"); failed
        [(0, 'reset')]
    """
    last = next((f for f in reversed(futures) if f is not None), None)
    if last is None:
        return

    def settle(_: Any) -> None:
        settled = 0
        for i, future in enumerate(futures):
            if future is None:
                continue
            if not future.is_done:  # fires at once if it settled since
                future.add_callback(countdown.ok)
                future.add_errback(functools.partial(fail, i))
            elif future.exception is None:
                settled += 1
            else:
                fail(i, future.exception)
        countdown.ok_many(settled)

    last.add_both(settle)


class KafkaPythonSink(KafkaSinkBase):
    """A Kafka sink on kafka-python's ``KafkaProducer`` (asynchronous sends)."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        super().__init__(service, step, ctx)
        self._producer: Any = None
        self._classify = _classifier(self.what)

    def open(self) -> None:
        """Create the producer (``acks = all`` unless configured).

        Raises:
            DeliveryError: no bootstrap server answered within ``bootstrap_timeout_ms``,
                or the client could not be set up.
        """
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        config = client_options(self.options, PRODUCER)
        config.setdefault("acks", "all")
        _with_bootstrap_timeout(config, KafkaProducer, self.bootstrap_timeout_ms)
        try:
            self._producer = KafkaProducer(**config)
        except _unreachable_errors() as exc:
            raise unreachable(
                self.service_name,
                self.servers,
                self.bootstrap_timeout_ms,
                self.what,
                exc,
                self.logger,
            ) from None
        except KafkaError as exc:
            raise DeliveryError(f"{self.what}: cannot connect: {exc}") from None

    def write(self, batch: Batch, done: Done) -> None:
        """Send every message; ``done(None)`` when all succeeded, else the first error.

        The outcome is read per chunk, not per message: one callback on the last send's
        future reads every future's state then (see :func:`settle_at_tail`).
        """
        from kafka.errors import KafkaError, MessageSizeTooLargeError

        producer = self._producer
        messages = messages_of(producer, self.messages, batch, done, self.what)
        if messages is None:
            return
        countdown = Completion(
            len(messages), self.pending.track(len(messages), done), self.what, self._classify
        )
        send, topic = producer.send, self.topic
        per_event = self.one_per_event(batch)
        futures: list[Any] = []  # one per message; None where nothing was sent
        append = futures.append
        try:
            partition_of = self._partitioner()
        except KafkaError as exc:  # what the first send would raise, after the same wait
            countdown.fail(exc)
            return

        def fail(i: int, error: BaseException) -> None:
            # one message per event: a broker refusal names the event, not the whole chunk
            if per_event:
                countdown.fail_event(batch.events[i], error)
            else:
                countdown.fail(error)

        for i, (value, key, headers) in enumerate(messages):
            try:
                partition = None if key is None or partition_of is None else partition_of(key)
                try:
                    append(send(topic, value, key, headers, partition))
                except (AssertionError, TypeError):  # header pairs the client refuses
                    if not headers:
                        raise
                    append(send(topic, value, key, normal_headers(headers), partition))
            except MessageSizeTooLargeError as exc:
                reason = f"{self.what}: message too large: {exc}"
                if per_event:  # only this event is dead-lettered; the others go on
                    append(None)
                    countdown.reject(batch.events[i], reason)
                    continue
                countdown.fail(RejectedError(reason))
                return
            except (KafkaError, AssertionError, ValueError, TypeError) as exc:
                countdown.fail(exc)
                return
        settle_at_tail(futures, countdown, fail)

    def _partitioner(self) -> Callable[[bytes], int] | None:
        """The partition of a keyed message, as kafka-python's default partitioner picks it
        (murmur2 of the key over the topic's partitions), computed with the partition list
        read once per write: the client's own partitioner lists and sorts the topic's
        partitions again for every message (~1 µs each). None when no partition is known
        (the client then partitions).

        Raises:
            KafkaError: the topic's metadata did not arrive within ``max_block_ms``.
        """
        from kafka.partitioner.default import murmur2

        known = self._producer.partitions_for(self.topic)
        if not known:
            return None
        partitions = sorted(known)
        count = len(partitions)

        def partition_of(key: bytes) -> int:
            return partitions[(murmur2(key) & 0x7FFFFFFF) % count]

        return partition_of

    def _flush_within(self, seconds: float) -> bool:
        from kafka.errors import KafkaTimeoutError

        try:
            self._producer.flush(timeout=seconds)
        except KafkaTimeoutError:
            return False
        return True

    def _release(self, abandon: bool) -> None:
        """Close the producer; ``abandon``: without waiting, failing what it still holds.

        kafka-python's ``close`` flushes first and gives up, still open, when that times
        out; its sender thread is then closed by force, which fails the pending sends (so
        their writes report an error and are never acknowledged).
        """
        from kafka.errors import KafkaTimeoutError

        try:
            self._producer.close(timeout=0 if abandon else self.flush_timeout)
        except KafkaTimeoutError:
            sender = getattr(self._producer, "_sender", None)
            if sender is not None:
                sender.force_close()
