"""Core model: events, batches, acknowledgement and position tracking, counters."""

from mstream.core.event import Ack, Batch, Event, LazyEvent, SharedAck
from mstream.core.metrics import ConnectorCounters
from mstream.core.tracker import PositionTracker

__all__ = [
    "Ack",
    "Batch",
    "ConnectorCounters",
    "Event",
    "LazyEvent",
    "PositionTracker",
    "SharedAck",
]
