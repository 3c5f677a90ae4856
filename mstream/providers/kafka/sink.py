"""The Kafka sink: which messages a batch becomes, and the kafka-python producer."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Batch
from mstream.encodings import AvroSchema, encode_batch
from mstream.errors import ConfigError, DeliveryError, RejectedError
from mstream.providers.base import Done, Sink, StepContext
from mstream.providers.completion import Completion, messages_of
from mstream.providers.kafka.config import PRODUCER, client_options

_TOO_LARGE = frozenset({"MessageSizeTooLargeError", "RecordTooLargeError"})
"""kafka-python errors meaning a message can never be accepted as it is."""


def _classifier(what: str) -> Callable[[BaseException], BaseException]:
    """A :class:`~mstream.providers.completion.Completion` classifier for kafka-python."""

    def classify(error: BaseException) -> BaseException:
        if type(error).__name__ in _TOO_LARGE:  # refused by the broker: never retried
            return RejectedError(f"{what}: message too large for the broker: {error}")
        return DeliveryError(f"{what}: {type(error).__name__}: {error}")

    return classify


def _key_bytes(key: Any) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, bytearray | memoryview):
        return bytes(key)
    return str(key).encode()


def _normal_headers(headers: Iterable[tuple[Any, Any]]) -> list[tuple[str, bytes]]:
    """Headers as both clients take them: ``(str, bytes)`` pairs (a null value is empty).

    Example:
        >>> _normal_headers([("a", "x"), ("b", None), ("c", b"y"), (1, 2)])
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


OutMessage = tuple[bytes, bytes | None, list[tuple[str, bytes]] | None]
"""One message to produce: ``(value, key, headers)``."""


class KafkaSinkBase(Sink):
    """The client-independent half of a Kafka sink: which messages a batch becomes."""

    _producer: Any = None

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        if not service.options.get("bootstrap.servers"):
            raise ConfigError(f'kafka service {service.name!r} needs "bootstrap.servers"')
        self.options = service.options
        self.topic = step.resource
        if not self.topic:
            raise ConfigError("a kafka sink needs a topic as its resource")
        self.encoding = step.output_encoding
        self.batch_mode: str = step.options.get("batch_mode", "array")
        self.what = f"kafka sink {self.topic!r}"

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
        events = batch.events
        if batch.batched and self.batch_mode == "array":
            schema: AvroSchema | None = events[0].schema if events else None
            keys = {_key_bytes(e.metadata.get("key")) for e in events}
            key = keys.pop() if len(keys) == 1 else None
            return [(encode_batch([e.doc for e in events], self.encoding, schema), key, None)]
        out: list[OutMessage] = []
        append = out.append
        for e in events:
            metadata = e.metadata
            key = metadata.get("key")
            if key is not None and type(key) is not bytes:
                key = _key_bytes(key)
            headers = metadata.get("headers")
            if not headers:  # the event's attributes, if any, become the headers
                headers = [(k, str(v).encode()) for k, v in e.attributes.items()] or None
            elif type(headers) is not list:
                headers = _normal_headers(headers)
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
        """Wait until every sent message is acknowledged (or failed)."""
        if self._producer is not None:
            self._producer.flush()

    def close(self) -> None:
        """Flush, then release the client (see :meth:`_release`)."""
        if self._producer is None:
            return
        try:
            self._producer.flush()
        finally:
            self._release()
            self._producer = None

    def _release(self) -> None:  # pragma: no cover - abstract
        """Free the client's resources after the final flush."""
        raise NotImplementedError


class KafkaPythonSink(KafkaSinkBase):
    """A Kafka sink on kafka-python's ``KafkaProducer`` (asynchronous sends)."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        super().__init__(service, step, ctx)
        self._producer: Any = None
        self._classify = _classifier(self.what)

    def open(self) -> None:
        """Create the producer (``acks = all`` unless configured)."""
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        config = client_options(self.options, PRODUCER)
        config.setdefault("acks", "all")
        try:
            self._producer = KafkaProducer(**config)
        except KafkaError as exc:
            raise DeliveryError(f"{self.what}: cannot connect: {exc}") from None

    def write(self, batch: Batch, done: Done) -> None:
        """Send every message; ``done(None)`` when all succeeded, else the first error."""
        from kafka.errors import KafkaError, MessageSizeTooLargeError

        producer = self._producer
        messages = messages_of(producer, self.messages, batch, done, self.what)
        if messages is None:
            return
        countdown = Completion(len(messages), done, self.what, self._classify)
        send, topic = producer.send, self.topic
        ok, fail = countdown.ok, countdown.fail
        per_event = self.one_per_event(batch)
        events = batch.events
        for i, (value, key, headers) in enumerate(messages):
            try:
                try:
                    future = send(topic, value=value, key=key, headers=headers)
                except (AssertionError, TypeError):  # header pairs the client refuses
                    if not headers:
                        raise
                    headers = _normal_headers(headers)
                    future = send(topic, value=value, key=key, headers=headers)
            except MessageSizeTooLargeError as exc:
                reason = f"{self.what}: message too large: {exc}"
                if per_event:  # only this event is dead-lettered; the others go on
                    countdown.reject(events[i], reason)
                    continue
                countdown.fail(RejectedError(reason))
                return
            except (KafkaError, AssertionError, ValueError, TypeError) as exc:
                countdown.fail(exc)
                return
            # one message per event: a broker refusal names the event, not the whole chunk
            on_error = functools.partial(countdown.fail_event, events[i]) if per_event else fail
            register = getattr(future, "_add_cb_eb", None)  # one lock instead of two
            if register is not None:
                register(ok, on_error)
            else:
                future.add_callback(ok)
                future.add_errback(on_error)

    def _release(self) -> None:
        """Close the producer."""
        self._producer.close()
