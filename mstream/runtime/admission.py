"""What a definition created through the API may reach: the operator's files and hosts.

A service or job created through the API is checked here before it exists: a ``file``
service's ``base_dir`` and a ``udf`` service's ``script_path`` must lie inside the file
roots, an ``http`` service may only call the hosts in ``[system] http_allowed_hosts``, and
every file a job would read or write must be allowed by the file access policy
(:mod:`mstream.file_access`). Config-file definitions are the operator's own and are not
checked here.

Example:
    >>> from mstream.config import parse_config, parse_service
    >>> cfg = parse_config({"system": {"http_allowed_hosts": ["api.example.com"]}})
    >>> check_service(parse_service({"name": "h", "provider": "http",
    ...     "host": "http://169.254.169.254"}, ""), cfg)
    Traceback (most recent call last):
    ...
    mstream.errors.ConfigError: host: '169.254.169.254' is not in [system] http_allowed_hosts (allowed: api.example.com); http services created through the API may only call the hosts the operator allowed
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from mstream import file_access
from mstream.config.model import Config, ConnectorConfig, ServiceConfig
from mstream.errors import ConfigError


def check_service(service: ServiceConfig, config: Config) -> None:
    """Refuse a service whose files or host the operator did not open to the API.

    Raises:
        ConfigError: ``field: reason``.
    """
    if service.provider == "file":
        file_access.current().check_base_dir(service.options.get("base_dir"), "base_dir")
    if service.provider == "udf" and service.options.get("script_path"):
        file_access.current().check_base_dir(service.options["script_path"], "script_path")
    if service.provider == "http":
        check_egress(str(service.options.get("host", "")), config.system.http_allowed_hosts)


def check_egress(url: str, allowed: Sequence[str]) -> None:
    """An ``http`` service created through the API may only call the ``allowed`` hosts
    (``"*"`` allows any; none by default).

    Raises:
        ConfigError: ``host: ...`` when the host is not allowed.
    """
    host = (urlsplit(url).hostname or "").lower()
    if "*" in allowed or host in {h.lower() for h in allowed}:
        return
    shown = ", ".join(allowed) if allowed else "none"
    raise ConfigError(
        f"host: {host[:100]!r} is not in [system] http_allowed_hosts (allowed: {shown}); "
        "http services created through the API may only call the hosts the operator allowed"
    )


def check_files(definition: ConnectorConfig, services: Mapping[str, ServiceConfig]) -> None:
    """Refuse, naming the field, a file path the file access policy does not allow.

    Raises:
        ConfigError: one ``path: reason`` line per refused path.
    """
    from mstream.providers.file import resolve_path

    steps: list[tuple[str, str, str]] = [
        ("source.resource", definition.source.service_name, definition.source.resource)
    ]
    steps += [
        (f"sinks[{i}].resource", s.service_name, s.resource) for i, s in enumerate(definition.sinks)
    ]
    steps += [
        (f"schemas[{i}].resource", s.service_name, s.resource)
        for i, s in enumerate(definition.schemas)
    ]
    if definition.dead_letter is not None:
        dl = definition.dead_letter
        steps.append(("dead_letter.resource", dl.service_name, dl.resource))
    problems = []
    for field, service_name, resource in steps:
        service = services.get(service_name)
        if service is None or service.provider != "file" or not resource:
            continue
        try:
            resolve_path(service, resource)
        except ConfigError as exc:
            problems.append(f"{field}: " + "; ".join(exc.problems))
    if problems:
        raise ConfigError(problems)
