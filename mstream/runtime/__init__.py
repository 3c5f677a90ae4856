"""Running connectors: the pipeline builder, the dead-letter path and the job manager."""

from mstream.runtime.connector import (
    COMPLETED,
    FAILED,
    RETRYING,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    Connector,
    source_observable,
)
from mstream.runtime.control import ControlLoop
from mstream.runtime.dead_letter import DeadLetterRouter, dead_letter_record
from mstream.runtime.manager import BlockingJobs, JobManager

__all__ = [
    "COMPLETED",
    "FAILED",
    "RETRYING",
    "RUNNING",
    "STARTING",
    "STOPPED",
    "STOPPING",
    "BlockingJobs",
    "Connector",
    "ControlLoop",
    "DeadLetterRouter",
    "JobManager",
    "dead_letter_record",
    "source_observable",
]
