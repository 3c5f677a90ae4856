"""Per-connector counters: what came in, what went out, what failed and how fast.

Example:
    >>> c = ConnectorCounters()
    >>> c.record_in(100); c.record_out(100)
    >>> c.snapshot()["events_in"]
    100
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

TOTALLED = ("events_in", "events_out", "bytes_in", "errors", "dead_lettered", "filtered")
"""The counters whose totals are saved with each checkpoint and carried across restarts."""


class ConnectorCounters:
    """Counters of one connector run, safe to update from several threads.

    The fields follow the REST API's ``GET /jobs/{name}`` counters: each counts since the
    job was (re)started; ``totals`` adds what the job's last checkpoint carried, so it
    survives restarts (events delivered again after a crash are counted again).

    Example:
        >>> c = ConnectorCounters()
        >>> c.carry({"events_out": 100, "errors": 2})
        >>> c.record_out(5)
        >>> c.events_out, c.totals()["events_out"], c.totals()["errors"]
        (5, 105, 2)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events_in = 0
        self.events_out = 0
        self.bytes_in = 0
        self.last_source_time: float | None = None
        self.batches_out = 0
        self.errors = 0
        self.dead_lettered = 0
        self.filtered = 0
        self.retries = 0
        self.last_event_time: float | None = None
        self.last_error: str | None = None
        self._samples: deque[tuple[float, int]] = deque(maxlen=64)
        self._carried: dict[str, int] = {}

    def carry(self, totals: Mapping[str, int] | None) -> None:
        """Take the totals a checkpoint saved as the base of :meth:`totals`."""
        with self._lock:
            self._carried = {k: int(totals.get(k, 0)) for k in TOTALLED} if totals else {}

    def totals(self) -> dict[str, int]:
        """Carried totals plus the counts since start (what a checkpoint saves)."""
        with self._lock:
            return {k: self._carried.get(k, 0) + getattr(self, k) for k in TOTALLED}

    def record_in(self, count: int, nbytes: int = 0, source_time: float | None = None) -> None:
        """Count events read from the source, their payload bytes and the newest source
        timestamp among them (see :mod:`mstream.core.source_time`)."""
        with self._lock:
            self.events_in += count
            self.bytes_in += nbytes
            self.last_event_time = time.time()
            if source_time is not None:
                self.last_source_time = source_time

    def lag(self, now: float | None = None) -> float:
        """Seconds between now and the newest source timestamp read (0.0 without one), as
        the original's ``current_lag_seconds``."""
        with self._lock:
            stamp = self.last_source_time
        if stamp is None:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - stamp)

    def record_out(self, count: int) -> None:
        """Count events delivered to every sink."""
        with self._lock:
            self.events_out += count
            self.batches_out += 1

    def record_error(self, reason: str, *, dead_lettered: bool) -> None:
        """Count a bad event (and whether it reached the dead-letter sink)."""
        with self._lock:
            self.errors += 1
            if dead_lettered:
                self.dead_lettered += 1
            self.last_error = reason

    def record_filtered(self, count: int) -> None:
        """Count events a middleware dropped on purpose."""
        with self._lock:
            self.filtered += count

    def record_retry(self) -> None:
        """Count one retried delivery attempt."""
        with self._lock:
            self.retries += 1

    def throughput(self) -> float:
        """Events out per second over the last samples (see :meth:`sample`)."""
        with self._lock:
            if len(self._samples) < 2:
                return 0.0
            (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
            return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def sample(self, now: float | None = None) -> None:
        """Record a throughput sample; call periodically (every second or so)."""
        with self._lock:
            stamp = now if now is not None else time.monotonic()
            self._samples.append((stamp, self.events_out))
            while len(self._samples) > 2 and stamp - self._samples[0][0] > 10.0:
                self._samples.popleft()

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of every counter."""
        rate = self.throughput()
        with self._lock:
            return {
                "events_in": self.events_in,
                "events_out": self.events_out,
                "bytes_in": self.bytes_in,
                "batches_out": self.batches_out,
                "errors": self.errors,
                "dead_lettered": self.dead_lettered,
                "filtered": self.filtered,
                "retries": self.retries,
                "last_event_time": self.last_event_time,
                "last_error": self.last_error,
                "last_source_time": self.last_source_time,
                "throughput_per_sec": round(rate, 1),
                "totals": {k: self._carried.get(k, 0) + getattr(self, k) for k in TOTALLED},
            }
