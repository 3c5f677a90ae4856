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
    batch; an event-loop scheduler queues timers on one thread. The thread is a daemon:
    it holds no data (a partial batch lives in its operator and is flushed when its source
    completes), so it need not keep the process alive.
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
    """Group events (or chunks of events, as lists or batches) from a source into batches.

    With ``size`` set, events are grouped into batches of exactly ``size`` (``batched=True``)
    and a partial batch is emitted ``max_wait`` seconds after its first event, so a quiet
    source never holds events. Without ``size``, each chunk the source emitted becomes one
    ``batched=False`` unit (independent events, processed together to keep per-event
    overhead low). Emissions are serialized: the timer and the source never emit at once.

    Each subscription keeps at most one pending timer, however many batches fill up
    before it is due: it is armed for the deadline of a partial batch, and when it fires
    it emits the partial batch then pending if that batch is ``max_wait`` old, or else is
    re-armed for that batch's deadline (a batch begun after the timer was armed).

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
                if isinstance(item, Batch):  # a source's chunk, already a unit
                    return item
                events = item if isinstance(item, list) else [item]
                return Batch(events, [e.ack for e in events if e.ack is not None], batched=False)

            from ._batchwise import map_each

            return map_each(to_unit)(source)

        def subscribe(
            observer: abc.ObserverBase[Batch], sub_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            timer_scheduler = scheduler or _default_timer()
            wait = timedelta(seconds=max_wait)
            lock = threading.RLock()
            events: list[Event] = []
            acks: list[Ack] = []
            started = [timer_scheduler.now]  # when the partial batch got its first event
            armed = [False]  # a timer is pending (at most one per subscription)
            timer = SerialDisposable()
            closed = [False]

            def emit_locked() -> None:
                nonlocal events, acks
                if not events and not acks:
                    return
                out = Batch(events, acks, batched=True)
                events, acks = [], []
                observer.on_next(out)

            def arm_locked(after: timedelta) -> None:
                armed[0] = True
                timer.disposable = timer_scheduler.schedule_relative(after, on_timer)

            def on_timer(_scheduler: abc.SchedulerBase, _state: Any) -> None:
                with lock:
                    armed[0] = False
                    if closed[0] or not events:
                        return
                    left = started[0] + wait - timer_scheduler.now
                    if left > timedelta(0):
                        arm_locked(left)
                    else:
                        emit_locked()

            def on_next(item: Any) -> None:
                with lock:
                    if isinstance(item, Batch):
                        items = item.events
                    else:
                        items = item if isinstance(item, list) else [item]
                    for event in items:
                        if not events:
                            started[0] = timer_scheduler.now
                            if not armed[0]:
                                arm_locked(wait)
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
