"""Kafka provider configuration: key mapping, rejection of unknown keys, secrets (no server)."""

from __future__ import annotations

import doctest
import threading
import time
from collections.abc import Mapping

import pytest

import mstream.providers.kafka as kafka_provider
import mstream.providers.kafka.confluent as kafka_confluent
import mstream.providers.kafka.flow as kafka_flow
import mstream.providers.kafka.kafka_python as kafka_python
import mstream.providers.kafka.sink as kafka_sink
import mstream.providers.kafka.source as kafka_source
from mstream.config import parse_config
from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Batch, Event
from mstream.errors import ConfigError, DeliveryError
from mstream.providers import get_provider
from mstream.providers.base import StepContext
from mstream.providers.completion import Completion
from mstream.providers.emitter import Emitter
from mstream.providers.kafka import (
    OPTIONS,
    SECRET_FIELDS,
    TP,
    KafkaSinkBase,
    KafkaSourceBase,
    client_options,
    rdkafka_options,
    supported_keys,
)
from mstream.providers.kafka.flow import InFlight
from mstream.providers.kafka.source import ASSIGNED, LOST, REVOKED, Rebalance
from mstream.registry import mask_service
from tests.waiting import wait_for


def _config(service: dict[str, object], environ: dict[str, str] | None = None) -> ServiceConfig:
    raw = {
        "services": [
            {"name": "gen", "provider": "generator"},
            {"name": "k", "provider": "kafka", **service},
        ]
    }
    return parse_config(raw, "cfg.toml", environ=environ or {}).services[1]


FULL = {
    "bootstrap.servers": "h1:9092, h2:9093",
    "group.id": "grp",
    "client.id": "cli",
    "security.protocol": "sasl_ssl",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "user",
    "sasl.password": "pw",
    "ssl.ca.location": "/ca.pem",
    "ssl.certificate.location": "/cert.pem",
    "ssl.key.location": "/key.pem",
    "ssl.key.password": "kpw",
    "auto.offset.reset": "smallest",
    "compression.type": "gzip",
    "acks": "all",
    "linger.ms": "5",
    "batch.size": 32768,
    "max.poll.records": 100,
    "session.timeout.ms": 10000,
    "fetch.max.bytes": "1048576",
    "enable.idempotence": True,
    "partition.assignment.strategy": "roundrobin",
}


def test_consumer_mapping() -> None:
    svc = _config(FULL)
    opts = client_options(svc.options, "consumer")
    assert opts["bootstrap_servers"] == ["h1:9092", "h2:9093"]
    assert opts["group_id"] == "grp"
    assert opts["client_id"] == "cli"
    assert opts["security_protocol"] == "SASL_SSL"
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert opts["sasl_plain_username"] == "user"
    assert opts["sasl_plain_password"] == "pw"
    assert opts["ssl_cafile"] == "/ca.pem"
    assert opts["ssl_certfile"] == "/cert.pem"
    assert opts["ssl_keyfile"] == "/key.pem"
    assert opts["ssl_password"] == "kpw"
    assert opts["auto_offset_reset"] == "earliest"
    assert opts["max_poll_records"] == 100
    assert opts["session_timeout_ms"] == 10000
    assert opts["fetch_max_bytes"] == 1048576
    assert [a.name for a in opts["partition_assignment_strategy"]] == ["roundrobin"]
    for producer_only in (
        "acks",
        "linger_ms",
        "batch_size",
        "compression_type",
        "enable_idempotence",
    ):
        assert producer_only not in opts


def test_producer_mapping() -> None:
    svc = _config(FULL)
    opts = client_options(svc.options, "producer")
    assert opts["acks"] == "all"
    assert opts["compression_type"] == "gzip"
    assert opts["linger_ms"] == 5
    assert opts["batch_size"] == 32768
    assert opts["enable_idempotence"] is True
    assert opts["sasl_plain_password"] == "pw"
    for consumer_only in (
        "group_id",
        "auto_offset_reset",
        "max_poll_records",
        "session_timeout_ms",
    ):
        assert consumer_only not in opts


