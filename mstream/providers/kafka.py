"""``provider = "kafka"``: a consumer-group source and a producer sink.

Service options are the librdkafka-style dotted keys users already write
(``"bootstrap.servers"``, ``"group.id"``, ``"sasl.password"`` ...), mapped to the client
library's own options by :data:`OPTIONS`; an unsupported key is rejected when the config
is loaded, with the list of supported keys. Besides the dotted keys:

* ``offset_seek_back_seconds``: a source starts from the offsets at *now minus N
  seconds* (looked up by timestamp); this wins over a saved checkpoint.
* ``client``: ``"kafka-python"`` (default) or ``"confluent"`` (uses ``confluent-kafka``
  when it is installed; same behaviour).
* ``commit_interval_ms``: how often the source commits acknowledged offsets (1000).

Source: the step's ``resource`` is the topic (or a comma-separated list). Each poll
result is emitted as one chunk of events whose ``metadata`` holds ``key``, ``headers``,
``topic``, ``partition``, ``offset`` and ``timestamp`` and whose ``attributes`` hold the
headers as strings. Offsets are committed only once every sink acknowledged an event and
every earlier event of its partition (a :class:`~mstream.core.PositionTracker` per
partition), always on the consumer's own thread. The checkpoint is
``{topic: {partition: next_offset}}``.

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
    services[1]."foo.bar": unsupported Kafka option (suppor
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
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

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Batch, Event, PositionTracker
from mstream.encodings import AvroSchema, encode_batch
from mstream.errors import ConfigError, DeliveryError, RejectedError
from mstream.providers import kafka_python_join
from mstream.providers.base import Done, Emit, ProviderSpec, Sink, Source, StepContext
from mstream.providers.completion import Completion, messages_of

log = logging.getLogger("mstream.kafka")

CLIENTS = ("kafka-python", "confluent")
CONSUMER = "consumer"
PRODUCER = "producer"
BOTH = "both"


# -- options ---------------------------------------------------------------------------


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

PLAIN_OPTIONS = ("client", "commit_interval_ms", "offset_seek_back_seconds")
SECRET_FIELDS = frozenset({"sasl.password", "ssl.key.password"})


def supported_keys() -> list[str]:
    """Every key a ``kafka`` service accepts, dotted keys first.

    Example:
        >>> "group.id" in supported_keys() and "offset_seek_back_seconds" in supported_keys()
        True
    """
    return sorted(OPTIONS) + list(PLAIN_OPTIONS)


class KafkaServiceSchema(Schema):
    """Options of a ``kafka`` service: the dotted keys of :data:`OPTIONS` and a few plain ones."""

    class Meta:
        unknown = INCLUDE

    client = fields.String(
        load_default="kafka-python",
        validate=validate.OneOf(CLIENTS, error="must be kafka-python or confluent (got {input!r})"),
    )
    offset_seek_back_seconds = fields.Integer(
        load_default=None, strict=True, validate=validate.Range(min=0, error="must be at least 0")
    )
    commit_interval_ms = fields.Integer(
        load_default=1000, strict=True, validate=validate.Range(min=10, max=600_000)
    )

    @pre_load
    def _dotted(self, data: Any, **_: Any) -> Any:
        """Check every dotted key and normalise its value; unsupported keys are errors."""
        self._problems: dict[str, list[str]] = {}
        if not isinstance(data, Mapping):
            return data
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in PLAIN_OPTIONS:
                out[key] = value
                continue
            option = OPTIONS.get(key)
            if option is None:
                self._problems[f'"{key}"'] = [
                    f"unsupported Kafka option (supported: {', '.join(supported_keys())})"
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

    Example:
        >>> opts = {"bootstrap.servers": "a:1", "linger.ms": 5, "max.poll.records": 9}
        >>> rdkafka_options(opts, "producer")
        {'bootstrap.servers': 'a:1', 'linger.ms': 5}
    """
    out: dict[str, Any] = {}
    for key, value in options.items():
        option = OPTIONS.get(key)
        if option is None or option.role not in (role, BOTH) or option.rdkafka == "":
            continue
        out[option.rdkafka or key] = value
    return out


# -- source ----------------------------------------------------------------------------

TP = tuple[str, int]


