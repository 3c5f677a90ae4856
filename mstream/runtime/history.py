"""The last hour of each job's throughput and lag, for the dashboard's chart.

:class:`MetricsHistory` keeps one point every ``every`` seconds (10) per job, ``keep``
points (360: an hour). The manager feeds it from its once-a-second sample on the control
loop, so it needs no lock.

Example:
    >>> history = MetricsHistory(every=10, keep=2)
    >>> for t in (0, 5, 10, 20, 30):
    ...     history.offer("j", t, {"throughput_per_second": t, "current_lag_seconds": 0.5})
    >>> history.points("j")
    [[20, 20.0, 0.5], [30, 30.0, 0.5]]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any


class MetricsHistory:
    """Throughput and lag points per job (control-loop only).

    Args:
        every: seconds between kept points.
        keep: points kept per job.
    """

    def __init__(self, every: float = 10.0, keep: int = 360) -> None:
        self.every = every
        self.keep = keep
        self._points: dict[str, deque[list[float]]] = {}
        self._last: dict[str, float] = {}

    def offer(self, job: str, now: float, metrics: Mapping[str, Any]) -> None:
        """Keep a point for ``job`` if ``every`` seconds have passed since its last one."""
        last = self._last.get(job)
        if last is not None and now - last < self.every:
            return
        self._last[job] = now
        points = self._points.setdefault(job, deque(maxlen=self.keep))
        points.append(
            [
                now,
                float(metrics.get("throughput_per_second") or 0.0),
                float(metrics.get("current_lag_seconds") or 0.0),
            ]
        )

    def points(self, job: str) -> list[list[float]]:
        """``[time, events/s, lag s]`` points of ``job``, oldest first."""
        return [list(p) for p in self._points.get(job, ())]

    def forget(self, job: str) -> None:
        """Drop a deleted job's points."""
        self._points.pop(job, None)
        self._last.pop(job, None)