def test_every_mapped_name_is_a_kafka_python_option() -> None:
    from kafka import KafkaConsumer, KafkaProducer

    for option in OPTIONS.values():
        known = set()
        if option.role in ("consumer", "both"):
            known |= set(KafkaConsumer.DEFAULT_CONFIG)
        if option.role in ("producer", "both"):
            known |= set(KafkaProducer.DEFAULT_CONFIG)
        assert option.python in known, option.key


def test_rdkafka_mapping_keeps_librdkafka_names() -> None:
    svc = _config({**FULL, "fetch.max.wait.ms": 200, "max.request.size": 2000000})
    consumer = rdkafka_options(svc.options, "consumer")
    assert consumer["bootstrap.servers"] == "h1:9092,h2:9093"
    assert consumer["group.id"] == "grp"
    assert consumer["auto.offset.reset"] == "earliest"
    assert consumer["fetch.wait.max.ms"] == 200
    assert "max.poll.records" not in consumer  # handled by mstream (consume(num_messages))
    assert "acks" not in consumer
    producer = rdkafka_options(svc.options, "producer")
    assert producer["acks"] == -1 and producer["message.max.bytes"] == 2000000
    assert "group.id" not in producer


def test_unknown_key_rejected_with_supported_list() -> None:
    with pytest.raises(ConfigError) as info:
        _config({"bootstrap.servers": "h:1", "foo.bar": "x"})
    text = str(info.value)
    assert 'cfg.toml: services[1]."foo.bar": unsupported Kafka option (kafka-python has no' in text
    for key in (
        "bootstrap.servers",
        "group.{id,",
        "sasl.{",
        "password",
        "offset_seek_back_seconds",
    ):
        assert key in text  # listed compactly, grouped by their first part


def test_a_misspelled_kafka_key_gets_the_nearest_one() -> None:
    with pytest.raises(ConfigError) as info:
        _config({"bootstrap.servers": "h:1", "sasl.pasword": "x"})
    assert "unsupported Kafka option: did you mean 'sasl.password'?" in str(info.value)


def test_bad_values_named() -> None:
    with pytest.raises(ConfigError) as info:
        _config({"bootstrap.servers": "h:1", "linger.ms": "soon", "acks": "most", "client": "java"})
    text = str(info.value)
    assert 'services[1]."linger.ms": expected an integer' in text
    assert 'services[1]."acks": must be one of' in text
    assert "services[1].client: must be auto, kafka-python or confluent" in text


def test_env_values_resolved_before_validation() -> None:
    svc = _config(
        {
            "bootstrap.servers": "env:KAFKA_BOOT",
            "sasl.password": "env:KAFKA_PW",
            "linger.ms": "env:LINGER",
        },
        {"KAFKA_BOOT": "b:1", "KAFKA_PW": "secret", "LINGER": "7"},
    )
    assert svc.options["bootstrap.servers"] == "b:1"
    assert svc.options["sasl.password"] == "secret"
    assert svc.options["linger.ms"] == 7


def test_plain_options_and_defaults() -> None:
    svc = _config(
        {"bootstrap.servers": "h:1", "offset_seek_back_seconds": 60, "client": "confluent"}
    )
    assert svc.options["offset_seek_back_seconds"] == 60
    assert svc.options["client"] == "confluent"
    assert _config({"bootstrap.servers": "h:1"}).options["client"] == "auto"
    with pytest.raises(ConfigError, match="offset_seek_back_seconds: must be at least 0"):
        _config({"bootstrap.servers": "h:1", "offset_seek_back_seconds": -1})


