"""Core model: events, batches, acknowledgement and position tracking, counters."""

from mstream.core.batch import Ack, Batch, Records, SharedAck
from mstream.core.event import Event, LazyEvent
from mstream.core.metrics import ConnectorCounters
from mstream.core.tracker import PositionTracker

__all__ = [
    "Ack",
    "Batch",
    "ConnectorCounters",
    "Event",
    "LazyEvent",
    "PositionTracker",
    "Records",
    "SharedAck",
]
