"""Running connectors: the pipeline builder, the dead-letter path and the job manager."""

from mstream.runtime.connector import (
    COMPLETED,
    FAILED,
    RUNNING,
    STOPPED,
    STOPPING,
    Connector,
    source_observable,
)
from mstream.runtime.dead_letter import DeadLetterRouter, dead_letter_record
from mstream.runtime.manager import JobManager

__all__ = [
    "COMPLETED",
    "FAILED",
    "RUNNING",
    "STOPPED",
    "STOPPING",
    "Connector",
    "DeadLetterRouter",
    "JobManager",
    "dead_letter_record",
    "source_observable",
]
