"""The hand-over between a Kafka source's poll thread and the pipeline.

``emit`` runs the pipeline on the calling thread (batching, conversions, middlewares,
synchronous sink writes) and blocks while the pipeline holds ``max_in_flight`` batches,
so one call can last as long as a slow sink takes. A consumer that does not poll for
``max.poll.interval.ms`` is dropped from its group, so the poll thread never calls
``emit``: it hands each chunk to an :class:`Emitter`, which calls ``emit`` on a thread of
its own, and counts the chunks not yet acknowledged with :class:`InFlight` to decide
when to pause its partitions.

Example:
    >>> got, both = [], threading.Event()
    >>> def emit(chunk):
    ...     got.append(chunk)
    ...     if len(got) == 2:
    ...         both.set()
    >>> emitter = Emitter(emit, "demo")
    >>> emitter.start(); emitter.put(["a"]); emitter.put(["b"]); both.wait(5)
    True
    >>> emitter.close(); emitter.join(5); got, emitter.dropped()
    ([['a'], ['b']], 0)
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any


class InFlight:
    """How many chunks were handed to the pipeline and are not wholly acknowledged yet.

    Thread-safe: :meth:`open` and :meth:`wait_for_at_most` run on the poll thread, the
    callbacks :meth:`open` returns on any thread (a sink client's).

    Example:
        >>> flight = InFlight()
        >>> part_done = flight.open(2)  # a chunk holding two partitions' records
        >>> flight.count
        1
        >>> part_done(); flight.count
        1
        >>> part_done(); flight.count
        0
    """

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._count = 0

    def open(self, parts: int) -> Callable[[], None]:
        """Count one chunk; returns the callback each of its ``parts`` calls once when done."""
        with self._changed:
            self._count += 1
        done = itertools.count(1)  # ``next`` on it is atomic

        def part_done() -> None:
            if next(done) == parts:
                with self._changed:
                    self._count -= 1
                    self._changed.notify_all()

        return part_done

    def wait_for_at_most(self, limit: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until at most ``limit`` chunks are in flight.

        Returns:
            Whether the count is at most ``limit`` now.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._count <= limit, timeout)

    @property
    def count(self) -> int:
        """Chunks handed over and not wholly acknowledged."""
        return self._count


class Emitter:
    """Calls ``emit`` with each chunk on a thread of its own, in the order handed over.

    A chunk still queued when :meth:`close` is called is not emitted: its events were
    never acknowledged, so its offsets are never committed and it is read again by the
    next consumer of the partition. The first exception ``emit`` raises stops the thread
    and is raised again on the poll thread by :meth:`check`.

    Args:
        emit: the pipeline's ``emit`` (:data:`~mstream.providers.base.Emit`).
        name: the thread's name.
    """

    def __init__(self, emit: Callable[[Any], None], name: str) -> None:
        self._emit = emit
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()  # chunks; None ends
        self._closing = threading.Event()
        self.error: BaseException | None = None
        self._skipped = 0  # taken off the queue after close, not emitted
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def put(self, chunk: Any) -> None:
        """Queue ``chunk`` for ``emit`` (never blocks)."""
        self._queue.put(chunk)

    def check(self) -> None:
        """Raise the exception ``emit`` raised, if it did."""
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Emit nothing more: the chunk being emitted finishes, queued ones are dropped."""
        self._closing.set()
        self._queue.put(None)

    @property
    def alive(self) -> bool:
        """Whether the thread is still running (inside ``emit`` or waiting for a chunk)."""
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (after :meth:`close` or a failed ``emit``)."""
        self._thread.join(timeout)

    def dropped(self) -> int:
        """Chunks queued but never emitted (call once the thread has ended)."""
        count = self._skipped
        while True:
            try:
                chunk = self._queue.get_nowait()
            except queue.Empty:
                return count
            count += chunk is not None

    def _loop(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            if self._closing.is_set():
                self._skipped += 1
                return
            try:
                self._emit(chunk)
            except BaseException as exc:  # raised again on the poll thread
                self.error = exc
                return
