"""The batch, the unit of work in a connector pipeline, and a source chunk's columns.

Right after the source the pipeline groups events into a :class:`Batch`; every later
operator and every sink works on batches, so Python overhead is paid per batch.
``Batch.batched`` tells sinks and middlewares how to treat the batch: ``True`` when the
connector has ``batch = { kind = "count", size = N }`` (the batch is one array), ``False``
when the batch is only a chunk of independent events (each event is written on its own).

A source may hand over a chunk as :class:`Records` (the payloads, keys, headers... as
lists, straight from its client) instead of one :class:`~mstream.core.Event` per record.
Such a batch makes its events the first time a step reads :attr:`Batch.events` (a
middleware, a dead letter, a sink that needs documents) and from then on is an ordinary
batch; steps with a per-chunk path (the source's JSON check, a Kafka sink) read the
columns while :attr:`Batch.records` is set, so a Kafka → Kafka pipeline makes no event
at all.

Example:
    >>> from mstream.core.event import Event
    >>> acked = []
    >>> b = Batch.of([Event(b'{"a": 1}', "json", ack=lambda: acked.append(1))], batched=False)
    >>> b.ack_all(); acked
    [1]
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING

from mstream.core.event import Ack, Event
from mstream.core.source_time import source_time

if TYPE_CHECKING:
    from mstream.encodings import AvroSchema


class SharedAck:
    """One acknowledgement shared by ``count`` events: ``done`` runs once all are acknowledged.

    Each event may call it once (an event acknowledged on its own, dropped by a filter),
    or a batch holding ``n`` of its events settles them in one call (:meth:`settle`, what
    :meth:`Batch.ack_all` does for a run of events sharing it), so a chunk of a source is
    one acknowledgement however many events it holds. Thread-safe.

    Example:
        >>> done = []
        >>> ack = SharedAck(3, lambda: done.append("chunk"))
        >>> ack(); ack.settle(1); done
        []
        >>> ack.settle(1); done
        ['chunk']
    """

    __slots__ = ("_done", "_left", "_lock")

    def __init__(self, count: int, done: Ack) -> None:
        self._left = count
        self._done = done
        self._lock = threading.Lock()

    def __call__(self) -> None:
        """Acknowledge one of the events."""
        self.settle(1)

    def settle(self, n: int) -> None:
        """Acknowledge ``n`` of the events; the last one runs ``done``."""
        with self._lock:
            self._left -= n
            last = self._left == 0
        if last:
            self._done()


class Records(ABC):
    """A source chunk as columns: what per-chunk steps read without an event per record.

    Subclasses (a Kafka poll, say) keep what their client returned and give the payloads
    as one list; :meth:`events` makes the events when a step needs them.

    Example:
        >>> class Lines(Records):
        ...     def __init__(self, lines): self.encoding, self.lines = "json", lines
        ...     def __len__(self): return len(self.lines)
        ...     @property
        ...     def payloads(self): return self.lines
        ...     def events(self, acks):
        ...         return [Event(p, "json", ack=a) for p, a in zip(self.lines, acks)]
        >>> b = Batch.of_records(Lines([b"1", b"2"]), [print, print])
        >>> len(b), b.payloads(), b.records is not None
        (2, [b'1', b'2'], True)
        >>> b.events[1].payload, b.records
        (b'2', None)
    """

    __slots__ = ()

    encoding: str
    """The encoding of every payload."""

    @abstractmethod
    def __len__(self) -> int:
        """How many records."""

    @property
    @abstractmethod
    def payloads(self) -> list[bytes]:
        """Every record's payload, in order."""

    @abstractmethod
    def events(self, acks: list[Ack]) -> list[Event]:
        """One event per record, in order, the ``i``-th acknowledged by ``acks[i]``."""

    def source_time(self) -> float | None:
        """When the source says the last record happened (Unix seconds), if it says."""
        return None

    def recoded(
        self, payloads: list[bytes], encoding: str, schema: AvroSchema | None
    ) -> Records | None:
        """The same records with other payloads in ``encoding`` (None: not supported)."""
        return None


_MAKING_EVENTS = threading.Lock()
"""Held while a batch makes its events from its records (once per batch, from any thread)."""


class Batch:
    """The unit of work that flows through operators and into sinks.

    Args:
        events: the events to deliver (after middlewares these may differ in number from
            the source events: a filter removes, a script may emit several).
        acks: the source acknowledgements, all called once every sink has finished.
        batched: ``True`` when the connector batches (sinks write one array);
            ``False`` for a chunk of independent events.
        source_count: how many source events the batch stands for (default: ``len(events)``).

    Attributes:
        records: a source chunk's columns while no event was made from them (see
            :meth:`of_records`), else None.
    """

    __slots__ = ("_events", "acks", "batched", "records", "source_count")

    def __init__(
        self,
        events: list[Event],
        acks: list[Ack],
        *,
        batched: bool,
        source_count: int | None = None,
    ) -> None:
        self._events: list[Event] | None = events
        self.records: Records | None = None
        self.acks = acks
        self.batched = batched
        self.source_count = len(events) if source_count is None else source_count

    @classmethod
    def of(cls, events: Iterable[Event], *, batched: bool) -> Batch:
        """Build a batch from source events, collecting their acks."""
        evs = list(events)
        return cls(evs, [e.ack for e in evs if e.ack is not None], batched=batched)

    @classmethod
    def of_records(cls, records: Records, acks: list[Ack]) -> Batch:
        """A source chunk (``batched=False``) kept as columns; ``acks[i]`` is record ``i``'s."""
        batch = cls([], acks, batched=False, source_count=len(records))
        batch._events = None
        batch.records = records
        return batch

    @property
    def events(self) -> list[Event]:
        """The events; made from :attr:`records` on first use (then ``records`` is None)."""
        events = self._events
        if events is None:
            with _MAKING_EVENTS:
                events = self._events
                if events is None:
                    records = self.records
                    assert records is not None
                    events = records.events(self.acks)
                    self._events = events
                    self.records = None
        return events

    def payloads(self) -> list[bytes]:
        """Every event's payload, from the columns while there are no events."""
        records = self.records
        if records is not None:
            return records.payloads
        return [e.payload for e in self.events]

    def source_time(self) -> float | None:
        """When the source says the last event happened (Unix seconds), if it says."""
        records = self.records
        if records is not None:
            return records.source_time()
        events = self.events
        return source_time(events[-1].metadata) if events else None

    def with_events(self, events: list[Event]) -> Batch:
        """The same batch (same acks) carrying other events."""
        return Batch(events, self.acks, batched=self.batched, source_count=self.source_count)

    def ack_all(self) -> None:
        """Acknowledge every source event of the batch.

        A run of events sharing one :class:`SharedAck` (a source's chunk) is settled in one
        call; any other acknowledgement is called once per event.
        """
        shared: SharedAck | None = None  # the run being counted
        count = 0
        for ack in self.acks:
            if ack is shared:
                count += 1
                continue
            if shared is not None:
                shared.settle(count)
                shared = None
            if type(ack) is SharedAck:
                shared, count = ack, 1
            else:
                ack()
        if shared is not None:
            shared.settle(count)

    def __len__(self) -> int:
        records = self.records
        if records is not None:
            return len(records)
        return len(self.events)

    def __repr__(self) -> str:
        return f"Batch({len(self)} events, {len(self.acks)} acks, batched={self.batched})"
