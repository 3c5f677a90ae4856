"""Loading ``mstream-config.toml``: TOML, ``env:`` values, validation with every problem.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "bad.toml"
    >>> _ = p.write_text('[[services]]\\nname = "g"\\nprovider = "generator"\\ncount = -1\\n')
    >>> try:
    ...     load_config(p)
    ... except ConfigError as exc:
    ...     print(exc.problems[0].split(": ", 1)[1])
    services[0].count: must be at least 0
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mstream.config.model import Config, ConnectorConfig, ServiceConfig
from mstream.config.schema import (
    FileSchema,
    _load,
    parse_connector,
    parse_service,
    parse_system,
    resolve_env,
)
from mstream.errors import ConfigError

DEFAULT_CONFIG = "mstream-config.toml"


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, resolve and validate a config file.

    Raises:
        ConfigError: every problem found, each line prefixed with the file name.
    """
    file = str(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    return parse_config(raw, file, os.environ if environ is None else environ)


def parse_config(
    raw: Mapping[str, Any], file: str = "<memory>", environ: Mapping[str, str] | None = None
) -> Config:
    """Validate an already parsed config document.

    Raises:
        ConfigError: every problem found, each line prefixed with ``file``.
    """
    env = os.environ if environ is None else environ
    try:
        resolved, problems = resolve_env(dict(raw), env)
        data = _load(FileSchema(), resolved, "")
    except ConfigError as exc:
        raise ConfigError([f"{file}: {p}" for p in exc.problems]) from None

    services: dict[str, ServiceConfig] = {}
    for i, raw_service in enumerate(data["services"]):
        try:
            service = parse_service(raw_service, f"services[{i}]")
        except ConfigError as exc:
            problems += exc.problems
            placeholder = _placeholder(raw_service)
            if placeholder is not None:  # known by name: no knock-on "no service named" errors
                services.setdefault(placeholder.name, placeholder)
            continue
        if service.name in services:
            problems.append(f"services[{i}].name: duplicate service name {service.name!r}")
        services[service.name] = service

    connectors: list[ConnectorConfig] = []
    names: set[str] = set()
    for i, raw_connector in enumerate(data["connectors"]):
        try:
            connector = parse_connector(raw_connector, services, f"connectors[{i}]")
        except ConfigError as exc:
            problems += exc.problems
            continue
        if connector.name in names:
            problems.append(f"connectors[{i}].name: duplicate connector name {connector.name!r}")
        names.add(connector.name)
        connectors.append(connector)

    try:
        system = parse_system(data["system"], services)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError([f"{file}: {p}" for p in problems])
    return Config(
        services=tuple(services.values()),
        connectors=tuple(connectors),
        system=system,
        path=file,
    )


def _placeholder(raw: Any) -> ServiceConfig | None:
    """A stand-in for a service that failed validation, so references to it still resolve."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        return None
    from mstream.providers import PROVIDER_MODULES

    provider = raw.get("provider")
    return ServiceConfig(raw["name"], provider if provider in PROVIDER_MODULES else "", {})