def _topics(resource: str) -> list[str]:
    topics = [t.strip() for t in resource.split(",") if t.strip()]
    if not topics:
        raise ConfigError("a kafka step needs a topic as its resource")
    return topics


def _resume_offsets(position: Any) -> dict[TP, int]:
    out: dict[TP, int] = {}
    if not isinstance(position, Mapping):
        return out
    for topic, partitions in position.items():
        if not isinstance(partitions, Mapping):
            continue
        for partition, offset in partitions.items():
            try:
                out[(str(topic), int(partition))] = int(offset)
            except (TypeError, ValueError):
                continue
    return out


class KafkaSourceBase(Source):
    """The client-independent half of a Kafka source: offsets, trackers, seeks, commits.

    Subclasses poll their client and call :meth:`_assigned`, :meth:`_revoked` and
    :meth:`_lost` from the client's rebalance callbacks, :meth:`_commit_acknowledged`
    from the poll loop, and implement :meth:`_commit_offsets`, :meth:`_seek`,
    :meth:`_offsets_for_times` and :meth:`_end_offset`.
    """

    revoke_wait = 5.0
    """Seconds a revocation waits for in-flight events of the revoked partitions."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        opts = service.options
        if not opts.get("group.id"):
            raise ConfigError(
                f"kafka source of connector {ctx.connector!r}: "
                f'service {service.name!r} needs "group.id"'
            )
        if not opts.get("bootstrap.servers"):
            raise ConfigError(f'kafka service {service.name!r} needs "bootstrap.servers"')
        self.service = service
        self.options = opts
        self.topics = _topics(step.resource)
        self.encoding = step.input_encoding or step.output_encoding
        self.seek_back: int | None = opts.get("offset_seek_back_seconds")
        self.commit_interval = opts.get("commit_interval_ms", 1000) / 1000.0
        self.max_records: int = opts.get("max.poll.records", 500)
        self.checkpointing = ctx.checkpointing
        self.resume = _resume_offsets(ctx.resume_position) if ctx.checkpointing else {}
        self.logger = ctx.logger
        self.stopping = ctx.stopping
        self._lock = threading.Lock()
        self._trackers: dict[TP, PositionTracker] = {}
        self._positions: dict[TP, int] = dict(self.resume)  # next offset to read, for checkpoints
        self._seeded: set[TP] = set()  # partitions given their starting offset in this run
        self._retry: dict[TP, int] = {}  # offsets whose commit failed, retried next time
        self._last_commit = time.monotonic()
        self.committed_total = 0  # how many commits were made (for tests and logs)

    # client hooks --------------------------------------------------------------------

    def _commit_offsets(self, offsets: Mapping[TP, int]) -> None:
        """Commit ``{(topic, partition): next_offset}`` synchronously."""
        raise NotImplementedError

    def _seek(self, tp: TP, offset: int) -> None:
        """Start reading ``tp`` at ``offset``."""
        raise NotImplementedError

    def _offsets_for_times(self, tps: list[TP], timestamp_ms: int) -> dict[TP, int | None]:
        """The first offset at or after ``timestamp_ms`` in each partition (None: none)."""
        raise NotImplementedError

    def _end_offset(self, tp: TP) -> int:
        """The partition's end offset (where a seek lands when no record is recent enough)."""
        raise NotImplementedError

    # shared logic ----------------------------------------------------------------------

    def _tracker(self, tp: TP) -> PositionTracker:
        tracker = self._trackers.get(tp)
        if tracker is None:
            tracker = PositionTracker()
            with self._lock:
                self._trackers[tp] = tracker
        return tracker

    def _chunk_ack(self, tp: TP, last_offset: int, count: int) -> Callable[[], None]:
        """One ack shared by the ``count`` events of ``tp`` read in one poll.

        The chunk is one tracker position (its last offset): it is committed once every
        event of it and every earlier chunk of the partition was acknowledged. Each event
        calls the shared ack once (``next`` on ``itertools.count`` is atomic), so the
        per-event cost is one call, not a tracker entry.

        Example:
            >>> from mstream.providers.base import StepContext
            >>> svc = ServiceConfig("k", "kafka", {"bootstrap.servers": "h:1", "group.id": "g"})
            >>> src = KafkaSourceBase(svc, StepConfig("k", "t"), StepContext("c", "source"))
            >>> ack = src._chunk_ack(("t", 0), 41, 2)
            >>> ack(); src.position() is None
            True
            >>> ack(); src.position()
            {'t': {'0': 42}}
        """
        tracker = self._tracker(tp)
        seq = tracker.add(last_offset)
        if count == 1:
            return functools.partial(tracker.ack, seq)
        counter = itertools.count(1)
        tracker_ack = tracker.ack

        def ack() -> None:
            if next(counter) == count:
                tracker_ack(seq)

        return ack

    def _assigned(self, tps: Iterable[TP]) -> None:
        """New partitions: fresh trackers, then the starting offsets (seek back or checkpoint)."""
        tps = list(tps)
        fresh = [tp for tp in tps if tp not in self._seeded]
        with self._lock:
            for tp in tps:
                if tp not in self._trackers:
                    self._trackers[tp] = PositionTracker()
        if not fresh:
            return
        self._seeded.update(fresh)
        if self.seek_back is not None:
            self._seek_back(fresh)
            return
        for tp in fresh:
            if tp in self.resume:
                self.logger.info(
                    "kafka %s[%d]: resuming from checkpoint offset %d",
                    tp[0],
                    tp[1],
                    self.resume[tp],
                )
                self._seek(tp, self.resume[tp])

    def _seek_back(self, tps: list[TP]) -> None:
        """Seek ``tps`` to their offsets at now minus ``offset_seek_back_seconds``.

        Clients whose rebalance callbacks may not block override this to defer the lookup.
        """
        at = int(time.time() * 1000) - (self.seek_back or 0) * 1000
        found = self._offsets_for_times(tps, at)
        for tp in tps:
            offset = found.get(tp)
            target = offset if offset is not None else self._end_offset(tp)
            self.logger.info(
                "kafka %s[%d]: seeking back %ds to offset %d", tp[0], tp[1], self.seek_back, target
            )
            self._seek(tp, target)

    def _revoked(self, tps: Iterable[TP]) -> None:
        """Partitions taken away: wait briefly for their in-flight events, commit, forget."""
        revoked = [tp for tp in tps if tp in self._trackers]
        deadline = time.monotonic() + self.revoke_wait
        while any(self._trackers[tp].pending for tp in revoked) and time.monotonic() < deadline:
            if self.stopping.wait(0.01):
                break
        self._commit_acknowledged(force=True, only=revoked)
        self._lost(revoked)

    def _lost(self, tps: Iterable[TP]) -> None:
        """Partitions gone without a chance to commit: forget their trackers."""
        with self._lock:
            for tp in tps:
                tracker = self._trackers.pop(tp, None)
                self._retry.pop(tp, None)
                if tracker is not None:
                    committed = tracker.committed()
                    if committed is not None:
                        self._positions[tp] = committed + 1

    def _commit_acknowledged(
        self, *, force: bool = False, only: Iterable[TP] | None = None
    ) -> None:
        """Commit the acknowledged offsets that changed (every ``commit_interval`` unless forced).

        Runs on the consumer's thread only: the client is not thread-safe.
        """
        now = time.monotonic()
        if not force and now - self._last_commit < self.commit_interval:
            return
        self._last_commit = now
        trackers = (
            self._trackers
            if only is None
            else {tp: self._trackers[tp] for tp in only if tp in self._trackers}
        )
        offsets: dict[TP, int] = {tp: o for tp, o in self._retry.items() if tp in trackers}
        for tp, tracker in list(trackers.items()):
            changed, committed = tracker.take_if_changed()
            if changed and committed is not None:
                offsets[tp] = committed + 1
        if not offsets:
            return
        try:
            self._commit_offsets(offsets)
        except Exception as exc:  # the next commit (or the new owner) covers it
            self.logger.warning(
                "kafka: offset commit failed (%s); retrying with the next commit", exc
            )
            self._retry.update(offsets)
            return
        for tp in offsets:
            self._retry.pop(tp, None)
        self.committed_total += 1
        with self._lock:
            self._positions.update(offsets)

    def assignment(self) -> list[TP]:
        """The partitions this source holds now, as ``(topic, partition)``."""
        with self._lock:
            return sorted(self._trackers)

    def commit(self) -> None:
        """Commit every acknowledged offset now (on the consumer's thread)."""
        self._commit_acknowledged(force=True)

    def position(self) -> Any:
        """``{topic: {partition: next_offset}}`` of every partition seen, acknowledged only.

        Example:
            >>> from mstream.providers.base import StepContext
            >>> svc = ServiceConfig("k", "kafka", {"bootstrap.servers": "h:1", "group.id": "g"})
            >>> src = KafkaSourceBase(svc, StepConfig("k", "t"), StepContext("c", "source",
            ...     checkpointing=True, resume_position={"t": {"0": 5}}))
            >>> src.position()
            {'t': {'0': 5}}
        """
        with self._lock:
            merged = dict(self._positions)
            trackers = list(self._trackers.items())
        for tp, tracker in trackers:
            committed = tracker.committed()
            if committed is not None:
                merged[tp] = committed + 1
        if not merged:
            return None
        out: dict[str, dict[str, int]] = {}
        for (topic, partition), offset in sorted(merged.items()):
            out.setdefault(topic, {})[str(partition)] = offset
        return out

    def run(self, emit: Emit, stopping: threading.Event) -> None:  # pragma: no cover - abstract
        """Poll and emit chunks until ``stopping`` (implemented per client)."""
        raise NotImplementedError


