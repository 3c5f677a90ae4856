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

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Batch, Event
from mstream.errors import ConfigError, DeliveryError, MstreamError, RejectedError
from mstream.providers.base import Done, StepContext
from mstream.providers.completion import Completion, messages_of
from mstream.providers.kafka.config import CONSUMER, PRODUCER, rdkafka_options, unreachable
from mstream.providers.kafka.records import KafkaEvent, KafkaRecords, OutMessage
from mstream.providers.kafka.sink import KafkaSinkBase, normal_headers
from mstream.providers.kafka.source import (
    ASSIGNED,
    LOST,
    REVOKED,
    TP,
    KafkaSourceBase,
    Rebalance,
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


def _reason(exc: BaseException) -> str:
    """What a ``KafkaException`` says, without the ``KafkaError{...}`` wrapping."""
    error: Any = exc.args[0] if exc.args else None
    return str(error.str()) if hasattr(error, "str") else str(exc)


PREFETCH: dict[str, Callable[[int], int]] = {
    "queued.min.messages": lambda max_records: max_records,
    "queued.max.messages.kbytes": lambda _: 4096,
    "fetch.max.bytes": lambda _: 1 << 20,  # >= a consumer's message.max.bytes (1,000,000)
    "max.partition.fetch.bytes": lambda _: 256 << 10,
    "fetch.queue.backoff.ms": lambda _: 10,  # librdkafka waits 1 s once the queue is full
}
"""A source consumer's prefetch defaults (librdkafka's, in the comments of ``open``), as
functions of ``max.poll.records``; any of them set on the service wins."""


def _message_method(name: str) -> Callable[[Any], Any]:
    """``confluent_kafka.Message.<name>`` unbound, for ``map`` over a poll (C calls only);
    a name read from an instance when the package is missing (the check comes later)."""
    try:
        from confluent_kafka import Message
    except ImportError:  # pragma: no cover - depends on the install
        return lambda message: getattr(message, name)()
    method: Callable[[Any], Any] = getattr(Message, name)
    return method


_MESSAGE_ERROR = _message_method("error")
_MESSAGE_PARTITION = _message_method("partition")
_MESSAGE_TOPIC = _message_method("topic")


class ConfluentRecords(KafkaRecords):
    """One ``consume`` call's records: ``confluent_kafka.Message`` objects."""

    __slots__ = ()

    value_of = staticmethod(_message_method("value"))
    key_of = staticmethod(_message_method("key"))
    headers_of = staticmethod(_message_method("headers"))

    def _event(self, message: Any, payload: bytes) -> KafkaEvent:
        headers = message.headers()
        return KafkaEvent(
            payload,
            self.encoding,
            message.topic(),
            message.partition(),
            message.offset(),
            message.timestamp()[1],
            message.key(),
            tuple(headers) if headers else (),
        )

    def _timestamp_ms(self, message: Any) -> int | None:
        stamp: int = message.timestamp()[1]
        return stamp


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
        # librdkafka prefetches up to 100,000 messages per partition and 64 MB per consumer,
        # in fetches of up to 50 MB, by default; the pipeline holds at most pause_at polls,
        # so a poll's worth per partition keeps it fed and memory stays bounded with many
        # connectors in one process (a larger message still comes, alone in its fetch)
        for key, value in PREFETCH.items():
            config.setdefault(key, value(self.max_records))
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

    def _poll_chunk(self, timeout: float) -> Batch | None:
        messages = self._consumer.consume(num_messages=self.max_records, timeout=timeout)
        if not messages:
            return None
        if any(map(_MESSAGE_ERROR, messages)):  # rare: keep the records, report the rest
            messages = self._without_errors(messages)
            if not messages:
                return None
        # the runs of consecutive records of one partition, each a tracker position
        partitions = list(map(_MESSAGE_PARTITION, messages))
        if len(self.topics) == 1:
            places: list[Any] = partitions
        else:
            places = list(zip(map(_MESSAGE_TOPIC, messages), partitions, strict=True))
        runs: list[tuple[str, int, int, int]] = []
        first = 0
        for _, run in itertools.groupby(places):
            end = first + len(list(run))
            last = messages[end - 1]
            runs.append((last.topic(), last.partition(), first, last.offset()))
            first = end
        return self._chunk(ConfluentRecords(messages, self.encoding), runs)

    def _without_errors(self, messages: list[Any]) -> list[Any]:
        """The records among ``messages``; a fatal error raises, others are logged.

        Raises:
            DeliveryError: the client reported a fatal error.
        """
        kept = []
        for m in messages:
            error = m.error()
            if error is None:
                kept.append(m)
            elif error.fatal():
                raise DeliveryError(f"{self.what}: {error.str()}")
            else:
                self.logger.warning("kafka source: %s", error.str())
        return kept

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


class _Refused:
    """Finds the event of a message the broker refused, from its delivery report.

    One delivery callback serves every message of a write (no callable per message);
    the rare refused message is matched back to its event by value and key (the batch's
    events are made then, if it had none). Events whose messages are identical are
    interchangeable: each refusal takes the next one. Thread-safe (delivery reports are
    served on more than one thread).

    Example:
        >>> class Msg:
        ...     def value(self): return b"v"
        ...     def key(self): return None
        >>> a, b = Event(b"v", "json"), Event(b"w", "json")
        >>> r = _Refused(Batch([a, b], [], batched=False), [(b"v", None, None), (b"w", None, None)])
        >>> r.event_of(Msg()) is a, r.event_of(Msg())
        (True, None)
    """

    def __init__(self, batch: Batch, messages: list[OutMessage]) -> None:
        self._batch = batch
        self._messages = messages
        self._by_message: dict[tuple[bytes, bytes | None], list[Event]] | None = None
        self._lock = threading.Lock()

    def event_of(self, msg: Any) -> Event | None:
        """The event whose message ``msg`` reports on, or None if none is left."""
        with self._lock:
            if self._by_message is None:  # built on the first refusal only
                self._by_message = {}
                events = self._batch.events
                for event, (value, key, _headers) in zip(events, self._messages, strict=True):
                    self._by_message.setdefault((value, key), []).append(event)
            found = self._by_message.get((msg.value() or b"", msg.key()))
            return found.pop(0) if found else None


PURGE_REPORT_S = 1.0
"""Seconds a close without flushing waits for the purged messages' delivery reports."""


class ConfluentSink(KafkaSinkBase):
    """A Kafka sink on ``confluent_kafka.Producer``.

    Delivery reports are served by the writing thread: each write ends with
    ``poll(0)``, which runs the reports that have arrived. librdkafka takes the GIL
    again for every report it serves, so serving them on a second thread while writes
    come made the two threads hand the GIL back and forth per message. The sink's own
    thread serves them only once no write has served them for :attr:`serve_gap`
    (the last writes of a run, an idle pipeline).
    """

    max_block = 60.0
    """Seconds a write waits for room in the producer's queue before failing."""
    serve_gap = 0.005
    """Seconds without a write after which the sink's thread serves delivery reports."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        super().__init__(service, step, ctx)
        self._producer: Any = None
        self._closing = threading.Event()
        self._poller: threading.Thread | None = None
        self._served = 0.0  # time.monotonic() of the last write's poll
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
        producer, closing, gap = self._producer, self._closing, self.serve_gap
        while not closing.is_set():
            if time.monotonic() - self._served < gap:  # writes come: they serve the reports
                closing.wait(gap)
            else:
                producer.poll(0.05)  # returns as soon as it has served a report

    def write(self, batch: Batch, done: Done) -> None:
        """Produce every message; ``done(None)`` when all are delivered, else the first error."""
        ck = _ck()
        producer = self._producer
        messages = messages_of(producer, self.messages, batch, done, self.what)
        if messages is None:
            return
        countdown = Completion(len(messages), self.pending.track(len(messages), done), self.what)

        per_event = self.one_per_event(batch)
        ok, too_large = countdown.ok, ck.KafkaError.MSG_SIZE_TOO_LARGE
        refused = _Refused(batch, messages) if per_event else None

        def delivered(error: Any, msg: Any) -> None:  # one callback for every message
            if error is None:
                ok()
                return
            if error.code() != too_large:
                countdown.fail(DeliveryError(f"{self.what}: {error.str()}"))
                return
            event = refused.event_of(msg) if refused is not None else None
            if event is not None:  # over the broker's limit: this event alone, for good
                countdown.reject(event, f"{self.what}: {error.str()}")
            else:
                countdown.fail(RejectedError(f"{self.what}: {error.str()}"))

        # positional arguments, in the order of the client's keyword list (topic, value,
        # key, partition, callback, on_delivery, timestamp, headers): parsing keywords
        # took 1.2 us a message, positions 0.6 us; -1 is RD_KAFKA_PARTITION_UA (the
        # partitioner chooses) and a timestamp of 0 is "now", the client's defaults
        produce, topic = producer.produce, self.topic
        for i, (value, key, headers) in enumerate(messages):
            deadline = None
            while True:
                try:
                    try:
                        produce(topic, value, key, -1, delivered, None, 0, headers)
                    except TypeError:  # header pairs the client refuses: normalized, once
                        if not headers:
                            raise
                        headers = normal_headers(headers)
                        produce(topic, value, key, -1, delivered, None, 0, headers)
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
                    countdown.reject(batch.events[i], reason)  # the others go on
                    break
        producer.poll(0)  # the reports that have arrived, this write's or earlier ones'
        self._served = time.monotonic()

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
