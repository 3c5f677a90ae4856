"""mstream: a data streaming bridge built on reactivex pipelines.

Run it as a service with the ``mstream`` command, or use it as a library::

    >>> import mstream
    >>> manager = mstream.run_config({
    ...     "services": [{"name": "gen", "provider": "generator", "count": 5},
    ...                  {"name": "out", "provider": "stdout"}],
    ...     "connectors": [{"name": "demo",
    ...         "source": {"service_name": "gen", "resource": "counter", "output_encoding": "json"},
    ...         "sinks": [{"service_name": "out", "output_encoding": "json"}]}]})
    {"n":0}
    {"n":1}
    {"n":2}
    {"n":3}
    {"n":4}
    >>> manager.get("demo").counters.events_out
    5
"""

from mstream.config import (
    Config,
    ConnectorConfig,
    ServiceConfig,
    StepConfig,
    load_config,
    parse_config,
)
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
from mstream.library import run_config, sink, source

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
    "run_config",
    "sink",
    "source",
]
