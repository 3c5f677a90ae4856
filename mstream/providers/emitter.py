"""Emitter: a pipeline's ``emit`` called on a thread of its own, in the order handed over.

``emit`` runs the pipeline on the calling thread and can block as long as a slow sink
takes. A source whose reading must go on meanwhile (a Kafka consumer must poll within
``max.poll.interval.ms``; a change stream's next ``getMore`` should be on its way while
the pipeline works on the last chunk) hands its chunks to an :class:`Emitter` instead.

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

import queue
import threading
from collections.abc import Callable
from typing import Any


class Emitter:
    """Calls ``emit`` with each chunk on a thread of its own, in the order handed over.

    A chunk still queued when :meth:`close` is called is not emitted: its events were
    never acknowledged, so the source's position never passes them and they are read
    again (:meth:`finish` emits the queued chunks first). The first exception ``emit``
    raises stops the thread and is raised again on the reading thread by :meth:`check`.

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

    def finish(self) -> None:
        """Emit the chunks queued so far, then end (:meth:`close` drops them instead)."""
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
            except BaseException as exc:  # raised again on the reading thread
                self.error = exc
                return
