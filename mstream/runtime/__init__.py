"""Running connectors: the pipeline builder, the dead-letter path and the job manager."""

from mstream.runtime.blocking import BlockingJobs
from mstream.runtime.connector import (
    COMPLETED,
    FAILED,
    RETRYING,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    Connector,
)
from mstream.runtime.control import ControlLoop
from mstream.runtime.dead_letter import DeadLetterRouter, dead_letter_record
from mstream.runtime.manager import JobManager
from mstream.runtime.source import source_observable

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