def _header_attributes(headers: Iterable[tuple[str, Any]]) -> dict[str, str]:
    """Kafka headers as string attributes (UTF-8, undecodable bytes replaced).

    Example:
        >>> _header_attributes([("a", b"1"), ("b", None), ("c", "x")])
        {'a': '1', 'c': 'x'}
    """
    try:  # the common case: every value is bytes
        return {
            name: value.decode("utf-8", "replace") for name, value in headers if value is not None
        }
    except AttributeError:
        pass
    attrs: dict[str, str] = {}
    for name, value in headers:
        if isinstance(value, bytes | bytearray):
            attrs[name] = bytes(value).decode("utf-8", "replace")
        elif value is not None:
            attrs[name] = str(value)
    return attrs


class KafkaPythonSource(KafkaSourceBase):
    """A Kafka source on kafka-python's ``KafkaConsumer``."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        super().__init__(service, step, ctx)
        self._consumer: Any = None
        self._thread: threading.Thread | None = None
        self._deferred: list[TP] = []  # partitions paused until their seek-back lookup
        self._stalled = False
        self._next_liveness_check = 0.0

    def open(self) -> None:
        """Create the consumer (auto commit off) and subscribe with a rebalance listener.

        kafka-python 3 runs rebalance callbacks on its IO thread, where blocking calls are
        refused: there the listener commits with ``commit_async`` (sent before the group
        rejoin, on the same coordinator connection) and the timestamp lookup of a seek
        back is deferred to the poll thread (the partitions stay paused until then).
        """
        from kafka import ConsumerRebalanceListener, KafkaConsumer
        from kafka.errors import KafkaError

        source = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                source._revoked([(tp.topic, tp.partition) for tp in revoked])

            def on_partitions_assigned(self, assigned: Any) -> None:
                source._assigned([(tp.topic, tp.partition) for tp in assigned])

            def on_partitions_lost(self, lost: Any) -> None:
                source._lost([(tp.topic, tp.partition) for tp in lost])

        self._thread = threading.current_thread()
        config = client_options(self.options, CONSUMER)
        config["enable_auto_commit"] = False
        config.setdefault("auto_offset_reset", "earliest")
        try:
            self._consumer = KafkaConsumer(**config)
            kafka_python_join.install(self._consumer)
            self._await_topic_metadata()
            self._consumer.subscribe(self.topics, listener=Listener())
        except KafkaError as exc:
            raise DeliveryError(f"kafka source {self.topics}: cannot connect: {exc}") from None

    def _await_topic_metadata(self, timeout: float = 10.0) -> None:
        """Load the subscribed topics' partitions into the client's metadata before joining.

        A member that joins the group before its metadata lists the topic's partitions is
        assigned nothing and, as leader, rejoins when the metadata arrives: one needless
        rebalance per start. A topic that does not exist yet is waited for at most
        ``timeout`` seconds, then the source subscribes anyway.
        """
        deadline = time.monotonic() + timeout
        for topic in self.topics:
            while not self._consumer.partitions_for_topic(topic):
                if time.monotonic() > deadline or self.stopping.wait(0.1):
                    self.logger.warning(
                        "kafka topic %s: no partitions known yet; subscribing anyway", topic
                    )
                    return

    def _commit_offsets(self, offsets: Mapping[TP, int]) -> None:
        from kafka import OffsetAndMetadata, TopicPartition

        structs = {
            TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()
        }
        if threading.current_thread() is self._thread:
            self._consumer.commit(structs)
        else:  # a rebalance callback on the client's IO thread: must not block
            self._consumer.commit_async(structs)

    def _seek_back(self, tps: list[TP]) -> None:
        from kafka import TopicPartition

        if threading.current_thread() is self._thread:
            super()._seek_back(tps)
            return
        self._consumer.pause(*[TopicPartition(*tp) for tp in tps])
        self._deferred.extend(tps)

    def _apply_deferred(self) -> None:
        from kafka import TopicPartition

        tps, self._deferred = self._deferred, []
        assigned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        tps = [tp for tp in tps if tp in assigned]
        if tps:
            super()._seek_back(tps)
            self._consumer.resume(*[TopicPartition(*tp) for tp in tps])

    def _seek(self, tp: TP, offset: int) -> None:
        from kafka import TopicPartition

        self._consumer.seek(TopicPartition(*tp), offset)

    def _offsets_for_times(self, tps: list[TP], timestamp_ms: int) -> dict[TP, int | None]:
        from kafka import TopicPartition

        found = self._consumer.offsets_for_times(
            {TopicPartition(*tp): max(0, timestamp_ms) for tp in tps}
        )
        return {
            (tp.topic, tp.partition): (v.offset if v is not None else None)
            for tp, v in found.items()
        }

    def _end_offset(self, tp: TP) -> int:
        from kafka import TopicPartition

        key = TopicPartition(*tp)
        return int(self._consumer.end_offsets([key])[key])

    def run(self, emit: Emit, stopping: threading.Event) -> None:
        """Poll; emit each poll result as one chunk; commit acknowledged offsets periodically."""
        from kafka.errors import KafkaError

        consumer, encoding = self._consumer, self.encoding
        try:
            while not stopping.is_set():
                polled = consumer.poll(timeout_ms=100, max_records=self.max_records)
                if self._deferred:
                    self._apply_deferred()
                if polled:
                    events: list[Event] = []
                    append = events.append
                    for tp, records in polled.items():
                        topic, partition = tp.topic, tp.partition
                        ack = self._chunk_ack((topic, partition), records[-1].offset, len(records))
                        for r in records:
                            headers = r.headers
                            append(
                                Event(
                                    r.value if r.value is not None else b"",
                                    encoding,
                                    attributes=_header_attributes(headers) if headers else None,
                                    metadata={
                                        "topic": topic,
                                        "partition": partition,
                                        "offset": r.offset,
                                        "timestamp": r.timestamp,
                                        "key": r.key,
                                        "headers": headers if headers else [],
                                    },
                                    ack=ack,
                                )
                            )
                    emit(events)
                self._commit_acknowledged()
                self._check_liveness()
        except KafkaError as exc:
            raise DeliveryError(f"kafka source {','.join(self.topics)}: {exc}") from None

    def _check_liveness(self) -> None:
        """Fail the source when the group member has stopped heartbeating.

        A member whose last heartbeat is older than the session timeout, and which is not
        waiting for a JoinGroup answer (heartbeats pause then, legitimately), has been
        dropped by the broker while this consumer still believes it is in the group. The
        corrected join loop (:mod:`mstream.providers.kafka_python_join`) removes the one
        way kafka-python 3.0 was seen to get there; this check is the safety net for any
        other: a DeliveryError makes the connector restart the source with a fresh
        consumer, from the committed offsets.
        """
        now = time.monotonic()
        if now < self._next_liveness_check:
            return
        self._next_liveness_check = now + 1.0
        heartbeat = getattr(getattr(self._consumer, "_coordinator", None), "heartbeat", None)
        if heartbeat is None or not self._consumer.assignment():
            return
        join_task = getattr(self._consumer._coordinator, "_join_task", None)
        if join_task is not None and not join_task.is_done:
            return  # waiting for the group to rebalance: heartbeats are paused
        last = max(getattr(heartbeat, "last_send", now), getattr(heartbeat, "last_reset", now))
        limit = self.options.get("session.timeout.ms", 45_000) / 1000.0 + 5.0
        if now - last > limit:
            self._stalled = True
            raise DeliveryError(
                f"kafka source {','.join(self.topics)}: no group heartbeat for {now - last:.0f}s "
                "(the broker has dropped this member); restarting the consumer"
            )

    def close(self) -> None:
        """Commit what is acknowledged, then leave the group."""
        if self._consumer is None:
            return
        try:
            if not self._stalled:  # a dropped member cannot commit: its offsets are redelivered
                self.commit()
        finally:
            self._consumer.close(autocommit=False, timeout_ms=5000)
            self._consumer = None


# -- sink ------------------------------------------------------------------------------


_TOO_LARGE = frozenset({"MessageSizeTooLargeError", "RecordTooLargeError"})
"""kafka-python errors meaning a message can never be accepted as it is."""


def _classifier(what: str) -> Callable[[BaseException], BaseException]:
    """A :class:`~mstream.providers.completion.Completion` classifier for kafka-python."""

    def classify(error: BaseException) -> BaseException:
        if type(error).__name__ in _TOO_LARGE:  # refused by the broker: never retried
            return RejectedError(f"{what}: message too large for the broker: {error}")
        return DeliveryError(f"{what}: {type(error).__name__}: {error}")

    return classify


def _key_bytes(key: Any) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, bytearray | memoryview):
        return bytes(key)
    return str(key).encode()


def _normal_headers(headers: Iterable[tuple[Any, Any]]) -> list[tuple[str, bytes]]:
    """Headers as both clients take them: ``(str, bytes)`` pairs (a null value is empty).

    Example:
        >>> _normal_headers([("a", "x"), ("b", None), ("c", b"y"), (1, 2)])
        [('a', b'x'), ('b', b''), ('c', b'y'), ('1', b'2')]
    """
    return [
        (
            str(name),
            value
            if type(value) is bytes
            else b""
            if value is None
            else bytes(value)
            if isinstance(value, bytearray | memoryview)
            else str(value).encode(),
        )
        for name, value in headers
    ]


OutMessage = tuple[bytes, bytes | None, list[tuple[str, bytes]] | None]
"""One message to produce: ``(value, key, headers)``."""


class KafkaSinkBase(Sink):
    """The client-independent half of a Kafka sink: which messages a batch becomes."""

    _producer: Any = None

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        if not service.options.get("bootstrap.servers"):
            raise ConfigError(f'kafka service {service.name!r} needs "bootstrap.servers"')
        self.options = service.options
        self.topic = step.resource
        if not self.topic:
            raise ConfigError("a kafka sink needs a topic as its resource")
        self.encoding = step.output_encoding
        self.batch_mode: str = step.options.get("batch_mode", "array")
        self.what = f"kafka sink {self.topic!r}"

    def messages(self, batch: Batch) -> list[OutMessage]:
        """The messages a batch is written as.

        Example:
            >>> svc = ServiceConfig("k", "kafka", {"bootstrap.servers": "h:1"})
            >>> sink = KafkaSinkBase(svc, StepConfig("k", "t"), StepContext("c", "sink"))
            >>> evs = [Event(b'{"n":1}', "json", metadata={"key": b"k"}), Event(b'{"n":2}', "json")]
            >>> sink.messages(Batch.of(evs, batched=True))
            [(b'[{"n":1},{"n":2}]', None, None)]
            >>> sink.messages(Batch.of(evs, batched=False))
            [(b'{"n":1}', b'k', None), (b'{"n":2}', None, None)]
        """
        events = batch.events
        if batch.batched and self.batch_mode == "array":
            schema: AvroSchema | None = events[0].schema if events else None
            keys = {_key_bytes(e.metadata.get("key")) for e in events}
            key = keys.pop() if len(keys) == 1 else None
            return [(encode_batch([e.doc for e in events], self.encoding, schema), key, None)]
        out: list[OutMessage] = []
        append = out.append
        for e in events:
            metadata = e.metadata
            key = metadata.get("key")
            if key is not None and type(key) is not bytes:
                key = _key_bytes(key)
            headers = metadata.get("headers")
            if not headers:  # the event's attributes, if any, become the headers
                headers = [(k, str(v).encode()) for k, v in e.attributes.items()] or None
            elif type(headers) is not list:
                headers = _normal_headers(headers)
            # else a Kafka source's list, passed as it is: the client checks its pairs, and
            # the sink normalizes them only when the client refuses them (see write)
            append((e.payload, key, headers))
        return out

    def one_per_event(self, batch: Batch) -> bool:
        """Whether :meth:`messages` gives one message per event of ``batch`` (same order)."""
        return not (batch.batched and self.batch_mode == "array")

    def write(self, batch: Batch, done: Done) -> None:  # pragma: no cover - abstract
        """Produce the batch's messages; ``done`` once all are acknowledged by the broker."""
        raise NotImplementedError

    def flush(self) -> None:
        """Wait until every sent message is acknowledged (or failed)."""
        if self._producer is not None:
            self._producer.flush()

    def close(self) -> None:
        """Flush, then release the client (see :meth:`_release`)."""
        if self._producer is None:
            return
        try:
            self._producer.flush()
        finally:
            self._release()
            self._producer = None

    def _release(self) -> None:  # pragma: no cover - abstract
        """Free the client's resources after the final flush."""
        raise NotImplementedError


