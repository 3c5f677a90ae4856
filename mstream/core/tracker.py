"""Tracking which source positions are safe to checkpoint.

A position may be saved only when it and every earlier position of the same stream
(Kafka partition, file, change stream) have been acknowledged. Acks may arrive out of
order (asynchronous sinks, batches finishing in any order); the tracker keeps the
highest contiguous acknowledged position.

Example:
    >>> t = PositionTracker()
    >>> a, b, c = t.add(10), t.add(11), t.add(12)
    >>> t.ack(c); t.committed() is None
    True
    >>> t.ack(a); t.committed()
    10
    >>> t.ack(b); t.committed()
    12
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class PositionTracker:
    """Thread-safe tracker of acknowledged positions for one ordered stream.

    ``add`` is called in source order and returns a sequence number; ``ack`` may be called
    from any thread, in any order. ``committed`` is the last position whose predecessors
    are all acknowledged.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._positions: deque[Any] = deque()  # positions of seqs [_base, _next)
        self._done: deque[bool] = deque()
        self._base = 0
        self._next = 0
        self._committed: Any = None
        self._changed = False

    def add(self, position: Any) -> int:
        """Register the next position in source order; returns its sequence number."""
        with self._lock:
            seq = self._next
            self._next += 1
            self._positions.append(position)
            self._done.append(False)
            return seq

    def ack(self, seq: int) -> None:
        """Mark a sequence number as acknowledged (idempotent)."""
        with self._lock:
            index = seq - self._base
            if index < 0 or index >= len(self._done):
                return
            self._done[index] = True
            if index == 0:
                self._advance()

    def _advance(self) -> None:
        positions, done = self._positions, self._done
        last = None
        count = 0
        while done and done[0]:
            done.popleft()
            last = positions.popleft()
            count += 1
        if count:
            self._base += count
            self._committed = last
            self._changed = True

    def committed(self) -> Any:
        """The highest position with every earlier position acknowledged, or ``None``."""
        with self._lock:
            return self._committed

    def take_if_changed(self) -> tuple[bool, Any]:
        """Return ``(changed, committed)`` and clear the changed flag (for periodic saves)."""
        with self._lock:
            changed, self._changed = self._changed, False
            return changed, self._committed

    @property
    def pending(self) -> int:
        """How many added positions are not yet committed."""
        with self._lock:
            return len(self._done)

    def reset(self) -> None:
        """Forget every pending position (after a Kafka rebalance revoked the partition)."""
        with self._lock:
            self._base = self._next
            self._positions.clear()
            self._done.clear()
