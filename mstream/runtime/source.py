"""A source as an Observable: ``subscribe`` returns at once, ``dispose`` stops it.

Example:
    >>> import threading
    >>> import reactivex.operators as rx_ops
    >>> from mstream.core import Batch, Event
    >>> from mstream.providers.base import Source
    >>> class Endless(Source):
    ...     def run(self, emit, stopping):
    ...         while not stopping.is_set(): emit([Event(b"1", "json")])
    >>> stop = threading.Event()
    >>> got = source_observable(Endless(), stop).pipe(rx_ops.take(3), rx_ops.to_list()).run()
    >>> len(got), stop.wait(5)
    (3, True)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from mstream.core import Batch, Event
from mstream.providers.base import Source

log = logging.getLogger("mstream.connector")


def source_observable(
    source: Source,
    stopping: threading.Event | None = None,
    on_open: Callable[[], None] | None = None,
    *,
    on_exit: Callable[[], None] | None = None,
    thread_name: str = "mstream-source",
) -> Observable[list[Event] | Batch]:
    """An Observable of ``source``'s chunks whose :meth:`subscribe` returns at once.

    The source is opened, run and closed on a thread of its own (or scheduled on the
    subscriber's scheduler, when one is given); disposing the subscription sets the stop
    signal and drops whatever the source emits afterwards, as RxPY's ``from_iterable``
    checks ``disposed``. So stock operators such as ``take(3)`` stop the source.

    Args:
        source: the source to run (one subscription per instance).
        stopping: the source's stop signal (a fresh one when omitted); disposing sets it.
        on_open: called on the source thread once the source is open.
        on_exit: called on the source thread last, once the source is closed (its
            unacknowledged messages handed back).
        thread_name: the name of the source thread.
    """
    halt = stopping if stopping is not None else threading.Event()

    def subscribe(
        observer: abc.ObserverBase[list[Event] | Batch], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        disposed = threading.Event()

        def emit(events: list[Event] | Batch) -> None:
            # after dispose nobody acknowledges: those positions are never committed and
            # are read again by the next run (at-least-once)
            if not disposed.is_set():
                observer.on_next(events)

        def read(*_: Any) -> None:
            try:
                source.open()
                if on_open is not None:
                    on_open()
                source.run(emit, halt)
            except Exception as exc:
                if not disposed.is_set():
                    observer.on_error(exc)
            else:
                if not disposed.is_set():
                    observer.on_completed()
            finally:
                try:
                    source.close()
                except Exception:  # closing must not hide the outcome
                    log.debug("source close failed", exc_info=True)
                if on_exit is not None:
                    on_exit()

        def dispose() -> None:
            disposed.set()
            halt.set()

        if scheduler is not None:
            scheduler.schedule(read)
        else:
            # not a daemon: synchronous sinks write on this thread
            threading.Thread(target=read, name=thread_name).start()
        return Disposable(dispose)

    return reactivex.create(subscribe)
