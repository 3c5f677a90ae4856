"""Prometheus metrics: a custom collector that reads the connectors' counters on each scrape.

One metric family per counter, each sample labelled with ``job``:

========================================  =======  ====================================
metric                                    type     from
========================================  =======  ====================================
``mstream_events_in_total``               counter  events read from the source
``mstream_events_out_total``              counter  events delivered to every sink
``mstream_batches_out_total``             counter  batches delivered
``mstream_errors_total``                  counter  bad events
``mstream_dead_lettered_total``           counter  bad events handed to the dead-letter sink
``mstream_filtered_total``                counter  events dropped on purpose by middlewares
``mstream_retries_total``                 counter  retried delivery attempts
``mstream_restarts_total``                counter  pipeline restarts after transport failures
``mstream_throughput_events_per_second``  gauge    events out per second (last ~10 s)
``mstream_last_event_timestamp_seconds``  gauge    when the last event was read
``mstream_job_state``                     gauge    1 for the job's current ``state``
========================================  =======  ====================================

Counters restart from zero when a job is restarted (Prometheus' ``rate()`` handles resets).

Example:
    >>> from mstream.config import parse_config
    >>> from mstream.runtime import JobManager
    >>> from mstream.stores import Stores
    >>> text = generate_latest(metrics_registry(JobManager(parse_config({}), Stores.in_memory())))
    >>> b"# TYPE mstream_events_in_total counter" in text
    True
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mstream.runtime import JobManager
from mstream.runtime.monitoring import job_metrics

COUNTERS = {
    "events_in": "Events read from the source.",
    "events_out": "Events delivered to every sink.",
    "bytes_in": "Payload bytes read from the source.",
    "batches_out": "Batches delivered to every sink.",
    "errors": "Bad events (undecodable, invalid, rejected).",
    "dead_lettered": "Bad events handed to the dead-letter sink.",
    "filtered": "Events dropped on purpose by a middleware.",
    "retries": "Retried delivery attempts.",
}
STATES = ("starting", "running", "retrying", "stopping", "stopped", "completed", "failed")


class JobsCollector(Collector):
    """Reads every job's counters at scrape time.

    Args:
        manager: the job manager whose jobs are reported.
    """

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager

    def describe(self) -> list[Metric]:
        """No fixed description: the families are produced at collect time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One family per counter, each sample labelled with ``job``."""
        jobs = self.manager.list_jobs()
        counters = {
            key: CounterMetricFamily(f"mstream_{key}", text, labels=["job"])
            for key, text in COUNTERS.items()
        }
        restarts = CounterMetricFamily(
            "mstream_restarts", "Pipeline restarts after transport failures.", labels=["job"]
        )
        throughput = GaugeMetricFamily(
            "mstream_throughput_events_per_second",
            "Events out per second over the last ~10 s.",
            labels=["job"],
        )
        last_event = GaugeMetricFamily(
            "mstream_last_event_timestamp_seconds",
            "When the job last read an event (Unix time).",
            labels=["job"],
        )
        lag = GaugeMetricFamily(
            "mstream_lag_seconds",
            "Now minus the newest source timestamp read (as /jobs/{name}/metrics).",
            labels=["job"],
        )
        state = GaugeMetricFamily(
            "mstream_job_state", "1 for the job's current state.", labels=["job", "state"]
        )
        for job in jobs:
            name = job["name"]
            snap = job["counters"]
            for key, family in counters.items():
                family.add_metric([name], float(snap.get(key) or 0))
            restarts.add_metric([name], float(job.get("restarts") or 0))
            throughput.add_metric([name], float(snap.get("throughput_per_sec") or 0.0))
            if snap.get("last_event_time") is not None:
                last_event.add_metric([name], float(snap["last_event_time"]))
            lag.add_metric([name], job_metrics(job)["current_lag_seconds"])
            for candidate in STATES:
                state.add_metric([name, candidate], 1.0 if job["state"] == candidate else 0.0)
        yield from counters.values()
        yield restarts
        yield throughput
        yield last_event
        yield lag
        yield state


def metrics_registry(manager: JobManager) -> CollectorRegistry:
    """A registry (not the global one) holding a :class:`JobsCollector` of ``manager``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(manager))
    return registry


__all__ = ["JobsCollector", "generate_latest", "metrics_registry"]
