"""``batch``: group source events into :class:`~mstream.core.Batch` units."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SerialDisposable
from reactivex.scheduler import EventLoopScheduler

from mstream.core import Ack, Batch, Event

_shared_timer: EventLoopScheduler | None = None
_shared_lock = threading.Lock()


def _default_timer() -> EventLoopScheduler:
    """One timer thread shared by batch operators that were given no scheduler.

    A timer thread per partial batch (``TimeoutScheduler``) costs a thread start per
    batch; an event-loop scheduler queues timers on one thread.
    """
    global _shared_timer
    with _shared_lock:
        if _shared_timer is None:
            _shared_timer = EventLoopScheduler(
                lambda target: threading.Thread(
                    target=target, name="mstream-batch-timer", daemon=True
                )
            )
        return _shared_timer


def batch(
    size: int | None = None,
    max_wait: float = 1.0,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[Any]], Observable[Batch]]:
    """Group events (or chunks of events) from a source into batches.

    With ``size`` set, events are grouped into batches of exactly ``size`` (``batched=True``)
    and a partial batch is emitted ``max_wait`` seconds after its first event, so a quiet
    source never holds events. Without ``size``, each chunk the source emitted becomes one
    ``batched=False`` unit (independent events, processed together to keep per-event
    overhead low). Emissions are serialized: the timer and the source never emit at once.

    Args:
        size: events per batch, or ``None`` for no batching.
        max_wait: seconds after which a partial batch is emitted anyway.
        scheduler: the scheduler of the flush timer; flushes run on its thread (a
            connector passes its own event-loop scheduler; a ``TestScheduler`` in tests).

    Example:
        >>> import reactivex
        >>> out = []
        >>> evs = [Event(b"{}", "json") for _ in range(5)]
        >>> reactivex.from_iterable([evs[:3], evs[3:]]).pipe(batch(2)).subscribe(
        ...     lambda b: out.append(len(b)))  # doctest: +ELLIPSIS
        <...>
        >>> out
        [2, 2, 1]
    """

    def operator(source: Observable[Any]) -> Observable[Batch]:
        if size is None:

            def to_unit(item: Any) -> Batch:
                events = item if isinstance(item, list) else [item]
                return Batch(events, [e.ack for e in events if e.ack is not None], batched=False)

            from ._batchwise import map_each

            return map_each(to_unit)(source)

        def subscribe(
            observer: abc.ObserverBase[Batch], sub_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            timer_scheduler = scheduler or _default_timer()
            lock = threading.RLock()
            events: list[Event] = []
            acks: list[Ack] = []
            generation = [0]
            timer = SerialDisposable()
            closed = [False]

            def emit_locked() -> None:
                nonlocal events, acks
                if not events and not acks:
                    return
                out = Batch(events, acks, batched=True)
                events, acks = [], []
                generation[0] += 1
                observer.on_next(out)

            def on_timer(_: abc.SchedulerBase, state: Any) -> None:
                with lock:
                    if state == generation[0] and not closed[0]:
                        emit_locked()

            def on_next(item: Any) -> None:
                with lock:
                    items = item if isinstance(item, list) else [item]
                    for event in items:
                        if not events:
                            timer.disposable = timer_scheduler.schedule_relative(
                                timedelta(seconds=max_wait), on_timer, generation[0]
                            )
                        events.append(event)
                        if event.ack is not None:
                            acks.append(event.ack)
                        if len(events) >= size:
                            emit_locked()

            def on_error(error: Exception) -> None:
                with lock:
                    closed[0] = True
                observer.on_error(error)

            def on_completed() -> None:
                with lock:
                    emit_locked()
                    closed[0] = True
                observer.on_completed()

            subscription = source.subscribe(
                on_next, on_error, on_completed, scheduler=sub_scheduler
            )
            return CompositeDisposable(subscription, timer)

        return Observable(subscribe)

    return operator
