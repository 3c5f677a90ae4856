"""The client-independent half of a Kafka sink: the messages a batch becomes, a bounded flush.

``flush`` (called on a drained stop and by ``close``) waits at most ``flush_timeout_ms``
(30000) for the broker to acknowledge what was sent; past that it raises
:class:`~mstream.errors.DeliveryError` naming what is still pending. Those writes never
called their ``done``, so their events are not acknowledged: the connector restarts from
its last checkpoint and they are delivered again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Batch, LazyEvent
from mstream.encodings import AvroSchema, encode_batch
from mstream.errors import ConfigError, DeliveryError
from mstream.providers.base import Done, Sink, StepContext
from mstream.providers.kafka.records import KafkaRecords, OutMessage


class Pending:
    """Writes sent and not yet settled (their ``done`` not called), for the flush error.

    Thread-safe: :meth:`track` runs on the writing thread, the wrapped ``done`` on the
    client's callback thread.

    Example:
        >>> pending, seen = Pending(), []
        >>> done = pending.track(3, seen.append)
        >>> pending.describe()
        '1 write (3 messages)'
        >>> done(None); pending.describe(), seen
        ('0 writes (0 messages)', [None])
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writes = 0
        self._messages = 0

    def track(self, messages: int, done: Done) -> Done:
        """Count one write of ``messages``; returns ``done`` that also uncounts it."""
        with self._lock:
            self._writes += 1
            self._messages += messages

        def settled(error: BaseException | None) -> None:
            with self._lock:
                self._writes -= 1
                self._messages -= messages
            done(error)

        return settled

    def describe(self) -> str:
        """``"N writes (M messages)"`` still pending."""
        with self._lock:
            writes, messages = self._writes, self._messages
        return f"{writes} write{'' if writes == 1 else 's'} ({messages} messages)"


def _key_bytes(key: Any) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, bytearray | memoryview):
        return bytes(key)
    return str(key).encode()


def normal_headers(headers: Iterable[tuple[Any, Any]]) -> list[tuple[str, bytes]]:
    """Headers as both clients take them: ``(str, bytes)`` pairs (a null value is empty).

    Example:
        >>> normal_headers([("a", "x"), ("b", None), ("c", b"y"), (1, 2)])
        [('a', b'x'), ('b', b''), ('c', b'y'), ('1', b'2')]
    """
    return [
        (
            str(name),
            value
            if type(value) is bytes
            else b""
            if value is None
            else bytes(value)
            if isinstance(value, bytearray | memoryview)
            else str(value).encode(),
        )
        for name, value in headers
    ]


class KafkaSinkBase(Sink):
    """The client-independent half of a Kafka sink: which messages a batch becomes, and a
    bounded flush.

    Subclasses create ``_producer`` in ``open``, count each write with
    ``self.pending.track`` and implement :meth:`_flush_within` and :meth:`_release`.
    """

    _producer: Any = None
    flush_slice = 0.5
    """Seconds of one wait inside :meth:`flush` (kafka-python bounds each request's wait,
    not the whole flush, so the deadline is checked between slices)."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        if not service.options.get("bootstrap.servers"):
            raise ConfigError(f'kafka service {service.name!r} needs "bootstrap.servers"')
        self.options = service.options
        self.topic = step.resource
        if not self.topic:
            raise ConfigError("a kafka sink needs a topic as its resource")
        self.service_name = service.name
        self.servers: str = service.options["bootstrap.servers"]
        self.encoding = step.output_encoding
        self.batch_mode: str = step.options.get("batch_mode", "array")
        self.what = f"kafka sink {self.topic!r}"
        self.bootstrap_timeout_ms: int = service.options.get("bootstrap_timeout_ms", 3000)
        self.flush_timeout = service.options.get("flush_timeout_ms", 30_000) / 1000.0
        self.logger = ctx.logger
        self.pending = Pending()
        self._flush_failed = False

    def messages(self, batch: Batch) -> list[OutMessage]:
        """The messages a batch is written as.

        Example:
            >>> from mstream.core import Event
            >>> svc = ServiceConfig("k", "kafka", {"bootstrap.servers": "h:1"})
            >>> sink = KafkaSinkBase(svc, StepConfig("k", "t"), StepContext("c", "sink"))
            >>> evs = [Event(b'{"n":1}', "json", metadata={"key": b"k"}), Event(b'{"n":2}', "json")]
            >>> sink.messages(Batch.of(evs, batched=True))
            [(b'[{"n":1},{"n":2}]', None, None)]
            >>> sink.messages(Batch.of(evs, batched=False))
            [(b'{"n":1}', b'k', None), (b'{"n":2}', None, None)]
        """
        records = batch.records
        if isinstance(records, KafkaRecords):  # a Kafka chunk: its records as they were read
            return records.out_messages()
        events = batch.events
        if batch.batched and self.batch_mode == "array":
            schema: AvroSchema | None = events[0].schema if events else None
            keys = {_key_bytes(e.metadata.get("key")) for e in events}
            key = keys.pop() if len(keys) == 1 else None
            return [(encode_batch([e.doc for e in events], self.encoding, schema), key, None)]
        out: list[OutMessage] = []
        append = out.append
        for e in events:
            if isinstance(e, LazyEvent):  # from a source: no metadata dictionary needed
                key, headers = e.key_and_headers()
            else:
                metadata = e.metadata
                key, headers = metadata.get("key"), metadata.get("headers")
            if key is not None and type(key) is not bytes:
                key = _key_bytes(key)
            if not headers:  # the event's attributes, if any, become the headers
                headers = [(k, str(v).encode()) for k, v in e.attributes.items()] or None
            elif type(headers) is not list:
                headers = normal_headers(headers)
            # else a Kafka source's list, passed as it is: the client checks its pairs, and
            # the sink normalizes them only when the client refuses them (see write)
            append((e.payload, key, headers))
        return out

    def one_per_event(self, batch: Batch) -> bool:
        """Whether :meth:`messages` gives one message per event of ``batch`` (same order)."""
        return not (batch.batched and self.batch_mode == "array")

    def write(self, batch: Batch, done: Done) -> None:  # pragma: no cover - abstract
        """Produce the batch's messages; ``done`` once all are acknowledged by the broker."""
        raise NotImplementedError

    def flush(self) -> None:
        """Wait until every sent message is acknowledged (or failed), at most ``flush_timeout``.

        Raises:
            DeliveryError: messages still pending after ``flush_timeout_ms``.
        """
        if self._producer is None:
            return
        deadline = time.monotonic() + self.flush_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._flush_failed = True
                raise DeliveryError(
                    f"{self.what}: flush did not finish within {self.flush_timeout:g} s "
                    f"(flush_timeout_ms): {self.pending.describe()} not acknowledged by "
                    f"{self.servers}; their events stay unacknowledged and are sent again "
                    "after the restart"
                )
            if self._flush_within(min(remaining, self.flush_slice)):
                return

    def close(self) -> None:
        """Flush (unless a flush already timed out), then release the client.

        Raises:
            DeliveryError: the final flush timed out (the client is released all the same).
        """
        if self._producer is None:
            return
        try:
            if not self._flush_failed:
                self.flush()
        finally:
            self._release(abandon=self._flush_failed)
            self._producer = None

    def _flush_within(self, seconds: float) -> bool:  # pragma: no cover - abstract
        """Send what is buffered and wait up to ``seconds``; True once nothing is pending."""
        raise NotImplementedError

    def _release(self, abandon: bool) -> None:  # pragma: no cover - abstract
        """Free the client; ``abandon``: fail what it still holds instead of waiting for it."""
        raise NotImplementedError