@pytest.mark.parametrize("importable", [True, False])
def test_auto_client_picks_confluent_when_importable(
    monkeypatch: pytest.MonkeyPatch, importable: bool
) -> None:
    """``client = "auto"`` (the default) runs on confluent-kafka when it is importable."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (
            (real(name, *a) if importable else None)
            if name == "confluent_kafka"
            else real(name, *a)
        ),
    )
    svc = _config({"bootstrap.servers": "127.0.0.1:1", "group.id": "g"})
    expected = "confluent" if importable else "kafka-python"
    assert kafka_provider.resolved_client(svc.options) == expected
    spec = get_provider("kafka")
    ctx = StepContext("c", "source")
    step = StepConfig("k", "t", output_encoding="json")
    source, sink = spec.source(svc, step, ctx), spec.sink(svc, step, StepContext("c", "sink"))
    want_source = kafka_confluent.ConfluentSource if importable else kafka_python.KafkaPythonSource
    want_sink = kafka_confluent.ConfluentSink if importable else kafka_python.KafkaPythonSink
    assert type(source) is want_source and type(sink) is want_sink
    # only an explicit "confluent" lets unmapped librdkafka properties through
    with pytest.raises(ConfigError, match=r"socket\.keepalive\.enable"):
        _config({"bootstrap.servers": "h:1", "socket.keepalive.enable": True})


def test_secret_fields_declared_and_masked() -> None:
    spec = get_provider("kafka")
    assert {"sasl.password", "ssl.key.password"} <= spec.secret_fields == SECRET_FIELDS
    masked = mask_service(_config(FULL))
    assert masked["sasl.password"] == "****" and masked["ssl.key.password"] == "****"
    assert masked["sasl.username"] == "user" and masked["group.id"] == "grp"


def test_supported_keys_cover_the_issue_list() -> None:
    for key in (
        "bootstrap.servers",
        "group.id",
        "client.id",
        "security.protocol",
        "sasl.mechanism",
        "sasl.username",
        "sasl.password",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.key.password",
        "auto.offset.reset",
        "compression.type",
        "acks",
        "linger.ms",
        "batch.size",
        "max.poll.records",
        "session.timeout.ms",
        "fetch.max.bytes",
    ):
        assert key in supported_keys()


def test_source_needs_group_id() -> None:
    raw = {
        "services": [
            {"name": "k", "provider": "kafka", "bootstrap.servers": "127.0.0.1:1"},
            {"name": "out", "provider": "stdout"},
        ],
        "connectors": [
            {
                "name": "c",
                "source": {"service_name": "k", "resource": "t", "output_encoding": "json"},
                "sinks": [{"service_name": "out", "output_encoding": "json"}],
            }
        ],
    }
    cfg = parse_config(raw)
    from mstream.runtime.connector import Connector

    connector = Connector(cfg.connectors[0], {s.name: s for s in cfg.services})
    connector.start()
    assert connector.wait(10)
    assert connector.state == "failed"
    assert connector.reason is not None and '"group.id"' in connector.reason


def test_step_batch_mode_validated() -> None:
    raw = {
        "services": [
            {"name": "g", "provider": "generator"},
            {"name": "k", "provider": "kafka", "bootstrap.servers": "h:1"},
        ],
        "connectors": [
            {
                "name": "c",
                "source": {"service_name": "g", "output_encoding": "json"},
                "sinks": [
                    {
                        "service_name": "k",
                        "resource": "t",
                        "output_encoding": "json",
                        "batch_mode": "lines",
                    }
                ],
            }
        ],
    }
    with pytest.raises(
        ConfigError, match=r"connectors\[0\].sinks\[0\].batch_mode: must be array or messages"
    ):
        parse_config(raw)
    raw["connectors"][0]["sinks"][0]["batch_mode"] = "messages"  # type: ignore[index]
    with pytest.raises(ConfigError, match="'messages' has no effect without batching"):
        parse_config(raw)
    raw["connectors"][0]["batch"] = {"kind": "count", "size": 10}  # type: ignore[index]
    assert parse_config(raw).connectors[0].sinks[0].options == {"batch_mode": "messages"}


def _sink(batch_mode: str = "array") -> KafkaSinkBase:
    svc = ServiceConfig("k", "kafka", {"bootstrap.servers": "h:1"})
    step = StepConfig("k", "t", options={"batch_mode": batch_mode})
    return KafkaSinkBase(svc, step, StepContext("c", "sink"))


def test_sink_messages_carry_key_and_headers() -> None:
    events = [
        Event(b'{"n":1}', "json", metadata={"key": b"k1", "headers": [("h", b"v")]}),
        Event(b'{"n":2}', "json", attributes={"a": "b"}),
    ]
    msgs = _sink().messages(Batch.of(events, batched=False))
    assert msgs == [
        (b'{"n":1}', b"k1", [("h", b"v")]),
        (b'{"n":2}', None, [("a", b"b")]),
    ]
    as_messages = _sink("messages").messages(Batch.of(events, batched=True))
    assert [m[0] for m in as_messages] == [b'{"n":1}', b'{"n":2}']
    array = _sink().messages(Batch.of(events, batched=True))
    assert [m[0] for m in array] == [b'[{"n":1},{"n":2}]']


def test_countdown_reports_once() -> None:
    got: list[BaseException | None] = []
    c = Completion(3, got.append, "sink")
    c.ok()
    c.fail(RuntimeError("boom"))
    c.ok()
    c.ok()
    assert len(got) == 1 and isinstance(got[0], DeliveryError) and "boom" in str(got[0])
    ok: list[BaseException | None] = []
    c = Completion(2, ok.append, "sink")
    c.ok()
    assert ok == []
    c.ok()
    assert ok == [None]


class _FakeSource(KafkaSourceBase):
    """The shared offset, rebalance and backpressure logic with a recording client.

    ``assigned`` is the client's assignment, ``paused`` its pause flags; ``chunks`` are
    what successive polls return: ``(partition, last_offset, count)`` per chunk part.
    """

    pause_at, resume_at = 8, 4  # the numbers the tests below count with
    pause_after = 0.1  # a full window pauses quickly here (the tests that pause stay short)

    def __init__(self, resume: object = None, seek_back: int | None = None) -> None:
        opts: dict[str, object] = {
            "bootstrap.servers": "h:1",
            "group.id": "g",
            "commit_interval_ms": 1000,
        }
        if seek_back is not None:
            opts["offset_seek_back_seconds"] = seek_back
        ctx = StepContext(
            "c", "source", checkpointing=True, resume_position=resume, stopping=threading.Event()
        )
        super().__init__(ServiceConfig("k", "kafka", opts), StepConfig("k", "t"), ctx)
        self.commits: list[dict[tuple[str, int], int]] = []
        self.seeks: list[tuple[tuple[str, int], int]] = []
        self.fail_commits = False
        self.refuse_seeks: set[TP] = set()
        self.assigned: set[TP] = set()
        self.paused_flags: set[TP] = set()
        self.refuse_pauses = False
        self.chunks: list[list[tuple[int, int, int]]] = []
        self.polls = 0

    def _poll_chunk(self, timeout: float) -> Batch | None:
        self.polls += 1
        if not self.chunks or {("t", p) for p, _, _ in self.chunks[0]} <= self.paused_flags:
            return None
        parts = self.chunks.pop(0)
        part_done = self._in_flight.open(len(parts))
        events = []
        for partition, last, count in parts:
            ack = self._chunk_ack(("t", partition), last, count, part_done)
            events += [Event(b"{}", "json", metadata={"offset": last}, ack=ack)] * count
        return Batch.of(events, batched=False)

    def _commit_offsets(self, offsets: Mapping[TP, int]) -> None:
        if self.fail_commits:
            raise RuntimeError("coordinator moved")
        self.commits.append(dict(offsets))

    def _seek(self, tp: TP, offset: int) -> bool:
        if tp in self.refuse_seeks:
            return False
        self.seeks.append((tp, offset))
        return True

    def _offsets_for_times(self, tps: list[TP], timestamp_ms: int) -> dict[TP, int | None]:
        return {tp: (7 if tp[1] == 0 else None) for tp in tps}

    def _end_offset(self, tp: TP) -> int:
        return 99

    def _assigned_now(self) -> set[TP]:
        return set(self.assigned)

    def _paused_now(self) -> set[TP]:
        return set(self.paused_flags)

    def _pause(self, tps: set[TP]) -> bool:
        if self.refuse_pauses:
            return False
        self.paused_flags |= tps
        return True

    def _resume(self, tps: set[TP]) -> bool:
        self.paused_flags -= tps
        return True

    def _client_errors(self) -> tuple[type[Exception], ...]:
        return (OSError,)

    # rebalances as an eager-protocol client reports them ------------------------------

    def assign(self, *partitions: int) -> None:
        self.assigned = {("t", p) for p in partitions}
        self._apply(Rebalance(ASSIGNED, frozenset(self.assigned), frozenset(self.assigned)))

    def revoke(self, *partitions: int) -> None:
        """Revoked; the client keeps them listed until the next assignment (kafka-python)."""
        tps = frozenset(("t", p) for p in partitions)
        self._apply(Rebalance(REVOKED, tps, frozenset(self.assigned)))

    def lose(self, *partitions: int) -> None:
        tps = frozenset(("t", p) for p in partitions)
        self._apply(Rebalance(LOST, tps, frozenset(self.assigned)))


def test_commits_in_partition_order_when_acks_arrive_out_of_order() -> None:
    src = _FakeSource()
    src.assign(0, 1)
    a0, b0, c0 = (src._chunk_ack(("t", 0), offset, 1) for offset in (10, 11, 12))
    a1 = src._chunk_ack(("t", 1), 3, 1)
    c0()
    a1()
    src.commit()
    assert src.commits == [{("t", 1): 4}]
    a0()
    src.commit()
    assert src.commits[-1] == {("t", 0): 11}
    b0()
    src.commit()
    assert src.commits[-1] == {("t", 0): 13}
    src.commit()  # nothing changed: no commit
    assert len(src.commits) == 3
    assert src.position() == {"t": {"0": 13, "1": 4}}


def test_failed_commit_is_retried() -> None:
    src = _FakeSource()
    src.assign(0)
    src._chunk_ack(("t", 0), 5, 1)()
    src.fail_commits = True
    src.commit()
    assert src.commits == []
    src.fail_commits = False
    src.commit()
    assert src.commits == [{("t", 0): 6}]


def test_revoke_commits_what_is_acknowledged_at_once_and_ignores_late_acks() -> None:
    src = _FakeSource()
    src.assign(0)
    first, second = src._chunk_ack(("t", 0), 0, 1), src._chunk_ack(("t", 0), 1, 1)
    first()
    src.revoke(0)  # `second` still in flight: no wait, offset 1 is committed
    assert src.commits == [{("t", 0): 1}]
    src.assign()  # the partition went to another member: its tracker is forgotten
    assert src.assignment() == []
    second()  # a late ack from before the revocation changes nothing
    src.assign(0)
    src.commit()
    assert src.commits == [{("t", 0): 1}]
    assert src.position() == {"t": {"0": 1}}


def test_partition_kept_through_a_rebalance_keeps_its_in_flight_chunks() -> None:
    """kafka-python keeps a kept partition's position: its tracker must carry on too."""
    src = _FakeSource()
    src.assign(0)
    in_flight = src._chunk_ack(("t", 0), 5, 1)
    src.revoke(0)
    src.assign(0)  # the same member got it back
    after = src._chunk_ack(("t", 0), 6, 1)
    after()
    src.commit()
    assert src.commits == []  # offset 5 is not acknowledged yet: 7 would skip it
    in_flight()
    src.commit()
    assert src.commits == [{("t", 0): 7}]


