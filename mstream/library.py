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

from reactivex import Observable

from mstream.config import Config, StepConfig, load_config, parse_config, parse_service
from mstream.core import Event
from mstream.encodings import AvroSchema
from mstream.operators import SinkTarget
from mstream.providers import get_provider
from mstream.providers.base import StepContext
from mstream.runtime import JobManager, source_observable
from mstream.stores import Stores


def run_config(
    config: Config | Mapping[str, Any] | str | Path,
    *,
    stores: Stores | None = None,
    wait: bool = True,
    timeout: float | None = None,
) -> JobManager:
    """Start every enabled connector of a configuration in this process.

    Args:
        config: a TOML path, a dict shaped like the config file, or a loaded Config.
        stores: where checkpoints go (in memory when omitted).
        wait: block until every connector has finished (finite sources).
        timeout: seconds to wait at most.

    Returns:
        The job manager: ``manager.get(name).counters``, ``manager.stop_all()``.
    """
    if isinstance(config, str | Path):
        loaded = load_config(config)
    elif isinstance(config, Config):
        loaded = config
    else:
        loaded = parse_config(config, "<notebook>")
    manager = JobManager(loaded, stores or Stores.in_memory())
    manager.start_enabled()
    if wait:
        manager.wait_all(timeout)
    return manager


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
    """The Observable of a provider's source (chunks of events), run on subscribe.

    Args:
        service: a service definition, as in ``[[services]]``.
        resource: what to read (a path, a topic, a generator shape...).
        encoding: the encoding of the source's payloads.
        stopping: set it to stop an endless source.
    """
    svc, step = _step(service, resource, encoding, options)
    factory = get_provider(svc.provider).source
    if factory is None:
        raise ValueError(f"provider {svc.provider!r} cannot be a source")
    return source_observable(
        factory(svc, step, StepContext("library", "source")), stopping or threading.Event()
    )


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
