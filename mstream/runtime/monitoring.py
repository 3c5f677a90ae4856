"""The original's monitoring shapes: ``GET /stats`` and ``GET /jobs/{name}/metrics``.

Both are computed from the job descriptions the manager gives (its counters), at read
time. "Processed" events are the ones delivered to every sink (``events_out``), and
processed bytes the payload bytes read from the source (``bytes_in``), both since the job
started; ``current_lag_seconds`` is now minus the newest source timestamp read
(:mod:`mstream.core.source_time`), ``0.0`` while there is none or the job is not running.

Example:
    >>> job = {"name": "j", "state": "running", "counters": {"events_out": 5, "bytes_in": 80,
    ...        "errors": 1, "throughput_per_sec": 2.5, "last_event_time": 0.0,
    ...        "last_source_time": 90.0}}
    >>> job_metrics(job, now=100.0)["current_lag_seconds"], job_metrics(job)["last_processed_at"]
    (10.0, '1970-01-01T00:00:00Z')
    >>> stats([job], uptime=3.0)["running_jobs"]
    1
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

ACTIVE_STATES = ("starting", "running", "retrying", "stopping")


def job_metrics(job: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
    """``GET /jobs/{name}/metrics`` of one job description."""
    counters = job.get("counters") or {}
    stamp = counters.get("last_source_time")
    lag = 0.0
    if stamp is not None and job.get("state") in ACTIVE_STATES:
        lag = max(0.0, (time.time() if now is None else now) - float(stamp))
    last = counters.get("last_event_time")
    return {
        "events_processed": int(counters.get("events_out") or 0),
        "bytes_processed": int(counters.get("bytes_in") or 0),
        "current_lag_seconds": round(lag, 3),
        "throughput_per_second": float(counters.get("throughput_per_sec") or 0.0),
        "total_errors": int(counters.get("errors") or 0),
        "last_processed_at": _iso(last) if last is not None else None,
    }


def stats(jobs: Iterable[Mapping[str, Any]], uptime: float) -> dict[str, Any]:
    """``GET /stats``: totals across every job and how many are running, stopped, failed."""
    events = size = running = stopped = failed = 0
    for job in jobs:
        counters = job.get("counters") or {}
        events += int(counters.get("events_out") or 0)
        size += int(counters.get("bytes_in") or 0)
        state = job.get("state")
        if state in ACTIVE_STATES:
            running += 1
        elif state == "failed":
            failed += 1
        else:
            stopped += 1
    return {
        "total_events_processed": events,
        "total_bytes_processed": size,
        "uptime_seconds": round(uptime, 1),
        "running_jobs": running,
        "stopped_jobs": stopped,
        "error_jobs": failed,
    }


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
