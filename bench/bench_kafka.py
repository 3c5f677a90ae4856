"""Kafka -> Kafka benchmark: the mstream engine against a plain consume -> produce loop.

N 10-field user events (JSON) are produced once to an input topic. Each case then moves
them to a fresh output topic with a fresh consumer group, once through the engine (a real
Connector: consumer group, Rx pipeline, conversion, asynchronous producer sink, offset
commits after acknowledgement) and once as a plain client loop doing the same conversion
(poll, send, flush and commit at the end: the ceiling). Both clocks run from the first
event read to the last one acknowledged (group join excluded). Each run happens in a fresh
subprocess so its peak RSS is its own, after the start-up the ``mstream`` command makes
(:func:`start_up`: imports, the start-up heap frozen, the young generation widened).
Without ``--bootstrap`` a broker is started with the test-suite launcher
(``tests/servers``) and stopped at the end. The "mirror" cases run the passthrough with
``verify_payloads = false`` (payloads forwarded without the JSON check at the source),
which is what the plain loop does.

    python bench/bench_kafka.py [--events 200000] [--bootstrap 127.0.0.1:9092]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
USER_SCHEMA = ROOT / "examples" / "schemas" / "user.avsc"
PARTITIONS = 4
LINGER_MS = 5
BATCH_BYTES = 1_000_000
"""Producer settings, the same for the engine and the plain loops (librdkafka's defaults)."""

CASES: dict[str, dict[str, str]] = {
    "passthrough": {"encoding": "json", "client": "kafka-python"},
    "mirror": {"encoding": "json", "client": "kafka-python", "verify": "no"},
    "json->avro": {"encoding": "avro", "client": "kafka-python"},
    "passthrough (confluent)": {"encoding": "json", "client": "confluent"},
    "mirror (confluent)": {"encoding": "json", "client": "confluent", "verify": "no"},
    "json->avro (confluent)": {"encoding": "avro", "client": "confluent"},
}


@contextmanager
def kafka_broker(bootstrap: str | None) -> Iterator[str]:
    """``bootstrap`` when given, else a broker started with the test-suite launcher
    (``tests/servers``) for the block, stopped after it."""
    if bootstrap is not None:
        yield bootstrap
        return
    sys.path.insert(0, str(ROOT))
    from tests.servers.launchers import start_kafka

    server = start_kafka().server
    try:
        yield server.address
    finally:
        server.stop()


def _confluent_available() -> bool:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return False
    return True


def _create_topic(bootstrap: str, name: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    finally:
        admin.close()


def produce_input(bootstrap: str, topic: str, events: int) -> None:
    """Fill ``topic`` with ``events`` user events (keys and a header included)."""
    from kafka import KafkaProducer

    from mstream.providers.generator import make_user

    _create_topic(bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
    try:
        for i in range(events):
            producer.send(topic, value=make_user(i), key=b"%d" % i, headers=[("src", b"bench")])
        producer.flush()
    finally:
        producer.close()


def run_engine(bootstrap: str, topic: str, case: str, events: int) -> float:
    """Run one case through a Connector; seconds until every event is acknowledged."""
    from mstream.config import parse_config
    from mstream.runtime import Connector

    spec = CASES[case]
    out = f"out-{uuid.uuid4().hex[:8]}"
    _create_topic(bootstrap, out)
    sink: dict[str, Any] = {
        "service_name": "kafka",
        "resource": out,
        "output_encoding": spec["encoding"],
    }
    if spec["encoding"] == "avro":
        sink["schema_id"] = "user"
    cfg = parse_config(
        {
            "services": [
                {
                    "name": "kafka",
                    "provider": "kafka",
                    "client": spec["client"],
                    "bootstrap.servers": bootstrap,
                    "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                    "linger.ms": LINGER_MS,
                    "batch.size": BATCH_BYTES,
                },
                {"name": "schemas", "provider": "file"},
            ],
            "connectors": [
                {
                    "name": "bench",
                    "schemas": [
                        {"id": "user", "service_name": "schemas", "resource": str(USER_SCHEMA)}
                    ],
                    "source": {
                        "service_name": "kafka",
                        "resource": topic,
                        "output_encoding": "json",
                    },
                    "sinks": [sink],
                    "verify_payloads": spec.get("verify") != "no",
                }
            ],
        }
    )
    connector = Connector(cfg.connectors[0], {s.name: s for s in cfg.services})
    connector.start()
    pause = threading.Event()
    while connector.counters.events_in == 0:  # the clock starts with the first event read
        if not connector.running:
            raise RuntimeError(f"connector ended early: {connector.state} {connector.reason}")
        pause.wait(0.002)
    began = time.perf_counter()
    while connector.counters.events_out < events:
        if not connector.running:
            raise RuntimeError(f"connector ended early: {connector.state} {connector.reason}")
        pause.wait(0.01)
    elapsed = time.perf_counter() - began
    connector.stop(drain=True)
    return elapsed


def run_plain(bootstrap: str, topic: str, case: str, events: int) -> float:
    """The ceiling: poll, convert, send; flush and commit at the end."""
    spec = CASES[case]
    out = f"out-{uuid.uuid4().hex[:8]}"
    _create_topic(bootstrap, out)
    convert = _converter(spec["encoding"])
    group = f"plain-{uuid.uuid4().hex[:8]}"
    if spec["client"] == "confluent":
        return _plain_confluent(bootstrap, topic, out, group, events, convert)
    from kafka import KafkaConsumer, KafkaProducer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    # the kafka-python 3.0 group-join fix the engine uses too: without it a member can
    # stay out of the group forever (see mstream/providers/kafka_python_join.py)
    from mstream.providers import kafka_python_join

    kafka_python_join.install(consumer)
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=LINGER_MS, batch_size=BATCH_BYTES
    )
    began = 0.0
    seen = 0
    while seen < events:
        for records in consumer.poll(timeout_ms=100, max_records=500).values():
            if not seen:  # the clock starts with the first event read
                began = time.perf_counter()
            for r in records:
                producer.send(out, value=convert(r.value), key=r.key, headers=r.headers or None)
            seen += len(records)
    producer.flush()
    consumer.commit()
    elapsed = time.perf_counter() - began
    producer.close()
    consumer.close()
    return elapsed


def _plain_confluent(
    bootstrap: str, topic: str, out: str, group: str, events: int, convert: Any
) -> float:
    import confluent_kafka as ck

    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            # as the engine's source sets it: with librdkafka's 1 s, a loop whose local
            # queue filled waited a second for its next fetch (runs took 0.6 s or 1.5 s)
            "fetch.queue.backoff.ms": 10,
        }
    )
    consumer.subscribe([topic])
    producer = ck.Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": LINGER_MS,
            "batch.size": BATCH_BYTES,
        }
    )
    began = 0.0
    seen = 0
    while seen < events:
        for m in consumer.consume(num_messages=500, timeout=0.1):
            if not seen:  # the clock starts with the first event read
                began = time.perf_counter()
            if m.error():
                continue
            while True:
                try:
                    producer.produce(
                        out, value=convert(m.value()), key=m.key(), headers=m.headers()
                    )
                    break
                except BufferError:
                    producer.poll(0.01)
            seen += 1
        producer.poll(0)
    producer.flush()
    consumer.commit(asynchronous=False)
    elapsed = time.perf_counter() - began
    consumer.close()
    return elapsed


