"""Using mstream from a script or a notebook.

Two ways in:

* run a configuration in-process: :func:`run_config` takes a TOML path, a dict in the
  config file's shape or a :class:`~mstream.config.Config`, starts its connectors and
  (optionally) waits for them;
* compose a pipeline in code: :func:`source` gives the Observable of a provider's source,
  :func:`sink` a sink target, and ``mstream.operators`` the steps in between.

Example:
    >>> import tempfile, pathlib
    >>> from mstream import operators as mo
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
    >>> files = {"name": "files", "provider": "file"}
    >>> _ = source({"name": "gen", "provider": "generator", "count": 3}, resource="counter").pipe(
    ...     mo.batch(),
    ...     mo.deliver([sink(files, resource=str(out))], reject=print),
    ... ).run()
    >>> out.read_text().splitlines()
    ['{"n":0}', '{"n":1}', '{"n":2}']
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import reactivex
import reactivex.operators as rx_ops
from reactivex import Observable

from mstream.config import Config, StepConfig, load_config, parse_config, parse_service
from mstream.core import Batch, Event
from mstream.encodings import AvroSchema
from mstream.operators import SinkTarget
from mstream.providers import get_provider
from mstream.providers.base import StepContext
from mstream.runtime import BlockingJobs, JobManager, source_observable
from mstream.stores import Stores


def run_config(
    config: Config | Mapping[str, Any] | str | Path,
    *,
    stores: Stores | None = None,
    wait: bool = True,
    timeout: float | None = None,
) -> BlockingJobs:
    """Start every enabled connector of a configuration in this process.

    Args:
        config: a TOML path, a dict shaped like the config file, or a loaded Config.
        stores: where checkpoints go (in memory when omitted).
        wait: block until every connector has finished (finite sources).
        timeout: seconds to wait at most.

    Returns:
        The jobs (the job manager, run on a control loop thread of its own):
        ``jobs.get(name).counters``, ``jobs.stop_all()``, ``jobs.close()``.
    """
    if isinstance(config, str | Path):
        loaded = load_config(config)
    elif isinstance(config, Config):
        loaded = config
    else:
        loaded = parse_config(config, "<notebook>")
    jobs = BlockingJobs(JobManager(loaded, stores or Stores.in_memory()))
    jobs.start_enabled()
    if wait:
        jobs.wait_all(timeout)
    return jobs


def _step(
    service: Mapping[str, Any], resource: str, encoding: str, options: Mapping[str, Any]
) -> Any:
    svc = parse_service(dict(service), "service")
    step = StepConfig(
        service_name=svc.name,
        resource=resource,
        output_encoding=encoding,
        options=dict(options),
    )
    return svc, step


def source(
    service: Mapping[str, Any],
    *,
    resource: str = "",
    encoding: str = "json",
    stopping: threading.Event | None = None,
    **options: Any,
) -> Observable[list[Event]]:
    """The Observable of a provider's source (chunks of events).

    Each subscription builds its own source and reads it on a thread of its own;
    :meth:`subscribe` returns at once and disposing the subscription stops the source, so
    stock operators work: ``source(...).pipe(rx.operators.take(3))`` reads three chunks
    and stops.

    Acknowledgements: every event carries an ``ack``; a source that commits (Kafka,
    Pub/Sub, MongoDB resume tokens) commits only past acknowledged events. An operator
    that drops events without acknowledging them (stock ``filter``, ``take``) leaves
    their positions uncommitted: they are read again next time (at-least-once, never
    lost). To drop events for good use :func:`mstream.operators.filter`, which
    acknowledges what it drops.

    Args:
        service: a service definition, as in ``[[services]]``.
        resource: what to read (a path, a topic, a generator shape...).
        encoding: the encoding of the source's payloads.
        stopping: set it to stop an endless source (disposing sets it too).

    Example:
        >>> import reactivex.operators as rx_ops
        >>> endless = source({"name": "gen", "provider": "generator"}, resource="counter")
        >>> chunks = endless.pipe(rx_ops.take(3), rx_ops.to_list()).run()
        >>> len(chunks)
        3
    """
    svc, step = _step(service, resource, encoding, options)
    factory = get_provider(svc.provider).source
    if factory is None:
        raise ValueError(f"provider {svc.provider!r} cannot be a source")

    def subscribe(_: Any = None) -> Observable[list[Event]]:
        halt = stopping if stopping is not None else threading.Event()
        ctx = StepContext("library", "source", stopping=halt)
        chunks = source_observable(factory(svc, step, ctx), halt, thread_name="mstream-source")
        return chunks.pipe(rx_ops.map(_events_of))

    return reactivex.defer(subscribe)


def _events_of(chunk: list[Event] | Batch) -> list[Event]:
    """A source's chunk as the list of its events (a chunk of records makes them)."""
    return chunk.events if isinstance(chunk, Batch) else chunk


def sink(
    service: Mapping[str, Any],
    *,
    resource: str = "",
    encoding: str = "json",
    schema: AvroSchema | None = None,
    **options: Any,
) -> SinkTarget:
    """An opened sink target for :func:`mstream.operators.deliver`.

    Args:
        service: a service definition, as in ``[[services]]``.
        resource: where to write (a path, a topic, a collection...).
        encoding: the encoding the sink writes.
        schema: the Avro schema events are written with (Avro sinks).
    """
    svc, step = _step(service, resource, encoding, options)
    factory = get_provider(svc.provider).sink
    if factory is None:
        raise ValueError(f"provider {svc.provider!r} cannot be a sink")
    target = factory(svc, step, StepContext("library", "sink"))
    target.open()
    return SinkTarget(target, encoding, schema, svc.name)
