"""Kafka source and sink against a real broker (``kafka_bootstrap`` starts Apache Kafka).

Every test runs with both clients: kafka-python and confluent-kafka (``client =
"confluent"``). Waits are on conditions with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mstream.config import parse_config
from mstream.config.model import StepConfig
from mstream.core import Batch, Event
from mstream.encodings import AvroSchema, decode
from mstream.errors import EventsRejectedError
from mstream.providers.base import StepContext
from mstream.runtime.connector import Connector
from mstream.stores import CheckpointStore, MemoryCheckpointStore
from tests.waiting import wait_for

pytestmark = pytest.mark.kafka

CLIENTS = ["kafka-python", "confluent"]

AVRO_SCHEMA = {
    "type": "record",
    "name": "Item",
    "fields": [{"name": "n", "type": "long"}, {"name": "name", "type": "string"}],
}


# -- helpers ---------------------------------------------------------------------------


def create_topic(
    bootstrap: str, name: str, partitions: int = 1, config: dict[str, str] | None = None
) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config or {})])
    finally:
        admin.close()
    wait_for_partitions(bootstrap, name, partitions)


def wait_for_partitions(bootstrap: str, name: str, partitions: int) -> None:
    """Wait until the broker's metadata lists every partition of a new topic.

    Consumers that join a group before then assign from incomplete metadata and rejoin,
    which makes group tests depend on timing rather than on the code under test.
    """
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        deadline = time.monotonic() + 30
        while len(consumer.partitions_for_topic(name) or ()) < partitions:
            assert time.monotonic() < deadline, f"topic {name} has no metadata after 30s"
            threading.Event().wait(0.05)  # poll the condition; partitions_for_topic refetches
    finally:
        consumer.close()


def produce(
    bootstrap: str,
    topic: str,
    numbers: range,
    partitions: int = 1,
    timestamp_ms: int | None = None,
) -> None:
    """Produce ``{"n": i, ...}``, key ``k<i>``, header ``h=v<i>``, partition ``i % partitions``."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for i in numbers:
            producer.send(
                topic,
                value=json.dumps({"n": i, "name": f"item-{i}"}).encode(),
                key=f"k{i}".encode(),
                headers=[("h", f"v{i}".encode()), ("src", b"test")],
                partition=i % partitions,
                timestamp_ms=timestamp_ms,
            )
        producer.flush(timeout=30)
    finally:
        producer.close()


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """Every record of ``topic`` (all partitions, from the beginning), waiting for ``expected``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        # anything beyond `expected` that is already there is read too
        for batch in consumer.poll(timeout_ms=300).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


class BackgroundProducer:
    """Produces ``{"n": i}`` (partition ``i % partitions``) until stopped: a live stream.

    Example:
        with BackgroundProducer(bootstrap, topic, 2) as producer: ...; total = producer.stop()
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int, limit: int = 200_000) -> None:
        self.bootstrap, self.topic, self.partitions, self.limit = (
            bootstrap,
            topic,
            partitions,
            limit,
        )
        self.count = 0
        self._done = threading.Event()
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        try:
            while not self._done.is_set() and self.count < self.limit:
                for i in range(self.count, self.count + 200):
                    producer.send(
                        self.topic,
                        value=json.dumps({"n": i, "name": f"item-{i}"}).encode(),
                        key=f"k{i}".encode(),
                        partition=i % self.partitions,
                    )
                producer.flush(timeout=30)
                self.count += 200
        except BaseException as exc:  # reported by stop()
            self._error.append(exc)
        finally:
            producer.close()

    def __enter__(self) -> BackgroundProducer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> int:
        """Stop producing; returns how many messages were produced (all acknowledged)."""
        self._done.set()
        self._thread.join(60)
        assert not self._thread.is_alive() and not self._error, self._error
        return self.count

    @property
    def finished(self) -> bool:
        """Whether the producer stopped on its own (reached ``limit``)."""
        return self.count >= self.limit


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets of ``topic``."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def file_numbers(path: Path) -> list[int]:
    """The ``n`` of every line of a JSON-lines file (complete lines only)."""
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line)["n"] for line in text.split("\n")[:-1] if line]