def test_lost_partitions_commit_nothing() -> None:
    src = _FakeSource()
    src.assign(0, 1)
    src._chunk_ack(("t", 0), 3, 1)()
    src.fail_commits = True
    src.commit()  # fails: offset 4 waits for a retry
    src.fail_commits = False
    src.lose(0, 1)
    src.commit()
    assert src.commits == [] and src.assignment() == []
    assert src.position() == {"t": {"0": 4}}  # delivered, so safe to checkpoint


def test_commit_refused_during_a_rebalance_is_retried_once_assigned() -> None:
    src = _FakeSource()
    src.assign(0, 1)
    src._chunk_ack(("t", 0), 8, 1)()
    src._chunk_ack(("t", 1), 2, 1)()
    src.fail_commits = True  # the group is rebalancing: commits are refused
    src.revoke(0, 1)
    assert src.commits == []
    src.fail_commits = False
    src.assign(1)  # partition 0 went elsewhere; its commit is tried once more now
    assert src.commits == [{("t", 0): 9, ("t", 1): 3}]
    src.fail_commits = True
    src._chunk_ack(("t", 1), 4, 1)()
    src.revoke(1)
    src.fail_commits = False
    src.assign()  # moved away while the retry still failed ... and now it succeeds
    assert src.commits[-1] == {("t", 1): 5}
    src.fail_commits = True
    src.assign(0)
    src._chunk_ack(("t", 0), 12, 1)()
    src.revoke(0)
    src.assign()  # refused again: left to the new owner, never retried afterwards
    src.fail_commits = False
    src.assign(1)
    src.commit()
    assert src.commits[-1] == {("t", 1): 5}


