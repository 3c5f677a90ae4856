"""One Kafka poll as a chunk: the client's records as columns, events made on demand.

A Kafka source hands the pipeline each poll as a :class:`~mstream.core.Batch` of
:class:`KafkaRecords` (the client's own message objects): the payloads, keys and headers
are read from them as lists, so a Kafka → Kafka pipeline that only checks and forwards
payloads makes no event per record. A step that needs events (a middleware, a dead
letter, a conversion) gets :class:`KafkaEvent` objects, made once per batch.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, cast

from mstream.core import Ack, Event, LazyEvent, Records
from mstream.encodings import AvroSchema


def header_attributes(headers: Iterable[tuple[str, Any]]) -> dict[str, str]:
    """Kafka headers as string attributes (UTF-8, undecodable bytes replaced).

    Example:
        >>> header_attributes([("a", b"1"), ("b", None), ("c", "x")])
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


class KafkaEvent(LazyEvent):
    """An event read from Kafka: the record's facts in slots, dictionaries made on first use.

    ``metadata`` (``topic``, ``partition``, ``offset``, ``timestamp``, ``key``,
    ``headers``) and ``attributes`` (the headers as strings) are built when something
    reads them (see :class:`~mstream.core.LazyEvent`). A Kafka sink reads the key and
    headers with :meth:`key_and_headers`, so a Kafka → Kafka pipeline builds neither.
    The headers are kept as a tuple of pairs, which the garbage collector stops tracking
    after its first pass: while a record is in flight, its event is the only object of
    it that full collections scan.

    Args:
        payload: the record's value.
        encoding: the source's encoding.
        topic: the record's topic.
        partition: its partition.
        offset: its offset.
        timestamp: its timestamp (ms).
        key: its key.
        headers: its headers, ``(name, value)`` pairs (empty: none).

    Example:
        >>> e = KafkaEvent(b"{}", "json", "t", 0, 7, 1, b"k", (("h", b"v"),))
        >>> e.key_and_headers(), e.attributes
        ((b'k', [('h', b'v')]), {'h': 'v'})
        >>> e.metadata["offset"], e.metadata["headers"]
        (7, [('h', b'v')])
        >>> e.metadata["key"] = b"other"; e.key_and_headers()[0]
        b'other'
    """

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic")

    def __init__(
        self,
        payload: bytes,
        encoding: str,
        topic: str,
        partition: int,
        offset: int,
        timestamp: int | None,
        key: bytes | None,
        headers: tuple[tuple[str, Any], ...],
    ) -> None:
        self._init_lazy(payload, encoding)
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.headers = headers

    def _build_metadata(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp,
            "key": self.key,
            "headers": list(self.headers),
        }

    def _build_attributes(self) -> dict[str, str]:
        return header_attributes(self.headers) if self.headers else {}

    def _own_key_and_headers(self) -> tuple[Any, Any]:
        return self.key, list(self.headers)


OutMessage = tuple[bytes, bytes | None, Any]
"""One message to produce: ``(value, key, headers)`` (headers: ``(name, value)`` pairs or None)."""


class KafkaRecords(Records):
    """One poll's records, kept as the client returned them (see the module docstring).

    Subclasses read the client's message objects: they set :attr:`value_of`,
    :attr:`key_of` and :attr:`headers_of` (accessors mapped over a poll) and implement
    :meth:`_event` and :meth:`_timestamp_ms`.

    Args:
        messages: the records, in the order read (no error records).
        encoding: the source's encoding.
    """

    __slots__ = ("_payloads", "encoding", "messages", "schema")

    value_of: Callable[[Any], bytes | None]
    """A record's value (a ``staticmethod`` on subclasses)."""
    key_of: Callable[[Any], bytes | None]
    """A record's key."""
    headers_of: Callable[[Any], Any]
    """A record's headers."""

    def __init__(self, messages: list[Any], encoding: str) -> None:
        self.messages = messages
        self.encoding = encoding
        self.schema: AvroSchema | None = None
        self._payloads: list[bytes] | None = None

    def recoded(
        self, payloads: list[bytes], encoding: str, schema: AvroSchema | None
    ) -> KafkaRecords:
        """The same records (keys, headers, positions) with ``payloads`` in ``encoding``."""
        twin = type(self)(self.messages, encoding)
        twin.schema = schema
        twin._payloads = payloads
        return twin

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def payloads(self) -> list[bytes]:
        """Every record's value (an empty value for a null one)."""
        if self._payloads is None:
            values = self._values()
            if None in values:
                values = [b"" if value is None else value for value in values]
            self._payloads = cast("list[bytes]", values)
        return self._payloads

    def out_messages(self) -> list[OutMessage]:
        """The records as messages to produce: value, key and headers as read."""
        return list(zip(self.payloads, self.keys(), self.headers(), strict=True))

    def events(self, acks: list[Ack]) -> list[Event]:
        """One :class:`KafkaEvent` per record, acknowledged by ``acks[i]``."""
        events: list[Event] = []
        for message, ack, payload in zip(self.messages, acks, self.payloads, strict=True):
            event = self._event(message, payload)
            event.ack = ack
            event.schema = self.schema
            events.append(event)
        return events

    def source_time(self) -> float | None:
        """The last record's timestamp, in Unix seconds."""
        stamp = self._timestamp_ms(self.messages[-1]) if self.messages else None
        return stamp / 1000.0 if stamp is not None and stamp > 0 else None

    def _values(self) -> list[bytes | None]:
        """Every record's value as the client gives it."""
        return list(map(self.value_of, self.messages))

    def keys(self) -> list[bytes | None]:
        """Every record's key."""
        return list(map(self.key_of, self.messages))

    def headers(self) -> list[Any]:
        """Every record's headers: a list of ``(name, value)`` pairs, or None/empty."""
        return list(map(self.headers_of, self.messages))

    @abstractmethod
    def _event(self, message: Any, payload: bytes) -> KafkaEvent:
        """The event of one record."""

    @abstractmethod
    def _timestamp_ms(self, message: Any) -> int | None:
        """One record's timestamp (ms)."""
