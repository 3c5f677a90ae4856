"""``filter``: drop events for good, acknowledging them, so positions keep moving."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from reactivex import Observable
from reactivex import operators as rx_ops

from mstream.core import Batch, ConnectorCounters, Event

from ._batchwise import map_each

_Item = TypeVar("_Item", list[Event], Batch)


def filter(  # the name users look for, as in reactivex.operators
    predicate: Callable[[Event], bool], *, counters: ConnectorCounters | None = None
) -> Callable[[Observable[Any]], Observable[Any]]:
    """Keep the events for which ``predicate`` is true; acknowledge the others.

    Works before :func:`batch` (on a source's chunks: a dropped event is acknowledged at
    once) and after it (on batches: a batch left empty is acknowledged whole; otherwise its
    acknowledgements follow the kept events to the sinks). Stock ``reactivex.operators.
    filter`` would drop a chunk without acknowledging it, so a committing source (Kafka,
    Pub/Sub, MongoDB) would never move past it and read it again next time.

    Args:
        predicate: called with each event; ``True`` keeps it.
        counters: counts what is dropped (``filtered``), when given.

    Example:
        >>> import reactivex
        >>> acked = []
        >>> evs = [Event(b'{"n": %d}' % i, "json", ack=lambda i=i: acked.append(i))
        ...        for i in range(4)]
        >>> kept = reactivex.of(evs).pipe(filter(lambda e: e.doc["n"] % 2 == 0)).run()
        >>> [e.doc["n"] for e in kept], acked
        ([0, 2], [1, 3])
    """

    def keep(item: _Item) -> _Item | None:
        if isinstance(item, Batch):
            kept = [e for e in item.events if predicate(e)]
            dropped = len(item.events) - len(kept)
            if counters is not None and dropped:
                counters.record_filtered(dropped)
            if not kept:
                item.ack_all()
                return None
            return item.with_events(kept) if dropped else item
        events: list[Event] = []
        for event in item:
            if predicate(event):
                events.append(event)
            elif event.ack is not None:
                event.ack()
        if counters is not None and len(events) < len(item):
            counters.record_filtered(len(item) - len(events))
        return events or None

    def operator(source: Observable[Any]) -> Observable[Any]:
        return source.pipe(map_each(keep), rx_ops.filter(lambda item: item is not None))

    return operator