def test_checkpoint_seek_on_first_assignment_only() -> None:
    src = _FakeSource(resume={"t": {"0": 42, "1": "17"}})
    src.assign(0, 1, 2)
    assert sorted(src.seeks) == [(("t", 0), 42), (("t", 1), 17)]
    src.revoke(0, 1, 2)
    src.assign()
    src.assign(0)
    assert len(src.seeks) == 2  # a later rebalance keeps the group's committed offsets
    assert src.position() == {"t": {"0": 42, "1": 17}}


def test_seek_of_a_partition_revoked_meanwhile_is_done_on_its_next_assignment() -> None:
    src = _FakeSource(resume={"t": {"0": 42}})
    src.refuse_seeks = {("t", 0)}  # revoked by the client before the poll thread applied it
    src.assign(0)
    assert src.seeks == []
    src.revoke(0)
    src.assign()
    src.refuse_seeks = set()
    src.assign(0)
    assert src.seeks == [(("t", 0), 42)]


def test_seek_back_wins_over_checkpoint() -> None:
    src = _FakeSource(resume={"t": {"0": 42}}, seek_back=60)
    src.assign(0, 1)
    assert sorted(src.seeks) == [(("t", 0), 7), (("t", 1), 99)]


@pytest.mark.parametrize(
    "module", [kafka_provider, kafka_confluent, kafka_python, kafka_source, kafka_sink, kafka_flow]
)
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


