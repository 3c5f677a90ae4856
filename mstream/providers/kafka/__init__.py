"""``provider = "kafka"``: a consumer-group source and a producer sink.

Service options are the librdkafka-style dotted keys users already write
(``"bootstrap.servers"``, ``"group.id"``, ``"sasl.password"`` ...), mapped to the client
library's own options by :data:`OPTIONS`; an unsupported key is rejected when the config
is loaded, with the list of supported keys. Besides the dotted keys:

* ``offset_seek_back_seconds``: a source starts from the offsets at *now minus N
  seconds* (looked up by timestamp); this wins over a saved checkpoint.
* ``client``: ``"auto"`` (default: ``confluent-kafka`` when it is importable, else
  kafka-python; see :func:`~mstream.providers.kafka.config.resolved_client`),
  ``"confluent"`` or ``"kafka-python"``; same behaviour, confluent-kafka is 2-3x faster.
* ``commit_interval_ms``: how often the source commits acknowledged offsets (1000).
* ``bootstrap_timeout_ms``: how long a source or sink waits for a bootstrap server when
  it opens (3000); past it, a WARNING naming the service and its servers and a
  :class:`~mstream.errors.DeliveryError`, so the connector retries with backoff.
* ``flush_timeout_ms``: how long a sink's flush waits for the broker (30000); past it, a
  :class:`~mstream.errors.DeliveryError` naming what is still pending (never
  acknowledged: the connector restarts from its last checkpoint).

Source: the step's ``resource`` is the topic (or a comma-separated list). Each poll
result is emitted as one chunk of events whose ``metadata`` holds ``key``, ``headers``,
``topic``, ``partition``, ``offset`` and ``timestamp`` and whose ``attributes`` hold the
headers as strings. Offsets are committed only once every sink acknowledged an event and
every earlier event of its partition (a :class:`~mstream.core.PositionTracker` per
partition), always on the consumer's own thread. The checkpoint is
``{topic: {partition: next_offset}}``. The consumer's thread never runs the pipeline:
chunks are emitted from a thread of their own, and when 8 of them are not yet
acknowledged the source pauses its partitions and goes on polling (so a slow sink never
makes it exceed ``max.poll.interval.ms``), resuming them at 4; rebalance callbacks only
record what happened for the consumer's thread to apply (see
:mod:`mstream.providers.kafka.source`).

Modules: :mod:`~mstream.providers.kafka.config` (options), :mod:`~.source` and
:mod:`~.sink` (what both clients share), :mod:`~.flow` (the hand-over to the pipeline),
:mod:`~.kafka_python` and :mod:`~.confluent` (the two clients).

Sink: a producer (``acks = all`` by default). Key and headers are carried from the
source (``metadata["key"]``, ``metadata["headers"]``, else the event's attributes). A
batched unit (``batch = { kind = "count", ... }`` on the connector) is sent as one
message holding the array in the sink's encoding; the step option
``batch_mode = "messages"`` sends one message per event instead.

Example:
    >>> from mstream.config import parse_service
    >>> svc = parse_service({"name": "k", "provider": "kafka",
    ...     "bootstrap.servers": "127.0.0.1:9092", "group.id": "g", "linger.ms": "5"})
    >>> svc.options["linger.ms"]
    5
    >>> client_options(svc.options, "producer")["linger_ms"]
    5
    >>> try:
    ...     parse_service({"name": "k", "provider": "kafka", "foo.bar": 1}, "services[1]")
    ... except Exception as exc:
    ...     print(str(exc)[:55])
    services[1]."foo.bar": unsupported Kafka option (kafka-
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mstream.config.model import ServiceConfig, StepConfig
from mstream.providers.base import ProviderSpec, Sink, Source, StepContext
from mstream.providers.kafka.config import (
    OPTIONS,
    SECRET_FIELDS,
    KafkaServiceSchema,
    KafkaStepSchema,
    client_options,
    rdkafka_options,
    resolved_client,
    supported_keys,
)
from mstream.providers.kafka.kafka_python import KafkaPythonSink, KafkaPythonSource
from mstream.providers.kafka.sink import KafkaSinkBase
from mstream.providers.kafka.source import TP, KafkaSourceBase

__all__ = [
    "OPTIONS",
    "PROVIDER",
    "SECRET_FIELDS",
    "TP",
    "KafkaPythonSink",
    "KafkaPythonSource",
    "KafkaServiceSchema",
    "KafkaSinkBase",
    "KafkaSourceBase",
    "KafkaStepSchema",
    "client_options",
    "rdkafka_options",
    "resolved_client",
    "supported_keys",
]


def _make_source(service: ServiceConfig, step: StepConfig, ctx: StepContext) -> Source:
    if resolved_client(service.options) == "confluent":
        from mstream.providers.kafka.confluent import ConfluentSource

        return ConfluentSource(service, step, ctx)
    return KafkaPythonSource(service, step, ctx)


def _make_sink(service: ServiceConfig, step: StepConfig, ctx: StepContext) -> Sink:
    if resolved_client(service.options) == "confluent":
        from mstream.providers.kafka.confluent import ConfluentSink

        return ConfluentSink(service, step, ctx)
    return KafkaPythonSink(service, step, ctx)


def _describe(options: Mapping[str, Any]) -> str:
    return f"Kafka at {options.get('bootstrap.servers', '?')}"


PROVIDER = ProviderSpec(
    name="kafka",
    service_schema=KafkaServiceSchema,
    secret_fields=SECRET_FIELDS,
    source=_make_source,
    sink=_make_sink,
    step_options=KafkaStepSchema,
    describe=_describe,
)
