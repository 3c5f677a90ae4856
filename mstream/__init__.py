"""mstream: a data streaming bridge built on reactivex pipelines.

Use it as a service (the ``mstream`` command) or as a library::

    >>> import mstream
    >>> cfg = mstream.parse_config({
    ...     "services": [{"name": "gen", "provider": "generator", "count": 5}],
    ...     "connectors": [{"name": "demo",
    ...         "source": {"service_name": "gen", "resource": "counter", "output_encoding": "json"},
    ...         "sinks": [{"service_name": "gen2", "output_encoding": "json"}]}]},
    ...     "inline") if False else None
"""

from mstream.config import Config, ConnectorConfig, ServiceConfig, StepConfig, load_config, parse_config
from mstream.core import Batch, Event
from mstream.errors import (
    ConfigError,
    DecodeError,
    DeliveryError,
    EncodeError,
    EventError,
    MstreamError,
    RejectedError,
    SchemaValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "Config",
    "ConfigError",
    "ConnectorConfig",
    "DecodeError",
    "DeliveryError",
    "EncodeError",
    "Event",
    "EventError",
    "MstreamError",
    "RejectedError",
    "SchemaValidationError",
    "ServiceConfig",
    "StepConfig",
    "load_config",
    "parse_config",
]