def test_chunk_ack_commits_once_every_event_is_acknowledged() -> None:
    src = _FakeSource()
    src.assign(0)
    chunk_a = src._chunk_ack(("t", 0), 9, 3)  # offsets 7, 8, 9
    chunk_b = src._chunk_ack(("t", 0), 11, 2)  # offsets 10, 11
    chunk_b()
    chunk_b()
    chunk_a()
    chunk_a()
    src.commit()
    assert src.commits == []  # offset 9 (and so 11) not yet acknowledged
    chunk_a()
    src.commit()
    assert src.commits == [{("t", 0): 12}]


def _chunks(src: _FakeSource, n: int) -> list[list[Event]]:
    """``n`` polls of one event each, alternating partitions 0 and 1."""
    src.chunks = [[(i % 2, i, 1)] for i in range(n)]
    polled = [src._poll_chunk(0) for _ in range(n)]
    return [chunk.events for chunk in polled if chunk is not None]


def test_backpressure_pauses_at_eight_chunks_and_resumes_at_four() -> None:
    src = _FakeSource()
    src.assign(0, 1)
    chunks = _chunks(src, 8)
    src.assigned.add(("t", 2))  # assigned by the client, not applied yet: left alone
    src._throttle()
    assert src.paused_flags == {("t", 0), ("t", 1)} and src.pauses_total == 1
    assert src.paused == {("t", 0), ("t", 1)}
    src.assign(0, 1, 3)  # assigned while paused: paused too once applied
    src._throttle()
    assert src.paused_flags == {("t", 0), ("t", 1), ("t", 3)}
    for chunk in chunks[:3]:
        chunk[0].ack()  # type: ignore[misc]
    src._throttle()
    assert src.paused_flags == {("t", 0), ("t", 1), ("t", 3)}  # 5 in flight: still paused
    chunks[3][0].ack()  # type: ignore[misc]
    src._throttle()
    assert src.paused_flags == set() and src.paused == frozenset()


