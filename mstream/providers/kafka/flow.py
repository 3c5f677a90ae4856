"""How many chunks a Kafka source's poll thread has handed to the pipeline.

``emit`` runs the pipeline on the calling thread (batching, conversions, middlewares,
synchronous sink writes) and blocks while the pipeline holds ``max_in_flight`` batches,
so one call can last as long as a slow sink takes. A consumer that does not poll for
``max.poll.interval.ms`` is dropped from its group, so the poll thread never calls
``emit``: it hands each chunk to an :class:`~mstream.providers.emitter.Emitter`, which
calls ``emit`` on a thread of its own, and counts the chunks not yet acknowledged with
:class:`InFlight` to decide when to pause its partitions.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable


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