def _converter(encoding: str) -> Any:
    if encoding != "avro":
        return lambda value: value
    import fastavro
    import orjson

    schema = fastavro.parse_schema(json.loads(USER_SCHEMA.read_text()))
    writer = fastavro.schemaless_writer

    def to_avro(value: bytes) -> bytes:
        buf = BytesIO()
        writer(buf, schema, orjson.loads(value))
        return buf.getvalue()

    return to_avro


def peak_mb() -> float:
    """This process's peak resident set size so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_up(engine: bool) -> None:
    """What the ``mstream`` command does once start-up is done, in every run (engine and
    plain alike): import what the run needs, freeze the start-up heap and widen the young
    generation (:mod:`mstream.core.heap`)."""
    import confluent_kafka  # noqa: F401
    import kafka  # noqa: F401

    if engine:
        import mstream.runtime  # noqa: F401
    from mstream.core.heap import freeze_startup_heap, widen_young_generation

    freeze_startup_heap()
    widen_young_generation()


def child(mode: str, case: str, bootstrap: str, topic: str, events: int) -> None:
    """One run in this (fresh) process; prints seconds and peak RSS as JSON."""
    start_up(mode == "engine")
    elapsed = (run_engine if mode == "engine" else run_plain)(bootstrap, topic, case, events)
    print(json.dumps({"seconds": elapsed, "peak_mb": peak_mb()}))


def _child_run(mode: str, case: str, bootstrap: str, topic: str, events: int) -> dict[str, float]:
    argv = [
        sys.executable,
        __file__,
        "--events",
        str(events),
        "--child",
        mode,
        case,
        bootstrap,
        topic,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} {case} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Run every case (engine and plain) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--bootstrap", default=None, help="an existing broker (default: start one)")
    parser.add_argument("--cases", default=None, help="comma-separated case names (default: all)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case and mode (best kept)")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "CASE", "BOOTSTRAP", "TOPIC"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2], args.child[3], args.events)
        return
    with kafka_broker(args.bootstrap) as bootstrap:
        topic = f"bench-in-{uuid.uuid4().hex[:8]}"
        produce_input(bootstrap, topic, args.events)
        cases = [c for c in CASES if CASES[c]["client"] != "confluent" or _confluent_available()]
        if args.cases:
            cases = [c for c in cases if c in args.cases.split(",")]
        print(
            f"{args.events:,} user events per run, Kafka ({PARTITIONS} partitions) -> Kafka, "
            f"Python {sys.version.split()[0]}, best of {args.repeat}"
        )
        header = (
            f"{'case':<26} {'engine ev/s':>12} {'plain ev/s':>12} {'ratio':>6} "
            f"{'engine MB':>10} {'plain MB':>9}"
        )
        print(header)
        print("-" * len(header))
        for case in cases:
            results: dict[str, dict[str, float]] = {}
            for _ in range(args.repeat):  # interleaved; the best run of each mode is kept
                for mode in ("engine", "plain"):
                    run = _child_run(mode, case, bootstrap, topic, args.events)
                    best = results.get(mode)
                    if best is None or run["seconds"] < best["seconds"]:
                        results[mode] = run
            e, p = results["engine"], results["plain"]
            e_rate, p_rate = args.events / e["seconds"], args.events / p["seconds"]
            print(
                f"{case:<26} {e_rate:>12,.0f} {p_rate:>12,.0f} {e_rate / p_rate:>6.2f} "
                f"{e['peak_mb']:>10.0f} {p['peak_mb']:>9.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