def test_a_full_window_that_drains_within_pause_after_is_not_paused() -> None:
    """Pausing drops the client's prefetched records: a window that the pipeline drains
    soon enough is waited for instead (nothing is polled meanwhile)."""
    src = _FakeSource()
    src.pause_after = 30.0
    src.assign(0, 1)
    chunks = _chunks(src, 8)
    acked = threading.Timer(0.2, chunks[0][0].ack)  # type: ignore[arg-type]
    acked.start()
    try:
        src._throttle()  # returns once the window has room again
    finally:
        acked.join()
    assert src._in_flight.count == 7
    assert src.paused_flags == set() and src.pauses_total == 0


def test_a_stop_ends_the_wait_for_a_full_window() -> None:
    src = _FakeSource()
    src.pause_after = 60.0
    src.assign(0)
    _chunks(src, 8)
    stop = threading.Timer(0.2, src.stopping.set)
    stop.start()
    began = time.monotonic()
    try:
        src._throttle()
    finally:
        stop.join()
    assert time.monotonic() - began < 10  # the stop, not the 60 s, ended it
    assert src.paused_flags == {("t", 0)}  # nothing more is read


def test_a_pause_the_client_refused_is_tried_again() -> None:
    src = _FakeSource()
    src.assign(0)
    _chunks(src, 8)
    src.refuse_pauses = True  # the partition was being revoked by the IO thread
    src._throttle()
    assert src.paused_flags == set()
    src.refuse_pauses = False
    src._throttle()
    assert src.paused_flags == {("t", 0)}