def kafka_service(bootstrap: str, client: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "kafka",
        "provider": "kafka",
        "bootstrap.servers": bootstrap,
        "client": client,
        **extra,
    }


def connector(
    services: list[dict[str, Any]],
    definition: dict[str, Any],
    store: CheckpointStore | None = None,
) -> Connector:
    cfg = parse_config({"services": services, "connectors": [definition]})
    return Connector(cfg.connectors[0], {s.name: s for s in cfg.services}, store)


@pytest.fixture
def topic(kafka_bootstrap: str, unique_name: str) -> Iterator[str]:
    yield f"in-{unique_name}"


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    if request.param == "confluent":
        pytest.importorskip("confluent_kafka")
    return str(request.param)


def tail_check(
    first: list[int], second: list[int], partitions: int, total: int, resume: dict[str, int]
) -> Counter[int]:
    """Nothing lost; the duplicates are exactly the first run's events after the checkpoint.

    Message ``n`` went to partition ``n % partitions`` at offset ``n // partitions``; ``resume``
    is the saved checkpoint ``{partition: next_offset}`` the second run started from.
    """
    seen = Counter(first) + Counter(second)
    missing = set(range(total)) - set(seen)
    assert not missing, f"{len(missing)} messages lost, e.g. {sorted(missing)[:5]}"
    assert set(seen) == set(range(total))
    dups = {n for n, c in seen.items() if c > 1}
    for p in range(partitions):
        start = resume.get(str(p), 0)
        firsts = sorted(n for n in set(first) if n % partitions == p)
        dup_p = sorted(n for n in dups if n % partitions == p)
        assert dup_p == [n for n in firsts if n // partitions >= start], f"partition {p}"
    assert all(c <= 2 for c in seen.values())
    return seen


# -- tests -----------------------------------------------------------------------------


def test_source_events_carry_metadata(
    kafka_bootstrap: str, topic: str, unique_name: str, client: str
) -> None:
    create_topic(kafka_bootstrap, topic, 2)
    produce(kafka_bootstrap, topic, range(10), partitions=2, timestamp_ms=1_700_000_000_000)
    svc = parse_config(
        {"services": [kafka_service(kafka_bootstrap, client, **{"group.id": unique_name})]}
    ).services[0]
    from mstream.providers import get_provider

    spec = get_provider("kafka")
    assert spec.source is not None
    stopping = threading.Event()
    src = spec.source(
        svc, StepConfig("kafka", topic), StepContext("t", "source", stopping=stopping)
    )
    chunks: list[list[Event]] = []

    def emit(chunk: Batch) -> None:
        events = chunk.events
        chunks.append(events)
        for e in events:
            assert e.ack is not None
            e.ack()
        if sum(len(c) for c in chunks) >= 10:
            stopping.set()

    src.open()
    try:
        worker = threading.Thread(target=src.run, args=(emit, stopping))
        worker.start()
        worker.join(60)
        assert not worker.is_alive()
    finally:
        stopping.set()
        src.close()
    events = [e for c in chunks for e in c]
    assert len(events) == 10
    assert any(len(c) > 1 for c in chunks)  # chunks, not single events
    for e in events:
        n = e.doc["n"]
        assert e.metadata["key"] == f"k{n}".encode()
        assert e.metadata["topic"] == topic and e.metadata["partition"] == n % 2
        assert e.metadata["offset"] == n // 2
        assert e.metadata["timestamp"] == 1_700_000_000_000
        assert e.metadata["headers"] == [("h", f"v{n}".encode()), ("src", b"test")]
        assert e.attributes == {"h": f"v{n}", "src": "test"}
    assert committed(kafka_bootstrap, unique_name, topic) == {0: 5, 1: 5}


def test_kafka_to_kafka_json_to_avro(
    kafka_bootstrap: str, topic: str, unique_name: str, client: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic, 3)
    out = f"out-{unique_name}"
    create_topic(kafka_bootstrap, out, 1)
    total = 600
    produce(kafka_bootstrap, topic, range(total), partitions=3)
    (tmp_path / "item.avsc").write_text(json.dumps(AVRO_SCHEMA))
    c = connector(
        [
            kafka_service(kafka_bootstrap, client, **{"group.id": unique_name}),
            {"name": "schemas", "provider": "file", "base_dir": str(tmp_path)},
        ],
        {
            "name": "k2k",
            "schemas": [{"id": "item", "service_name": "schemas", "resource": "item.avsc"}],
            "source": {"service_name": "kafka", "resource": topic, "output_encoding": "json"},
            "sinks": [
                {
                    "service_name": "kafka",
                    "resource": out,
                    "output_encoding": "avro",
                    "schema_id": "item",
                }
            ],
        },
    )
    c.start()
    try:
        wait_for(lambda: c.counters.events_out >= total, 60, f"{total} events delivered")
        ends = end_offsets(kafka_bootstrap, topic)
        wait_for(
            lambda: committed(kafka_bootstrap, unique_name, topic) == ends, 30, "offsets committed"
        )
    finally:
        assert c.stop(drain=True)
    assert c.state == "stopped", c.reason
    records = read_topic(kafka_bootstrap, out, total)
    assert len(records) == total
    schema = AvroSchema.parse(json.dumps(AVRO_SCHEMA))
    by_n = {}
    for r in records:
        doc = decode(r.value, "avro", schema)
        by_n[doc["n"]] = r
        assert doc["name"] == f"item-{doc['n']}"
        assert r.key == f"k{doc['n']}".encode()
        assert list(r.headers) == [("h", f"v{doc['n']}".encode()), ("src", b"test")]
    assert sorted(by_n) == list(range(total))


@pytest.mark.parametrize("batch_mode", ["array", "messages"])
def test_batched_sink_modes(
    kafka_bootstrap: str, topic: str, unique_name: str, client: str, batch_mode: str
) -> None:
    create_topic(kafka_bootstrap, topic, 1)
    out = f"out-{unique_name}"
    create_topic(kafka_bootstrap, out, 1)
    produce(kafka_bootstrap, topic, range(100))
    c = connector(
        [kafka_service(kafka_bootstrap, client, **{"group.id": unique_name})],
        {
            "name": "batched",
            "batch": {"kind": "count", "size": 10},
            "source": {"service_name": "kafka", "resource": topic, "output_encoding": "json"},
            "sinks": [
                {
                    "service_name": "kafka",
                    "resource": out,
                    "output_encoding": "json",
                    "batch_mode": batch_mode,
                }
            ],
        },
    )
    c.start()
    try:
        wait_for(lambda: c.counters.events_out >= 100, 60, "100 events delivered")
    finally:
        assert c.stop(drain=True)
    expected = 10 if batch_mode == "array" else 100
    records = read_topic(kafka_bootstrap, out, expected)
    assert len(records) == expected
    if batch_mode == "array":
        arrays = [json.loads(r.value) for r in records]
        assert all(isinstance(a, list) and len(a) == 10 for a in arrays)
        assert sorted(d["n"] for a in arrays for d in a) == list(range(100))
    else:
        assert sorted(json.loads(r.value)["n"] for r in records) == list(range(100))
        assert all(r.key == f"k{json.loads(r.value)['n']}".encode() for r in records)


def test_kafka_to_file(
    kafka_bootstrap: str, topic: str, unique_name: str, client: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic, 3)
    total = 900
    produce(kafka_bootstrap, topic, range(total), partitions=3)
    c = connector(
        [
            kafka_service(kafka_bootstrap, client, **{"group.id": unique_name}),
            {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
        ],
        {
            "name": "k2f",
            "source": {"service_name": "kafka", "resource": topic, "output_encoding": "json"},
            "sinks": [
                {"service_name": "files", "resource": "out.jsonl", "output_encoding": "json"}
            ],
        },
    )
    c.start()
    try:
        wait_for(
            lambda: len(file_numbers(tmp_path / "out.jsonl")) >= total, 60, "every line written"
        )
    finally:
        assert c.stop(drain=True)
    assert sorted(file_numbers(tmp_path / "out.jsonl")) == list(range(total))
    assert committed(kafka_bootstrap, unique_name, topic) == end_offsets(kafka_bootstrap, topic)


def test_stop_mid_stream_then_resume(
    kafka_bootstrap: str, topic: str, unique_name: str, client: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic, 2)
    store = MemoryCheckpointStore()
    services = [
        kafka_service(kafka_bootstrap, client, **{"group.id": unique_name, "max.poll.records": 50}),
        {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
    ]

    def definition(resource: str) -> dict[str, Any]:
        return {
            "name": "resume",
            "checkpoint": {"enabled": True, "interval_ms": 50},
            "source": {"service_name": "kafka", "resource": topic, "output_encoding": "json"},
            "sinks": [{"service_name": "files", "resource": resource, "output_encoding": "json"}],
        }

    first = connector(services, definition("first.jsonl"), store)
    with BackgroundProducer(kafka_bootstrap, topic, 2) as producer:
        first.start()
        wait_for(
            lambda: len(file_numbers(tmp_path / "first.jsonl")) >= 2000, 60, "the first 2000 lines"
        )
        # a fast run writes 2000 lines within one checkpoint interval: stop after a save
        wait_for(lambda: store.latest("resume") is not None, 30, "a checkpoint of the first run")
        assert first.stop(drain=False)
        assert not producer.finished, "the stream ended before the stop"
    total = producer.stop()
    first_run = file_numbers(tmp_path / "first.jsonl")
    assert len(first_run) < total
    saved = store.latest("resume")
    assert saved is not None and set(saved.position) == {topic}
    # a partition the checkpoint has no position for resumes from the group's commit
    starts = {
        str(p): offset for p, offset in committed(kafka_bootstrap, unique_name, topic).items()
    }
    starts.update(saved.position[topic])

    second = connector(services, definition("second.jsonl"), store)
    second.start()
    try:
        wait_for(
            lambda: len(set(first_run) | set(file_numbers(tmp_path / "second.jsonl"))) >= total,
            120,
            "every message after the restart",
        )
        ends = end_offsets(kafka_bootstrap, topic)
        wait_for(
            lambda: committed(kafka_bootstrap, unique_name, topic) == ends, 30, "offsets committed"
        )
    finally:
        assert second.stop(drain=True)
    second_run = file_numbers(tmp_path / "second.jsonl")
    tail_check(first_run, second_run, 2, total, starts)
    latest = store.latest("resume")
    assert latest is not None
    assert latest.position == {topic: {str(p): o for p, o in ends.items()}}


def test_group_members_split_partitions(
    kafka_bootstrap: str, topic: str, unique_name: str, client: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic, 4)
    services = [
        kafka_service(
            kafka_bootstrap, client, **{"group.id": unique_name, "session.timeout.ms": 10000}
        ),
        {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
    ]
    members = [
        connector(
            services,
            {
                "name": f"member-{i}",
                "source": {"service_name": "kafka", "resource": topic, "output_encoding": "json"},
                "sinks": [
                    {"service_name": "files", "resource": f"m{i}.jsonl", "output_encoding": "json"}
                ],
            },
        )
        for i in range(2)
    ]
    for m in members:
        m.start()

    def assignments() -> list[set[tuple[str, int]]]:
        out = []
        for m in members:
            source = m._source
            out.append(set(source.assignment()) if source is not None else set())  # type: ignore[attr-defined]
        return out

    try:
        wait_for(
            lambda: (
                [len(a) for a in assignments()] == [2, 2]
                and set().union(*assignments()) == {(topic, p) for p in range(4)}
            ),
            60,
            "both members holding two partitions each",
        )
        total = 4000
        produce(kafka_bootstrap, topic, range(total), partitions=4)
        wait_for(
            lambda: sum(len(file_numbers(tmp_path / f"m{i}.jsonl")) for i in range(2)) >= total,
            60,
            "every message delivered by the group",
        )
        ends = end_offsets(kafka_bootstrap, topic)
        wait_for(
            lambda: committed(kafka_bootstrap, unique_name, topic) == ends, 30, "offsets committed"
        )
    finally:
        for m in members:
            assert m.stop(drain=True)
    runs = [file_numbers(tmp_path / f"m{i}.jsonl") for i in range(2)]
    combined = runs[0] + runs[1]
    assert sorted(combined) == list(range(total))  # every message exactly once
    partitions_of = [{n % 4 for n in run} for run in runs]
    assert len(partitions_of[0]) == 2 and len(partitions_of[1]) == 2
    assert not partitions_of[0] & partitions_of[1]


def test_offset_seek_back_replays_recent_only(
    kafka_bootstrap: str, topic: str, unique_name: str, client: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic, 2)
    now_ms = int(time.time() * 1000)
    produce(
        kafka_bootstrap, topic, range(0, 40), partitions=2, timestamp_ms=now_ms - 3 * 3600 * 1000
    )
    produce(kafka_bootstrap, topic, range(40, 100), partitions=2, timestamp_ms=now_ms - 60 * 1000)
    store = MemoryCheckpointStore()
    store.save("seekback", {topic: {"0": 0, "1": 0}})  # the seek back wins over this checkpoint
    c = connector(
        [
            kafka_service(
                kafka_bootstrap,
                client,
                **{"group.id": unique_name, "offset_seek_back_seconds": 3600},
            ),
            {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
        ],
        {
            "name": "seekback",
            "checkpoint": {"enabled": True, "interval_ms": 50},
            "source": {"service_name": "kafka", "resource": topic, "output_encoding": "json"},
            "sinks": [
                {"service_name": "files", "resource": "out.jsonl", "output_encoding": "json"}
            ],
        },
        store,
    )
    c.start()
    try:
        ends = end_offsets(kafka_bootstrap, topic)
        wait_for(
            lambda: committed(kafka_bootstrap, unique_name, topic) == ends,
            60,
            "the recent messages committed",
        )
    finally:
        assert c.stop(drain=True)
    assert sorted(file_numbers(tmp_path / "out.jsonl")) == list(range(40, 100))


def test_seek_back_beyond_newest_starts_at_end(
    kafka_bootstrap: str, topic: str, unique_name: str, client: str, tmp_path: Path
) -> None:
    create_topic(kafka_bootstrap, topic, 1)
    produce(kafka_bootstrap, topic, range(20), timestamp_ms=int(time.time() * 1000) - 7200 * 1000)
    c = connector(
        [
            kafka_service(
                kafka_bootstrap, client, **{"group.id": unique_name, "offset_seek_back_seconds": 60}
            ),
            {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
        ],
        {
            "name": "seekend",
            "source": {"service_name": "kafka", "resource": topic, "output_encoding": "json"},
            "sinks": [
                {"service_name": "files", "resource": "out.jsonl", "output_encoding": "json"}
            ],
        },
    )
    c.start()
    try:
        wait_for(lambda: c._source is not None and bool(c._source.assignment()), 60, "assignment")  # type: ignore[attr-defined]
        produce(kafka_bootstrap, topic, range(20, 25))
        wait_for(lambda: len(file_numbers(tmp_path / "out.jsonl")) >= 5, 60, "the new messages")
    finally:
        assert c.stop(drain=True)
    assert sorted(file_numbers(tmp_path / "out.jsonl")) == list(range(20, 25))


class OpenSink:
    """A Kafka sink opened on ``topic``; :meth:`write` sends events and awaits the outcome.

    Every outcome its writes reported is kept in ``outcomes`` (each write must report
    exactly once).
    """

    def __init__(self, bootstrap: str, client: str, topic: str, **service: Any) -> None:
        from mstream.providers import get_provider

        svc = parse_config({"services": [kafka_service(bootstrap, client, **service)]})
        spec = get_provider("kafka")
        assert spec.sink is not None
        self.sink = spec.sink(svc.services[0], StepConfig("kafka", topic), StepContext("t", "sink"))
        self.sink.open()
        self.outcomes: list[BaseException | None] = []
        self._settled = threading.Condition()

    def write(self, events: list[Event], timeout: float = 30) -> BaseException | None:
        """Write ``events`` as one batch; the outcome its ``done`` reported."""
        before = len(self.outcomes)

        def done(error: BaseException | None) -> None:
            with self._settled:
                self.outcomes.append(error)
                self._settled.notify_all()

        self.sink.write(Batch.of(events, batched=False), done)
        with self._settled:
            assert self._settled.wait_for(lambda: len(self.outcomes) > before, timeout)
        return self.outcomes[before]

    def close(self) -> None:
        self.sink.close()


def test_sink_reports_broker_rejection(kafka_bootstrap: str, unique_name: str, client: str) -> None:
    out = f"small-{unique_name}"
    create_topic(kafka_bootstrap, out, 1, {"max.message.bytes": "1000"})
    sink = OpenSink(kafka_bootstrap, client, out, retries=1)
    too_big = Event(b'{"pad": "' + b"x" * 5000 + b'"}', "json")
    try:
        assert sink.write([Event(b'{"n": 1}', "json")]) is None
        sink.write([Event(b'{"n": 2}', "json"), too_big], timeout=60)
    finally:
        sink.close()
    results = sink.outcomes
    # the broker refused a message for good: its event is rejected (to be dead-lettered),
    # not retried, and every other event is either delivered or rejected with it
    assert len(results) == 2 and isinstance(results[1], EventsRejectedError)
    rejected = [event for event, _ in results[1].rejected]
    assert too_big in rejected
    reason = results[1].rejected[0][1].lower()
    assert "too large" in reason or "size" in reason
    delivered = {r.value for r in read_topic(kafka_bootstrap, out, 1)}
    assert delivered | {e.payload for e in rejected} == {b'{"n": 1}', b'{"n": 2}', too_big.payload}
    if client == "kafka-python":  # splits the refused request; librdkafka refuses the set
        assert rejected == [too_big] and b'{"n": 2}' in delivered


def test_sink_normalizes_header_values_the_client_refuses(
    kafka_bootstrap: str, unique_name: str, client: str
) -> None:
    """Headers built in code (str or null values) are sent as bytes; attributes as headers."""
    out = f"hdr-{unique_name}"
    create_topic(kafka_bootstrap, out, 1)
    sink = OpenSink(kafka_bootstrap, client, out)
    events = [
        Event(b'{"n": 1}', "json", metadata={"headers": [("s", "text"), ("z", None)]}),
        Event(b'{"n": 2}', "json", metadata={"headers": (("t", b"tuple"),)}),
        Event(b'{"n": 3}', "json", attributes={"a": "attr", "b": 7}),  # type: ignore[dict-item]  # a non-str attribute, as library code may set
    ]
    try:
        assert sink.write(events) is None
    finally:
        sink.close()
    assert sink.outcomes == [None]
    got = {json.loads(r.value)["n"]: dict(r.headers) for r in read_topic(kafka_bootstrap, out, 3)}
    null = None if client == "confluent" else b""  # kafka-python cannot send a null value
    assert got == {
        1: {"s": b"text", "z": null},
        2: {"t": b"tuple"},
        3: {"a": b"attr", "b": b"7"},
    }


def test_kafka_python_sink_partitions_keys_as_the_client_does(
    kafka_bootstrap: str, unique_name: str
) -> None:
    """Keyed messages land where kafka-python's default partitioner puts them (the sink
    computes it once per write); unkeyed ones are left to the client."""
    from kafka.partitioner.default import DefaultPartitioner

    out = f"keys-{unique_name}"
    create_topic(kafka_bootstrap, out, 5)
    sink = OpenSink(kafka_bootstrap, "kafka-python", out)
    keys = [f"user-{i}".encode() for i in range(200)]
    events = [Event(b'{"n": %d}' % i, "json", metadata={"key": k}) for i, k in enumerate(keys)]
    events.append(Event(b'{"n": -1}', "json"))  # no key
    try:
        assert sink.write(events) is None
    finally:
        sink.close()
    assert sink.outcomes == [None]
    got = {r.key: r.partition for r in read_topic(kafka_bootstrap, out, len(events))}
    assert len(got) == len(events)

    class Cluster:  # what DefaultPartitioner reads of the client's metadata
        def topics(self) -> set[str]:
            return {out}

        def partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(5))

        available_partitions_for_topic = partitions_for_topic

    client_would = DefaultPartitioner()
    expected = {k: client_would.partition(out, k, k, None, None, Cluster()) for k in keys}
    assert {k: got[k] for k in keys} == expected
    assert len(set(expected.values())) == 5  # the keys spread over every partition
    assert got[None] in range(5)


def test_sink_rejects_an_oversized_event_alone(
    kafka_bootstrap: str, unique_name: str, client: str, tmp_path: Path
) -> None:
    """An event over the client's request size limit is dead-lettered; its chunk goes on."""
    out = f"out-{unique_name}"
    create_topic(kafka_bootstrap, out, 1)
    huge = "x" * 1_200_000  # over the default 1 MB request limit of both clients
    (tmp_path / "in.jsonl").write_text(
        "\n".join(json.dumps(d) for d in [{"n": 1}, {"n": 2, "pad": huge}, {"n": 3}]) + "\n"
    )
    services = [
        kafka_service(kafka_bootstrap, client),
        {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
    ]
    c = connector(
        services,
        {
            "name": "big",
            "source": {"service_name": "files", "resource": "in.jsonl", "output_encoding": "json"},
            "sinks": [{"service_name": "kafka", "resource": out, "output_encoding": "json"}],
            "dead_letter": {"service_name": "files", "resource": "dead.jsonl"},
        },
    )
    c.start()
    assert c.wait(60) and c.state == "completed", c.reason
    delivered = [json.loads(r.value)["n"] for r in read_topic(kafka_bootstrap, out, 2)]
    assert sorted(delivered) == [1, 3]
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert len(dead) == 1 and "too large" in dead[0]["reason"].lower()
    assert c.counters.dead_lettered == 1


def test_unreachable_broker_fails_with_reason(
    unique_name: str, client: str, tmp_path: Path
) -> None:
    from tests.servers.process import free_port

    services = [
        kafka_service(
            f"127.0.0.1:{free_port()}",
            client,
            **{"request.timeout.ms": 2000, "delivery.timeout.ms": 3000, "max.block.ms": 3000},
        ),
        {"name": "g", "provider": "generator", "count": 5},
    ]
    c = connector(
        services,
        {
            "name": "down",
            "source": {"service_name": "g", "resource": "counter", "output_encoding": "json"},
            "sinks": [{"service_name": "kafka", "resource": "nowhere", "output_encoding": "json"}],
        },
    )
    c.max_restarts = 0
    c.start()
    finished = c.wait(30)  # bootstrap_timeout_ms: 3 s, not the client's 30 s
    if not finished:
        c.stop(drain=False)
    assert finished and c.state == "failed"
    assert c.reason and "kafka sink 'nowhere'" in c.reason
    assert "cannot reach bootstrap servers 127.0.0.1:" in c.reason


def test_member_without_heartbeats_is_restarted(
    kafka_bootstrap: str, topic: str, unique_name: str, tmp_path: Path
) -> None:
    """A kafka-python member whose heartbeats stopped is replaced by a fresh consumer."""
    create_topic(kafka_bootstrap, topic, 2)
    services = [
        kafka_service(
            kafka_bootstrap, "kafka-python", **{"group.id": unique_name, "session.timeout.ms": 6000}
        ),
        {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
    ]
    member = connector(
        services,
        {
            "name": "watched",
            "source": {"service_name": "kafka", "resource": topic, "output_encoding": "json"},
            "sinks": [
                {"service_name": "files", "resource": "out.jsonl", "output_encoding": "json"}
            ],
        },
    )
    member.start()
    try:
        wait_for(lambda: len(getattr(member._source, "assignment", list)()) == 2, 30, "assignment")
        first = member._source
        heartbeat = first._consumer._coordinator.heartbeat  # type: ignore[union-attr]

        class Silent:
            """The heartbeat state as the stalled client shows it: nothing sent for 60 s."""

            last_send = last_reset = time.monotonic() - 60

            def __getattr__(self, name: str) -> Any:
                return getattr(heartbeat, name)

        first._consumer._coordinator.heartbeat = Silent()  # type: ignore[union-attr]
        wait_for(lambda: member.restarts == 1 and member._source is not first, 30, "a restart")
        assert "no group heartbeat" in (member.counters.last_error or "")
        produce(kafka_bootstrap, topic, range(100), partitions=2)
        wait_for(
            lambda: len(file_numbers(tmp_path / "out.jsonl")) >= 100, 60, "delivery after restart"
        )
    finally:
        assert member.stop(drain=True)
    assert sorted(file_numbers(tmp_path / "out.jsonl")) == list(range(100))
