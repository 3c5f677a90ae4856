"""MongoDB change stream -> Kafka benchmark: the mstream engine against a plain watch() loop.

N 10-field user documents are inserted once into a collection of the MongoDB test server
(mongo-java-server, the suite's stand-in), after a resume token was taken. Each run then
reads that backlog from the token: once through the engine (a real Connector: change
stream source resumed from a checkpoint, Rx pipeline, confluent-kafka producer sink,
checkpoint after acknowledgement) and once as a plain ``watch(resume_after=...)`` loop
producing each full document to Kafka with the same client (the ceiling). A third
figure, ``watch only``, reads the stream and does nothing else: the stand-in's own
ceiling, which bounds both. Both clocks run from the first change read to the last one
acknowledged. Each run happens in a fresh subprocess so its peak RSS is its own (after
``bench_kafka.start_up``, the ``mstream`` command's start-up).
Without ``--bootstrap`` / ``--mongodb`` the servers are started with the test-suite
launchers (``tests/servers``) and stopped at the end.

    python bench/bench_mongodb.py [--events 50000] [--bootstrap HOST:PORT] [--mongodb URI]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_kafka import BATCH_BYTES, LINGER_MS, _create_topic, peak_mb, start_up  # noqa: E402

DB = "bench"
CASES: dict[str, dict[str, Any]] = {
    "bson -> kafka": {"encoding": "bson", "verify": True},
    "bson -> kafka (mirror)": {"encoding": "bson", "verify": False},
    "bson -> json -> kafka": {"encoding": "json", "verify": True},
}


def seed(uri: str, collection: str, events: int) -> str:
    """Insert ``events`` user documents after taking a resume token; returns it (hex BSON)."""
    import bson
    from bson.codec_options import CodecOptions
    from bson.raw_bson import RawBSONDocument
    from pymongo import MongoClient

    from mstream.providers.generator import make_user

    client: MongoClient[Any] = MongoClient(uri)
    try:
        coll = client[DB].get_collection(
            collection, codec_options=CodecOptions(document_class=RawBSONDocument)
        )
        with coll.watch(max_await_time_ms=100) as stream:
            stream.try_next()
            token = stream.resume_token
        assert token is not None
        docs = [RawBSONDocument(bson.encode(orjson.loads(make_user(i)))) for i in range(events)]
        for start in range(0, events, 1000):
            coll.insert_many(docs[start : start + 1000], ordered=False)
        return bson.encode(token).hex()
    finally:
        client.close()


def run_engine(uri: str, bootstrap: str, collection: str, token: str, case: str, n: int) -> float:
    """Read the backlog through a Connector; seconds until every change is acknowledged."""
    from mstream.config import parse_config
    from mstream.providers.mongodb.positions import token_to_position
    from mstream.runtime import Connector
    from mstream.stores.memory import MemoryCheckpointStore

    spec = CASES[case]
    out = f"mongo-out-{uuid.uuid4().hex[:8]}"
    _create_topic(bootstrap, out)
    cfg = parse_config(
        {
            "services": [
                {"name": "mongo", "provider": "mongodb", "connection_string": uri, "db_name": DB},
                {
                    "name": "kafka",
                    "provider": "kafka",
                    "client": "confluent",
                    "bootstrap.servers": bootstrap,
                    "linger.ms": LINGER_MS,
                    "batch.size": BATCH_BYTES,
                },
            ],
            "connectors": [
                {
                    "name": "bench",
                    "source": {
                        "service_name": "mongo",
                        "resource": collection,
                        "output_encoding": "bson",
                    },
                    "sinks": [
                        {
                            "service_name": "kafka",
                            "resource": out,
                            "output_encoding": spec["encoding"],
                        }
                    ],
                    "checkpoint": {"enabled": True},
                    "verify_payloads": spec["verify"],
                }
            ],
        }
    )
    checkpoints = MemoryCheckpointStore()
    checkpoints.save("bench", token_to_position(bytes.fromhex(token), f"{DB}.{collection}"))
    connector = Connector(
        cfg.connectors[0], {s.name: s for s in cfg.services}, checkpoints=checkpoints
    )
    connector.start()
    while connector.counters.events_in == 0:  # the clock starts with the first change read
        if not connector.running:
            raise RuntimeError(f"connector ended early: {connector.state} {connector.reason}")
        time.sleep(0.002)
    began = time.perf_counter()
    while connector.counters.events_out < n:
        if not connector.running:
            raise RuntimeError(f"connector ended early: {connector.state} {connector.reason}")
        time.sleep(0.01)
    elapsed = time.perf_counter() - began
    connector.stop(drain=True)
    return elapsed


def run_plain(
    uri: str, bootstrap: str, collection: str, token: str, case: str, n: int, produce: bool = True
) -> float:
    """The ceiling: watch from the token, produce each full document (converted), flush."""
    import confluent_kafka as ck
    from bson.codec_options import CodecOptions
    from bson.raw_bson import RawBSONDocument
    from pymongo import MongoClient

    from mstream.encodings import decode, encode

    to_json = CASES[case]["encoding"] == "json"
    out = f"mongo-out-{uuid.uuid4().hex[:8]}"
    _create_topic(bootstrap, out)
    producer = ck.Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": LINGER_MS,
            "batch.size": BATCH_BYTES,
        }
    )
    client: MongoClient[Any] = MongoClient(uri)
    coll = client[DB].get_collection(
        collection, codec_options=CodecOptions(document_class=RawBSONDocument)
    )
    resume = RawBSONDocument(bytes.fromhex(token))
    seen = 0
    began = 0.0
    with coll.watch(
        resume_after=resume, full_document="updateLookup", batch_size=500, max_await_time_ms=100
    ) as stream:
        while seen < n:
            change = stream.try_next()
            if change is None:
                continue
            if not seen:
                began = time.perf_counter()
            seen += 1
            if not produce:
                continue
            value = change["fullDocument"].raw
            if to_json:
                value = encode(decode(value, "bson"), "json")
            while True:
                try:
                    producer.produce(out, value=value)
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
    producer.flush()
    elapsed = time.perf_counter() - began
    client.close()
    return elapsed


def child(argv: list[str], events: int) -> None:
    """One run in this (fresh) process; prints seconds and peak RSS as JSON."""
    mode, case, uri, bootstrap, collection, token = argv
    start_up(mode == "engine")
    if mode == "engine":
        elapsed = run_engine(uri, bootstrap, collection, token, case, events)
    else:
        elapsed = run_plain(uri, bootstrap, collection, token, case, events, mode == "plain")
    print(json.dumps({"seconds": elapsed, "peak_mb": peak_mb()}))


def _child_run(argv: list[str], events: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--events", str(events), "--child", *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{argv[:2]} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Seed the collection, run every case (engine, plain) and the watch-only ceiling."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--bootstrap", default=None, help="an existing broker (default: start one)")
    parser.add_argument("--mongodb", default=None, help="an existing server (default: start one)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case and mode (best kept)")
    parser.add_argument("--cases", default=None, help="comma-separated case names (default: all)")
    parser.add_argument("--child", nargs=6)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.events)
        return
    sys.path.insert(0, str(ROOT))
    from tests.servers.launchers import start_kafka, start_mongodb

    servers = []
    bootstrap, uri = args.bootstrap, args.mongodb
    try:
        if bootstrap is None:
            started = start_kafka()
            servers.append(started.server)
            bootstrap = started.server.address
        if uri is None:
            started = start_mongodb()
            servers.append(started.server)
            uri = started.server.address
        collection = f"users_{uuid.uuid4().hex[:8]}"
        token = seed(uri, collection, args.events)
        shared = [uri, bootstrap, collection, token]
        print(
            f"{args.events:,} changes per run, MongoDB test server (mongo-java-server) -> "
            f"Kafka (confluent-kafka), Python {sys.version.split()[0]}, best of {args.repeat}; "
            "watch only = reading the stream and nothing else (the stand-in's ceiling)"
        )
        header = (
            f"{'case':<24} {'engine ev/s':>12} {'plain ev/s':>12} {'ratio':>6} "
            f"{'watch only':>11} {'engine MB':>10} {'plain MB':>9}"
        )
        print(header)
        print("-" * len(header))
        cases = [c for c in CASES if not args.cases or c in args.cases.split(",")]
        for case in cases:
            results: dict[str, dict[str, float]] = {}
            for _ in range(args.repeat):  # interleaved; the best run of each mode is kept
                for mode in ("engine", "plain", "watch"):
                    run = _child_run([mode, case, *shared], args.events)
                    best = results.get(mode)
                    if best is None or run["seconds"] < best["seconds"]:
                        results[mode] = run
            e, p, w = results["engine"], results["plain"], results["watch"]
            e_rate, p_rate = args.events / e["seconds"], args.events / p["seconds"]
            print(
                f"{case:<24} {e_rate:>12,.0f} {p_rate:>12,.0f} {e_rate / p_rate:>6.2f} "
                f"{args.events / w['seconds']:>11,.0f} {e['peak_mb']:>10.0f} {p['peak_mb']:>9.0f}",
                flush=True,
            )
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
