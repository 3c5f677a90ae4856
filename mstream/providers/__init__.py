"""Providers by name: each module declares a :class:`~mstream.providers.base.ProviderSpec`.

Provider modules are imported on first use, so a config that uses only the embedded
providers never imports the Kafka, MongoDB or Pub/Sub clients.

Example:
    >>> get_provider("file").roles()
    ['source', 'sink']
    >>> sorted(PROVIDER_MODULES)[:3]
    ['file', 'generator', 'http']
"""

from __future__ import annotations

import importlib

from mstream.errors import ConfigError
from mstream.providers.base import (
    Middleware,
    ProviderSpec,
    Sink,
    Source,
    StepContext,
    SyncSink,
)

PROVIDER_MODULES: dict[str, str] = {
    "generator": "mstream.providers.generator",
    "file": "mstream.providers.file",
    "stdout": "mstream.providers.stdout",
    "http": "mstream.providers.http",
    "udf": "mstream.providers.udf",
    "kafka": "mstream.providers.kafka",
    "mongodb": "mstream.providers.mongodb",
    "pubsub": "mstream.providers.pubsub",
}

_loaded: dict[str, ProviderSpec] = {}


def get_provider(name: str) -> ProviderSpec:
    """The provider called ``name``.

    Raises:
        ConfigError: no such provider, or its module is not available in this install.
    """
    spec = _loaded.get(name)
    if spec is not None:
        return spec
    module_name = PROVIDER_MODULES.get(name)
    if module_name is None:
        raise ConfigError(
            f"unknown provider {name!r}; expected one of: {', '.join(PROVIDER_MODULES)}"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"provider {name!r} is not available in this install ({exc})") from exc
    spec = module.PROVIDER
    _loaded[name] = spec
    return spec


__all__ = [
    "PROVIDER_MODULES",
    "Middleware",
    "ProviderSpec",
    "Sink",
    "Source",
    "StepContext",
    "SyncSink",
    "get_provider",
]