class KafkaPythonSink(KafkaSinkBase):
    """A Kafka sink on kafka-python's ``KafkaProducer`` (asynchronous sends)."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        super().__init__(service, step, ctx)
        self._producer: Any = None
        self._classify = _classifier(self.what)

    def open(self) -> None:
        """Create the producer (``acks = all`` unless configured)."""
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        config = client_options(self.options, PRODUCER)
        config.setdefault("acks", "all")
        try:
            self._producer = KafkaProducer(**config)
        except KafkaError as exc:
            raise DeliveryError(f"{self.what}: cannot connect: {exc}") from None

    def write(self, batch: Batch, done: Done) -> None:
        """Send every message; ``done(None)`` when all succeeded, else the first error."""
        from kafka.errors import KafkaError, MessageSizeTooLargeError

        producer = self._producer
        messages = messages_of(producer, self.messages, batch, done, self.what)
        if messages is None:
            return
        countdown = Completion(len(messages), done, self.what, self._classify)
        send, topic = producer.send, self.topic
        ok, fail = countdown.ok, countdown.fail
        per_event = self.one_per_event(batch)
        events = batch.events
        for i, (value, key, headers) in enumerate(messages):
            try:
                try:
                    future = send(topic, value=value, key=key, headers=headers)
                except (AssertionError, TypeError):  # header pairs the client refuses
                    if not headers:
                        raise
                    headers = _normal_headers(headers)
                    future = send(topic, value=value, key=key, headers=headers)
            except MessageSizeTooLargeError as exc:
                reason = f"{self.what}: message too large: {exc}"
                if per_event:  # only this event is dead-lettered; the others go on
                    countdown.reject(events[i], reason)
                    continue
                countdown.fail(RejectedError(reason))
                return
            except (KafkaError, AssertionError, ValueError, TypeError) as exc:
                countdown.fail(exc)
                return
            # one message per event: a broker refusal names the event, not the whole chunk
            on_error = functools.partial(countdown.fail_event, events[i]) if per_event else fail
            register = getattr(future, "_add_cb_eb", None)  # one lock instead of two
            if register is not None:
                register(ok, on_error)
            else:
                future.add_callback(ok)
                future.add_errback(on_error)

    def _release(self) -> None:
        """Close the producer."""
        self._producer.close()


# -- provider --------------------------------------------------------------------------


def _make_source(service: ServiceConfig, step: StepConfig, ctx: StepContext) -> Source:
    if service.options.get("client") == "confluent":
        from mstream.providers.kafka_confluent import ConfluentSource

        return ConfluentSource(service, step, ctx)
    return KafkaPythonSource(service, step, ctx)


def _make_sink(service: ServiceConfig, step: StepConfig, ctx: StepContext) -> Sink:
    if service.options.get("client") == "confluent":
        from mstream.providers.kafka_confluent import ConfluentSink

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
