"""Options of a ``kafka`` service: the supported dotted keys, their schema, client mappings."""

from __future__ import annotations

import difflib
import importlib.util
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import (
    INCLUDE,
    Schema,
    ValidationError,
    fields,
    pre_load,
    validate,
    validates_schema,
)

from mstream.errors import DeliveryError

CLIENTS = ("auto", "kafka-python", "confluent")
CONSUMER = "consumer"
PRODUCER = "producer"
BOTH = "both"


def _as_str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value.strip()


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    else:
        raise ValueError(f"expected an integer (got {value!r})")
    if number < 0:
        raise ValueError(f"must be at least 0 (got {number})")
    return number


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"expected true or false (got {value!r})")


def _one_of(choices: Mapping[str, Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        text = str(value).strip().lower() if not isinstance(value, bool) else ""
        if text not in choices:
            raise ValueError(f"must be one of: {', '.join(choices)} (got {value!r})")
        return choices[text]

    return convert


def _servers(value: Any) -> str:
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return ",".join(v.strip() for v in value)
    text = _as_str(value)
    if not all(part.strip() for part in text.split(",")):
        raise ValueError(f"expected host:port[,host:port...] (got {value!r})")
    return ",".join(part.strip() for part in text.split(","))


def _acks(value: Any) -> int:
    return int(_one_of({"all": -1, "-1": -1, "0": 0, "1": 1})(value))


def _assignment(value: Any) -> str:
    names = [part.strip().lower() for part in _as_str(value).split(",")]
    for name in names:
        if name not in ("range", "roundrobin", "cooperative-sticky"):
            raise ValueError(f"must be range, roundrobin or cooperative-sticky (got {name!r})")
    return ",".join(names)


@dataclass(frozen=True)
class KafkaOption:
    """One supported dotted key.

    Attributes:
        key: the librdkafka-style key users write.
        python: the kafka-python keyword it maps to.
        role: ``consumer``, ``producer`` or ``both``.
        convert: validates and normalises the value (raises ``ValueError``).
        rdkafka: the librdkafka property for ``client = "confluent"`` (``""``: handled by
            mstream itself, not passed on).
    """

    key: str
    python: str
    role: str
    convert: Callable[[Any], Any]
    rdkafka: str | None = None


_COMPRESSION = {"none": "none", "gzip": "gzip", "snappy": "snappy", "lz4": "lz4", "zstd": "zstd"}
_RESET = {
    "earliest": "earliest",
    "smallest": "earliest",
    "beginning": "earliest",
    "latest": "latest",
    "largest": "latest",
    "end": "latest",
}
_PROTOCOLS = {p.lower(): p for p in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")}
_MECHANISMS = {
    m.lower(): m for m in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")
}
_HOSTNAME = {"https": "https", "none": "none"}
_ISOLATION = {"read_committed": "read_committed", "read_uncommitted": "read_uncommitted"}

OPTIONS: dict[str, KafkaOption] = {
    o.key: o
    for o in (
        KafkaOption("bootstrap.servers", "bootstrap_servers", BOTH, _servers),
        KafkaOption("client.id", "client_id", BOTH, _as_str),
        KafkaOption("security.protocol", "security_protocol", BOTH, _one_of(_PROTOCOLS)),
        KafkaOption("sasl.mechanism", "sasl_mechanism", BOTH, _one_of(_MECHANISMS)),
        KafkaOption(
            "sasl.mechanisms", "sasl_mechanism", BOTH, _one_of(_MECHANISMS), "sasl.mechanism"
        ),
        KafkaOption("sasl.username", "sasl_plain_username", BOTH, _as_str),
        KafkaOption("sasl.password", "sasl_plain_password", BOTH, _as_str),
        KafkaOption("ssl.ca.location", "ssl_cafile", BOTH, _as_str),
        KafkaOption("ssl.certificate.location", "ssl_certfile", BOTH, _as_str),
        KafkaOption("ssl.key.location", "ssl_keyfile", BOTH, _as_str),
        KafkaOption("ssl.key.password", "ssl_password", BOTH, _as_str),
        KafkaOption("ssl.crl.location", "ssl_crlfile", BOTH, _as_str),
        KafkaOption("ssl.cipher.suites", "ssl_ciphers", BOTH, _as_str),
        KafkaOption(
            "ssl.endpoint.identification.algorithm", "ssl_check_hostname", BOTH, _one_of(_HOSTNAME)
        ),
        KafkaOption("request.timeout.ms", "request_timeout_ms", BOTH, _as_int, "socket.timeout.ms"),
        KafkaOption("retry.backoff.ms", "retry_backoff_ms", BOTH, _as_int),
        KafkaOption("reconnect.backoff.ms", "reconnect_backoff_ms", BOTH, _as_int),
        KafkaOption("reconnect.backoff.max.ms", "reconnect_backoff_max_ms", BOTH, _as_int),
        KafkaOption("metadata.max.age.ms", "metadata_max_age_ms", BOTH, _as_int),
        KafkaOption("connections.max.idle.ms", "connections_max_idle_ms", BOTH, _as_int),
        KafkaOption("socket.receive.buffer.bytes", "receive_buffer_bytes", BOTH, _as_int),
        KafkaOption("socket.send.buffer.bytes", "send_buffer_bytes", BOTH, _as_int),
        KafkaOption(
            "max.in.flight.requests.per.connection",
            "max_in_flight_requests_per_connection",
            BOTH,
            _as_int,
        ),
        KafkaOption("allow.auto.create.topics", "allow_auto_create_topics", BOTH, _as_bool),
        # consumer
        KafkaOption("group.id", "group_id", CONSUMER, _as_str),
        KafkaOption("group.instance.id", "group_instance_id", CONSUMER, _as_str),
        KafkaOption("auto.offset.reset", "auto_offset_reset", CONSUMER, _one_of(_RESET)),
        KafkaOption("enable.auto.commit", "enable_auto_commit", CONSUMER, _as_bool, ""),
        KafkaOption("max.poll.records", "max_poll_records", CONSUMER, _as_int, ""),
        KafkaOption("max.poll.interval.ms", "max_poll_interval_ms", CONSUMER, _as_int),
        KafkaOption("session.timeout.ms", "session_timeout_ms", CONSUMER, _as_int),
        KafkaOption("heartbeat.interval.ms", "heartbeat_interval_ms", CONSUMER, _as_int),
        KafkaOption("fetch.min.bytes", "fetch_min_bytes", CONSUMER, _as_int),
        KafkaOption("fetch.max.bytes", "fetch_max_bytes", CONSUMER, _as_int),
        KafkaOption(
            "fetch.max.wait.ms", "fetch_max_wait_ms", CONSUMER, _as_int, "fetch.wait.max.ms"
        ),
        KafkaOption("fetch.wait.max.ms", "fetch_max_wait_ms", CONSUMER, _as_int),
        KafkaOption("max.partition.fetch.bytes", "max_partition_fetch_bytes", CONSUMER, _as_int),
        KafkaOption("isolation.level", "isolation_level", CONSUMER, _one_of(_ISOLATION)),
        KafkaOption("check.crcs", "check_crcs", CONSUMER, _as_bool),
        KafkaOption(
            "partition.assignment.strategy", "partition_assignment_strategy", CONSUMER, _assignment
        ),
        # producer
        KafkaOption("acks", "acks", PRODUCER, _acks),
        KafkaOption("compression.type", "compression_type", PRODUCER, _one_of(_COMPRESSION)),
        KafkaOption(
            "compression.codec",
            "compression_type",
            PRODUCER,
            _one_of(_COMPRESSION),
            "compression.type",
        ),
        KafkaOption("linger.ms", "linger_ms", PRODUCER, _as_int),
        KafkaOption("queue.buffering.max.ms", "linger_ms", PRODUCER, _as_int, "linger.ms"),
        KafkaOption("batch.size", "batch_size", PRODUCER, _as_int),
        KafkaOption("retries", "retries", PRODUCER, _as_int),
        KafkaOption("message.send.max.retries", "retries", PRODUCER, _as_int, "retries"),
        KafkaOption("delivery.timeout.ms", "delivery_timeout_ms", PRODUCER, _as_int),
        KafkaOption(
            "message.timeout.ms", "delivery_timeout_ms", PRODUCER, _as_int, "delivery.timeout.ms"
        ),
        KafkaOption("enable.idempotence", "enable_idempotence", PRODUCER, _as_bool),
        KafkaOption("max.request.size", "max_request_size", PRODUCER, _as_int, "message.max.bytes"),
        KafkaOption("message.max.bytes", "max_request_size", PRODUCER, _as_int),
        KafkaOption("max.block.ms", "max_block_ms", PRODUCER, _as_int, ""),
    )
}
"""Every supported dotted key, by key."""

PLAIN_OPTIONS = (
    "client",
    "commit_interval_ms",
    "offset_seek_back_seconds",
    "bootstrap_timeout_ms",
    "flush_timeout_ms",
)
SECRET_FIELDS = frozenset({"sasl.password", "ssl.key.password"})


def compact_keys(keys: list[str]) -> str:
    """Keys grouped by their first dotted part, for a short error message.

    Example:
        >>> compact_keys(["sasl.mechanism", "sasl.password", "group.id", "client"])
        'client, group.id, sasl.{mechanism,password}'
    """
    groups: dict[str, list[str]] = {}
    for key in sorted(keys):
        head, _, rest = key.partition(".")
        groups.setdefault(head if rest else key, []).append(rest)
    parts = []
    for head, rests in groups.items():
        named = [r for r in rests if r]
        if len(named) > 1:
            parts.append(f"{head}.{{{','.join(named)}}}")
        elif named:
            parts.append(f"{head}.{named[0]}")
        else:
            parts.append(head)
    return ", ".join(parts)


def supported_keys() -> list[str]:
    """Every key a ``kafka`` service accepts, dotted keys first.

    Example:
        >>> "group.id" in supported_keys() and "offset_seek_back_seconds" in supported_keys()
        True
    """
    return sorted(OPTIONS) + list(PLAIN_OPTIONS)


class KafkaServiceSchema(Schema):
    """Options of a ``kafka`` service: the dotted keys of :data:`OPTIONS` and a few plain ones.

    Example:
        >>> opts = KafkaServiceSchema().load({"bootstrap.servers": "h:1"})
        >>> opts["bootstrap_timeout_ms"], opts["flush_timeout_ms"], opts["commit_interval_ms"]
        (3000, 30000, 1000)
    """

    class Meta:
        unknown = INCLUDE

    client = fields.String(
        load_default="auto",
        validate=validate.OneOf(
            CLIENTS, error="must be auto, kafka-python or confluent (got {input!r})"
        ),
    )
    offset_seek_back_seconds = fields.Integer(
        load_default=None, strict=True, validate=validate.Range(min=0, error="must be at least 0")
    )
    commit_interval_ms = fields.Integer(
        load_default=1000, strict=True, validate=validate.Range(min=10, max=600_000)
    )
    bootstrap_timeout_ms = fields.Integer(
        load_default=3000, strict=True, validate=validate.Range(min=100, max=600_000)
    )
    flush_timeout_ms = fields.Integer(
        load_default=30_000, strict=True, validate=validate.Range(min=100, max=3_600_000)
    )

    @pre_load
    def _dotted(self, data: Any, **_: Any) -> Any:
        """Check every dotted key and normalise its value; unsupported keys are errors."""
        self._problems: dict[str, list[str]] = {}
        if not isinstance(data, Mapping):
            return data
        out: dict[str, Any] = {}
        confluent = data.get("client") == "confluent"
        for key, value in data.items():
            if key in PLAIN_OPTIONS:
                out[key] = value
                continue
            option = OPTIONS.get(key)
            if option is None and confluent and "." in str(key):
                # as the original: any librdkafka property goes to the client as it is
                # (librdkafka itself refuses an unknown one when the client is created)
                if isinstance(value, bool | int | float | str):
                    out[key] = value
                else:
                    self._problems[f'"{key}"'] = ["a librdkafka property is a string or a number"]
                continue
            if option is None:
                near = difflib.get_close_matches(str(key), supported_keys(), n=1, cutoff=0.8)
                if near:
                    hint = f"did you mean {near[0]!r}?"
                elif "." in str(key):
                    hint = (
                        'kafka-python has no such setting; with client = "confluent" every '
                        "librdkafka property passes through, as in the original"
                    )
                else:
                    hint = "unknown key"
                listed = compact_keys(supported_keys())
                self._problems[f'"{key}"'] = [
                    f"unsupported Kafka option: {hint} (supported with kafka-python: {listed})"
                    if near
                    else f"unsupported Kafka option ({hint}; supported with kafka-python: {listed})"
                ]
                continue
            try:
                out[key] = option.convert(value)
            except ValueError as exc:
                self._problems[f'"{key}"'] = [str(exc)]
        return out

    @validates_schema(skip_on_field_errors=False)
    def _report(self, _data: Any, **_: Any) -> None:
        """Report the dotted-key problems found while loading, with any field errors."""
        problems = getattr(self, "_problems", None)
        if problems:
            raise ValidationError(dict(problems))


class KafkaStepSchema(Schema):
    """Extra keys of a ``kafka`` step: ``batch_mode`` (sink) = ``array`` | ``messages``."""

    batch_mode = fields.String(
        load_default="array",
        validate=validate.OneOf(
            ["array", "messages"], error="must be array or messages (got {input!r})"
        ),
    )


def _python_value(option: KafkaOption, value: Any) -> Any:
    if option.python == "bootstrap_servers":
        return value.split(",")
    if option.python == "compression_type":
        return None if value == "none" else value
    if option.python == "ssl_check_hostname":
        return value == "https"
    if option.python == "partition_assignment_strategy":
        from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
        from kafka.coordinator.assignors.range import RangePartitionAssignor
        from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

        by_name: dict[str, Any] = {
            "range": RangePartitionAssignor,
            "roundrobin": RoundRobinPartitionAssignor,
            "cooperative-sticky": CooperativeStickyAssignor,
        }
        return tuple(by_name[name] for name in value.split(","))
    if option.python == "acks":
        return "all" if value == -1 else value
    return value


def resolved_client(options: Mapping[str, Any]) -> str:
    """The client a service runs on: ``client = "auto"`` (the default) is ``confluent``
    when ``confluent-kafka`` is importable, else ``kafka-python``.

    ``auto`` is resolved when a source or sink is created, not when the config is loaded,
    so a config stays portable; for the same reason only ``client = "confluent"`` lets
    unmapped librdkafka properties through validation.

    Example:
        >>> resolved_client({"client": "kafka-python"})
        'kafka-python'
        >>> resolved_client({}) in ("confluent", "kafka-python")
        True
    """
    client = str(options.get("client", "auto"))
    if client != "auto":
        return client
    return "confluent" if importlib.util.find_spec("confluent_kafka") else "kafka-python"


def client_options(options: Mapping[str, Any], role: str) -> dict[str, Any]:
    """kafka-python keyword arguments for a ``consumer`` or ``producer`` from service options.

    Example:
        >>> opts = {"bootstrap.servers": "a:1,b:2", "group.id": "g", "acks": -1}
        >>> client_options(opts, "consumer")
        {'bootstrap_servers': ['a:1', 'b:2'], 'group_id': 'g'}
    """
    out: dict[str, Any] = {}
    for key, value in options.items():
        option = OPTIONS.get(key)
        if option is None or option.role not in (role, BOTH):
            continue
        out[option.python] = _python_value(option, value)
    return out


def rdkafka_options(options: Mapping[str, Any], role: str) -> dict[str, Any]:
    """librdkafka properties (for ``client = "confluent"``) from service options.

    Keys mstream does not map (``socket.keepalive.enable``, ``statistics.interval.ms``,
    ``sasl.kerberos.service.name`` ...) are passed through as they are.

    Example:
        >>> opts = {"bootstrap.servers": "a:1", "linger.ms": 5, "max.poll.records": 9,
        ...         "socket.keepalive.enable": True}
        >>> rdkafka_options(opts, "producer")
        {'bootstrap.servers': 'a:1', 'linger.ms': 5, 'socket.keepalive.enable': True}
    """
    out: dict[str, Any] = {}
    for key, value in options.items():
        option = OPTIONS.get(key)
        if option is None:
            if key not in PLAIN_OPTIONS and "." in key:
                out[key] = value  # a librdkafka property passed through (both roles)
            continue
        if option.role not in (role, BOTH) or option.rdkafka == "":
            continue
        out[option.rdkafka or key] = value
    return out


def unreachable(
    service: str, servers: str, timeout_ms: int, what: str, cause: object, logger: logging.Logger
) -> DeliveryError:
    """The error (logged as a WARNING) for a client that found no bootstrap server in time.

    Args:
        service: the service's name.
        servers: its ``bootstrap.servers``.
        timeout_ms: the ``bootstrap_timeout_ms`` that ran out.
        what: the step, e.g. ``kafka sink 'orders'``.
        cause: what the client said.
        logger: where the warning goes (the connector's logger).

    Returns:
        A :class:`~mstream.errors.DeliveryError`, so that the connector retries with backoff.

    Example:
        >>> str(unreachable("k", "localhost:1", 3000, "kafka sink 't'", "timed out",
        ...                 logging.getLogger("test")))
        "kafka service 'k': cannot reach bootstrap servers localhost:1 within 3 s (kafka sink 't': timed out)"
    """
    message = (
        f"kafka service {service!r}: cannot reach bootstrap servers {servers} "
        f"within {timeout_ms / 1000:g} s ({what}: {cause})"
    )
    logger.warning("%s", message)
    return DeliveryError(message)