def test_run_keeps_polling_while_emit_blocks_and_pauses() -> None:
    """A slow pipeline blocks ``emit``; the poll thread goes on (paused) and loses nothing."""
    src = _FakeSource()
    src.assign(0, 1)
    src.chunks = [[(i % 2, i // 2, 1)] for i in range(12)]
    release, stopping = threading.Event(), threading.Event()
    emitted: list[list[Event]] = []

    def emit(chunk: Batch) -> None:
        release.wait(30)  # the slow sink
        events = chunk.events
        emitted.append(events)
        for e in events:
            assert e.ack is not None
            e.ack()

    worker = threading.Thread(target=src.run, args=(emit, stopping))
    worker.start()
    try:
        wait_for(lambda: src.paused_flags == {("t", 0), ("t", 1)}, 10, "the partitions paused")
        polls = src.polls
        wait_for(lambda: src.polls > polls + 5, 10, "polls while emit is blocked")
        assert len(src.chunks) == 12 - src.pause_at  # nothing more read once paused
        release.set()
        wait_for(lambda: len(emitted) == 12, 10, "every chunk emitted")
        wait_for(lambda: src.paused_flags == set(), 10, "the partitions resumed")
    finally:
        release.set()
        stopping.set()
        worker.join(10)
    assert not worker.is_alive()
    assert [e[0].metadata["offset"] for e in emitted] == [i // 2 for i in range(12)]
    src.commit()
    assert src.position() == {"t": {"0": 6, "1": 6}}


def test_emit_failure_is_raised_by_run() -> None:
    src = _FakeSource()
    src.assign(0)
    src.chunks = [[(0, 0, 1)]]

    def emit(chunk: Batch) -> None:
        raise DeliveryError("the pipeline failed; the source stops reading")

    with pytest.raises(DeliveryError, match="pipeline failed"):
        src.run(emit, threading.Event())


def test_stop_waits_for_the_emit_in_progress_and_drops_queued_chunks() -> None:
    src = _FakeSource()
    src.assign(0)
    src.chunks = [[(0, i, 1)] for i in range(3)]
    entered, release, stopping = threading.Event(), threading.Event(), threading.Event()
    emitted: list[int] = []

    def emit(chunk: Batch) -> None:
        events = chunk.events
        entered.set()
        release.wait(30)
        emitted.append(events[0].metadata["offset"])
        assert events[0].ack is not None
        events[0].ack()

    worker = threading.Thread(target=src.run, args=(emit, stopping))
    worker.start()
    try:
        assert entered.wait(10)
        wait_for(lambda: not src.chunks, 10, "every chunk read")
        stopping.set()
        wait_for(lambda: src.paused_flags == {("t", 0)}, 10, "paused while winding down")
        assert worker.is_alive()  # the chunk being emitted is waited for
        release.set()
        worker.join(10)
    finally:
        release.set()
        stopping.set()
    assert not worker.is_alive()
    assert emitted == [0]  # the two queued chunks were not emitted ...
    src.commit()
    assert src.commits[-1] == {("t", 0): 1}  # ... so their offsets are not committed


def test_emitter_keeps_order_and_reports_the_dropped() -> None:
    got: list[list[int]] = []
    entered, gate = threading.Event(), threading.Event()

    def emit(chunk: list[int]) -> None:
        entered.set()
        gate.wait(10)
        got.append(chunk)

    emitter = Emitter(emit, "test")
    emitter.start()
    for i in range(3):
        emitter.put([i])
    assert entered.wait(10)
    emitter.close()
    gate.set()
    emitter.join(10)
    assert not emitter.alive
    assert got == [[0]] and emitter.dropped() == 2


def test_in_flight_counts_a_chunk_done_when_all_its_parts_are() -> None:
    flight = InFlight()
    done = [flight.open(3) for _ in range(2)]
    for _ in range(3):
        done[0]()
    assert flight.count == 1
    done[1]()
    assert flight.count == 1


def test_every_librdkafka_property_passes_through_to_the_confluent_client() -> None:
    from mstream.config import parse_config
    from mstream.providers.kafka.config import rdkafka_options

    extra = {
        "socket.keepalive.enable": True,
        "sasl.kerberos.service.name": "kafka",
        "statistics.interval.ms": 60000,
    }
    service = parse_config(
        {
            "services": [
                {
                    "name": "k",
                    "provider": "kafka",
                    "client": "confluent",
                    "bootstrap.servers": "h:1",
                    **extra,
                }
            ]
        }
    ).services[0]
    for role in ("consumer", "producer"):
        options = rdkafka_options(service.options, role)
        assert {k: options[k] for k in extra} == extra


def test_an_unmappable_property_on_kafka_python_suggests_the_confluent_client() -> None:
    from mstream.config import parse_config
    from mstream.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "services": [
                    {
                        "name": "k",
                        "provider": "kafka",
                        "bootstrap.servers": "h:1",
                        "socket.keepalive.enable": True,
                    }
                ]
            }
        )
    [problem] = info.value.problems
    assert '"socket.keepalive.enable"' in problem and 'client = "confluent"' in problem


def test_a_property_librdkafka_refuses_fails_the_job_at_once_naming_it() -> None:
    pytest.importorskip("confluent_kafka")
    from mstream.config import parse_config
    from mstream.runtime import Connector

    config = parse_config(
        {
            "services": [
                {"name": "gen", "provider": "generator", "count": 1},
                {
                    "name": "k",
                    "provider": "kafka",
                    "client": "confluent",
                    "bootstrap.servers": "127.0.0.1:1",
                    "no.such.property": 1,
                },
            ],
            "connectors": [
                {
                    "name": "j",
                    "source": {
                        "service_name": "gen",
                        "resource": "counter",
                        "output_encoding": "json",
                    },
                    "sinks": [{"service_name": "k", "resource": "t", "output_encoding": "json"}],
                }
            ],
        }
    )
    connector = Connector(config.connectors[0], {s.name: s for s in config.services})
    connector.start()
    assert connector.wait(30)
    assert connector.state == "failed" and connector.restarts == 0
    assert "no.such.property" in (connector.reason or "")
