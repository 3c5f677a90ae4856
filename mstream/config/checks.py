"""Offline checks that read files: what ``mstream validate`` and ``POST /jobs`` add to the
config's own validation, so a run does not fail for a reason knowable before.

A ``udf`` step's script exists and compiles; a schema kept in a file parses. They run
when a config is validated (the CLI) or a job is created through the API; loading a
config to run it leaves them to the job's start, where the job fails with the same words.

Example:
    >>> from mstream.config import parse_config
    >>> cfg = parse_config({"services": [{"name": "s", "provider": "udf",
    ...     "engine": {"kind": "lua"}, "script_path": "examples/udf"},
    ...     {"name": "g", "provider": "generator"}, {"name": "o", "provider": "stdout"}],
    ...     "connectors": [{"name": "c", "source": {"service_name": "g", "output_encoding": "json"},
    ...     "middlewares": [{"service_name": "s", "resource": "nope.lua", "output_encoding": "json"}],
    ...     "sinks": [{"service_name": "o", "output_encoding": "json"}]}]})
    >>> [p[:60] for p in offline_problems(cfg)]
    ["connectors[0].middlewares[0].resource: udf script 'nope.lua'"]
"""

from __future__ import annotations

from mstream.config.model import Config, ConnectorConfig, ServiceConfig
from mstream.errors import ConfigError


def connector_problems(
    connector: ConnectorConfig, services: dict[str, ServiceConfig], path: str
) -> list[str]:
    """The file-reading checks of one connector (``path`` prefixes each problem)."""
    from mstream.providers import get_provider

    problems: list[str] = []
    steps = [(f"{path}middlewares[{i}]", s) for i, s in enumerate(connector.middlewares)]
    for where, step in steps:
        service = services.get(step.service_name)
        spec = get_provider(service.provider) if service is not None and service.provider else None
        if spec is not None and spec.check_step is not None and service is not None:
            problems += [f"{where}.resource: {p}" for p in spec.check_step(service, step.resource)]
    for i, ref in enumerate(connector.schemas):
        service = services.get(ref.service_name)
        if service is None or service.provider != "file":
            continue  # MongoDB and Pub/Sub schemas are checked online
        loader = get_provider("file").schema_loader
        try:
            if loader is not None:
                loader(service, ref.resource)
        except ConfigError as exc:
            problems += [f"{path}schemas[{i}].resource: {p}" for p in exc.problems]
    return problems


def offline_problems(config: Config) -> list[str]:
    """Every file-reading problem of ``config``, one ``path: message`` line each."""
    services = {s.name: s for s in config.services}
    problems: list[str] = []
    for c, connector in enumerate(config.connectors):
        problems += connector_problems(connector, services, f"connectors[{c}].")
    return problems
