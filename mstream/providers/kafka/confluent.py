"""``client = "confluent"``: the Kafka source and sink on ``confluent-kafka`` (librdkafka).

Same behaviour as the kafka-python implementation in :mod:`mstream.providers.kafka.source` and
:mod:`mstream.providers.kafka.sink`
(offset tracking, rebalances, seeks and checkpoints are shared in
:class:`~mstream.providers.kafka.source.KafkaSourceBase`); only the client calls differ. The
dotted keys are passed to librdkafka under their own names
(:func:`~mstream.providers.kafka.config.rdkafka_options`).

Example:
    >>> from mstream.config import ServiceConfig, StepConfig
    >>> from mstream.providers.base import StepContext
    >>> svc = ServiceConfig("k", "kafka", {"bootstrap.servers": "127.0.0.1:1", "group.id": "g",
    ...     "client": "confluent"})
    >>> src = ConfluentSource(svc, StepConfig("k", "topic-a"), StepContext("c", "source"))
    >>> src.topics, src.position()
    (['topic-a'], None)
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Mapping
from typing import Any

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Batch, Event
from mstream.errors import ConfigError, DeliveryError, MstreamError, RejectedError
from mstream.providers.base import Done, StepContext
from mstream.providers.completion import Completion, messages_of
from mstream.providers.kafka.config import CONSUMER, PRODUCER, rdkafka_options, unreachable
from mstream.providers.kafka.sink import KafkaSinkBase, normal_headers
from mstream.providers.kafka.source import (
    ASSIGNED,
    LOST,
    REVOKED,
    TP,
    KafkaSourceBase,
    Rebalance,
    header_attributes,
)


def _ck() -> Any:
    try:
        import confluent_kafka
    except ImportError as exc:  # pragma: no cover - depends on the install
        from mstream.errors import ConfigError

        raise ConfigError(
            'client = "confluent" needs the confluent-kafka package (pip install confluent-kafka)'
        ) from exc
    return confluent_kafka


def _setup_error(what: str, exc: BaseException) -> MstreamError:
    """A client that could not be created: a bad property is a configuration error (the job
    fails with librdkafka's words at once), anything else a transport error (retried)."""
    text = _reason(exc)
    error = exc.args[0] if exc.args else None
    if getattr(error, "code", lambda: None)() == _ck().KafkaError._INVALID_ARG:
        return ConfigError(f"{what}: {text}")
    return DeliveryError(f"{what}: cannot connect: {text}")


def _reason(exc: Exception) -> str:
    """What a ``KafkaException`` says, without the ``KafkaError{...}`` wrapping."""
    error: Any = exc.args[0] if exc.args else None
    return str(error.str()) if hasattr(error, "str") else str(exc)


class ConfluentSource(KafkaSourceBase):
    """A Kafka source on ``confluent_kafka.Consumer``.

    librdkafka serves the rebalance callbacks from ``consume`` on the poll thread, so
    they apply each rebalance at once; seeks go into the assignment itself.
    """

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        super().__init__(service, step, ctx)
        self._consumer: Any = None
        self._seeks: dict[TP, int] = {}
        self._paused: set[TP] = set()  # librdkafka has no call that lists them
        strategy = str(self.options.get("partition.assignment.strategy", ""))
        self._cooperative = "cooperative" in strategy

    def open(self) -> None:
        """Create the consumer (auto commit off), check the brokers answer, and subscribe.

        Raises:
            DeliveryError: no bootstrap server answered within ``bootstrap_timeout_ms``,
                or the client could not be set up.
        """
        ck = _ck()
        config = rdkafka_options(self.options, CONSUMER)
        config["enable.auto.commit"] = False
        config.setdefault("auto.offset.reset", "earliest")
        config["enable.partition.eof"] = False
        try:
            self._consumer = ck.Consumer(config)
        except ck.KafkaException as exc:
            raise _setup_error(self.what, exc) from None
        try:
            self._consumer.list_topics(self.topics[0], timeout=self.bootstrap_timeout_ms / 1000)
        except ck.KafkaException as exc:
            raise unreachable(
                self.service.name,
                self.options["bootstrap.servers"],
                self.bootstrap_timeout_ms,
                self.what,
                _reason(exc),
                self.logger,
            ) from None
        try:
            self._consumer.subscribe(
                self.topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        except ck.KafkaException as exc:
            raise DeliveryError(f"{self.what}: cannot subscribe: {exc}") from None

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        tps = frozenset((p.topic, p.partition) for p in partitions)
        before = self._assigned_now() if self._cooperative else set()
        self._seeks = {}
        self._apply(Rebalance(ASSIGNED, tps, frozenset(before | tps)))
        for p in partitions:
            offset = self._seeks.get((p.topic, p.partition))
            if offset is not None:
                p.offset = offset
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        # whatever librdkafka kept of an earlier pause, start them as backpressure wants
        if self._throttled:
            consumer.pause(partitions)
            self._paused |= tps
        else:
            consumer.resume(partitions)
            self._paused -= tps

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._unassign(consumer, partitions, REVOKED)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._unassign(consumer, partitions, LOST)

    def _unassign(self, consumer: Any, partitions: list[Any], kind: str) -> None:
        tps = frozenset((p.topic, p.partition) for p in partitions)
        after = self._assigned_now() - tps if self._cooperative else set()
        self._apply(Rebalance(kind, tps, frozenset(after)))
        if self._cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()
        self._paused -= tps

    # client hooks --------------------------------------------------------------------

    def _poll_events(self, timeout: float) -> list[Event]:
        messages = self._consumer.consume(num_messages=self.max_records, timeout=timeout)
        if not messages:
            return []
        by_partition: dict[TP, list[Any]] = {}
        for m in messages:
            error = m.error()
            if error is not None:
                if error.fatal():
                    raise DeliveryError(f"{self.what}: {error.str()}")
                self.logger.warning("kafka source: %s", error.str())
                continue
            by_partition.setdefault((m.topic(), m.partition()), []).append(m)
        if not by_partition:
            return []
        part_done = self._in_flight.open(len(by_partition))
        encoding = self.encoding
        events: list[Event] = []
        append = events.append
        for (topic, partition), found in by_partition.items():
            ack = self._chunk_ack((topic, partition), found[-1].offset(), len(found), part_done)
            for m in found:
                headers = m.headers()
                value = m.value()
                append(
                    Event(
                        value if value is not None else b"",
                        encoding,
                        attributes=header_attributes(headers) if headers else None,
                        metadata={
                            "topic": topic,
                            "partition": partition,
                            "offset": m.offset(),
                            "timestamp": m.timestamp()[1],
                            "key": m.key(),
                            "headers": headers if headers else [],
                        },
                        ack=ack,
                    )
                )
        return events

    def _commit_offsets(self, offsets: Mapping[TP, int]) -> None:
        ck = _ck()
        self._consumer.commit(
            offsets=[ck.TopicPartition(t, p, o) for (t, p), o in offsets.items()],
            asynchronous=False,
        )

    def _seek(self, tp: TP, offset: int) -> bool:
        self._seeks[tp] = offset  # applied to the assignment in _on_assign
        return True

    def _offsets_for_times(self, tps: list[TP], timestamp_ms: int) -> dict[TP, int | None]:
        ck = _ck()
        found = self._consumer.offsets_for_times(
            [ck.TopicPartition(t, p, max(0, timestamp_ms)) for t, p in tps], timeout=30
        )
        return {(f.topic, f.partition): (f.offset if f.offset >= 0 else None) for f in found}

    def _end_offset(self, tp: TP) -> int:
        ck = _ck()
        _, high = self._consumer.get_watermark_offsets(ck.TopicPartition(*tp), timeout=30)
        return int(high)

    def _assigned_now(self) -> set[TP]:
        return {(p.topic, p.partition) for p in self._consumer.assignment()}

    def _paused_now(self) -> set[TP]:
        return set(self._paused)

    def _pause(self, tps: set[TP]) -> bool:
        if tps:
            ck = _ck()
            self._consumer.pause([ck.TopicPartition(t, p) for t, p in tps])
            self._paused |= tps
        return True

    def _resume(self, tps: set[TP]) -> bool:
        if tps:
            ck = _ck()
            self._consumer.resume([ck.TopicPartition(t, p) for t, p in tps])
            self._paused -= tps
        return True

    def _client_errors(self) -> tuple[type[Exception], ...]:
        return (_ck().KafkaException,)

    def close(self) -> None:
        """Commit what is acknowledged, then leave the group."""
        if self._consumer is None:
            return
        try:
            self.commit()
        finally:
            self._consumer.close()
            self._consumer = None


PURGE_REPORT_S = 1.0
"""Seconds a close without flushing waits for the purged messages' delivery reports."""


class ConfluentSink(KafkaSinkBase):
    """A Kafka sink on ``confluent_kafka.Producer``; a thread serves delivery callbacks."""

    max_block = 60.0
    """Seconds a write waits for room in the producer's queue before failing."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        super().__init__(service, step, ctx)
        self._producer: Any = None
        self._closing = threading.Event()
        self._poller: threading.Thread | None = None
        self.stopping = ctx.stopping

    def open(self) -> None:
        """Create the producer (``acks = all`` unless configured), check the brokers answer,
        and start its callback thread.

        Raises:
            DeliveryError: no bootstrap server answered within ``bootstrap_timeout_ms``,
                or the client could not be set up.
        """
        ck = _ck()
        config = rdkafka_options(self.options, PRODUCER)
        config.setdefault("acks", "all")
        try:
            producer = ck.Producer(config)
        except ck.KafkaException as exc:
            raise _setup_error(self.what, exc) from None
        try:
            producer.list_topics(self.topic, timeout=self.bootstrap_timeout_ms / 1000)
        except ck.KafkaException as exc:
            raise unreachable(
                self.service_name,
                self.servers,
                self.bootstrap_timeout_ms,
                self.what,
                _reason(exc),
                self.logger,
            ) from None
        self._producer = producer
        self._closing.clear()
        self._poller = threading.Thread(
            target=self._serve, name=f"mstream-kafka-{self.topic}", daemon=True
        )
        self._poller.start()

    def _serve(self) -> None:
        producer = self._producer
        while not self._closing.is_set():
            producer.poll(0.05)

    def write(self, batch: Batch, done: Done) -> None:
        """Produce every message; ``done(None)`` when all are delivered, else the first error."""
        ck = _ck()
        producer = self._producer
        messages = messages_of(producer, self.messages, batch, done, self.what)
        if messages is None:
            return
        countdown = Completion(len(messages), self.pending.track(len(messages), done), self.what)

        per_event = self.one_per_event(batch)
        events = batch.events

        def delivered(event: Event | None, error: Any, _msg: Any) -> None:
            if error is None:
                countdown.ok()
            elif error.code() != ck.KafkaError.MSG_SIZE_TOO_LARGE:
                countdown.fail(DeliveryError(f"{self.what}: {error.str()}"))
            elif event is not None:  # over the broker's limit: this event alone, for good
                countdown.reject(event, f"{self.what}: {error.str()}")
            else:
                countdown.fail(RejectedError(f"{self.what}: {error.str()}"))

        produce, topic = producer.produce, self.topic
        for i, (value, key, headers) in enumerate(messages):
            report = functools.partial(delivered, events[i] if per_event else None)
            deadline = None
            while True:
                try:
                    try:
                        produce(topic, value=value, key=key, headers=headers, on_delivery=report)
                    except TypeError:  # header pairs the client refuses: normalized, once
                        if not headers:
                            raise
                        headers = normal_headers(headers)
                        produce(topic, value=value, key=key, headers=headers, on_delivery=report)
                    break
                except BufferError:  # queue full: let deliveries drain, then retry
                    deadline = deadline or time.monotonic() + self.max_block
                    if time.monotonic() > deadline or self.stopping.is_set():
                        countdown.fail(DeliveryError(f"{self.what}: producer queue full"))
                        return
                    producer.poll(0.01)  # serve delivery reports so the queue drains
                except ck.KafkaException as exc:
                    error = exc.args[0] if exc.args else exc
                    if getattr(error, "code", lambda: None)() != ck.KafkaError.MSG_SIZE_TOO_LARGE:
                        countdown.fail(DeliveryError(f"{self.what}: {exc}"))
                        return
                    reason = f"{self.what}: message too large ({len(value)} bytes)"
                    if not per_event:
                        countdown.fail(RejectedError(reason))
                        return
                    countdown.reject(events[i], reason)  # the others go on
                    break

    def _flush_within(self, seconds: float) -> bool:
        return int(self._producer.flush(seconds)) == 0

    def _release(self, abandon: bool) -> None:
        """Stop the delivery-callback thread; ``abandon``: first fail what is still queued.

        ``purge`` fails the queued and in-flight messages locally (their writes report
        an error and are never acknowledged), so nothing waits for a broker that stopped
        answering.
        """
        if abandon:
            producer = self._producer
            producer.purge()
            # the purged messages' delivery reports come on later polls: serve them all
            # (bounded: a report librdkafka never makes cannot hold the close)
            deadline = time.monotonic() + PURGE_REPORT_S
            while len(producer) and time.monotonic() < deadline:
                producer.poll(0.01)
        self._closing.set()
        if self._poller is not None:
            self._poller.join()
