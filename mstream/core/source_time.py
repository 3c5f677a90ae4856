"""When the source says an event happened: the basis of a job's lag.

Each source puts its own timestamp in the event's metadata: Kafka the message
``timestamp`` (milliseconds), MongoDB change streams ``wall_time`` (a datetime) or
``cluster_time`` (a BSON timestamp, seconds), Pub/Sub ``publish_time`` (a datetime).

Example:
    >>> from datetime import datetime, timezone
    >>> source_time({"timestamp": 1_700_000_000_500})
    1700000000.5
    >>> source_time({"publish_time": datetime(2026, 1, 1, tzinfo=timezone.utc)})
    1767225600.0
    >>> source_time({"offset": 3}) is None
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def source_time(metadata: Mapping[str, Any]) -> float | None:
    """The event's source timestamp as Unix seconds, or ``None`` when it has none."""
    for key in ("wall_time", "publish_time"):
        value = metadata.get(key)
        if isinstance(value, datetime):
            if value.tzinfo is None:  # BSON dates decode as naive UTC
                value = value.replace(tzinfo=UTC)
            return value.timestamp()
    cluster = metadata.get("cluster_time")
    if cluster is not None and hasattr(cluster, "time"):
        return float(cluster.time)
    stamp = metadata.get("timestamp")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool) and stamp > 0:
        return float(stamp) / 1000.0
    return None
