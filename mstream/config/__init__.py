"""Configuration: TOML loading, ``env:`` values and marshmallow validation.

Example:
    >>> cfg = parse_config({"services": [{"name": "g", "provider": "generator", "count": 3}]})
    >>> cfg.service("g").options["count"]
    3
"""

from mstream.config.loader import DEFAULT_CONFIG, load_config, parse_config
from mstream.config.model import (
    BatchConfig,
    Config,
    ConnectorConfig,
    DeadLetterConfig,
    LogsConfig,
    SchemaRef,
    ServiceConfig,
    StepConfig,
    StoreRef,
    SystemConfig,
)
from mstream.config.schema import flatten_errors, parse_connector, parse_service, parse_system

__all__ = [
    "DEFAULT_CONFIG",
    "BatchConfig",
    "Config",
    "ConnectorConfig",
    "DeadLetterConfig",
    "LogsConfig",
    "SchemaRef",
    "ServiceConfig",
    "StepConfig",
    "StoreRef",
    "SystemConfig",
    "flatten_errors",
    "load_config",
    "parse_config",
    "parse_connector",
    "parse_service",
    "parse_system",
]
