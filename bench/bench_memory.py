"""Memory benchmark: RSS with a stalled sink, and with 10 connectors running in one process.

Two measurements, each in a fresh subprocess, sampling the process's RSS every 0.25 s:

* ``stalled``: a Kafka (confluent-kafka) source over a backlog of N user events, writing
  to an HTTP sink whose server accepts connections and never answers. Backpressure must
  hold: the source pauses its partitions once its in-flight window is full, so RSS rises
  to the window and then stays flat however long the sink stalls.
* ``10 connectors``: ten Kafka → Kafka connectors (confluent-kafka, one consumer group
  and one producer each) moving the same backlog at once, as a service hosting them would.

Without ``--bootstrap`` a broker is started with the test-suite launcher.

    python bench/bench_memory.py [--events 100000] [--seconds 10] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_kafka import (  # noqa: E402
    BATCH_BYTES,
    LINGER_MS,
    _create_topic,
    kafka_broker,
    peak_mb,
    produce_input,
    start_up,
)


def rss_mb() -> float:
    """This process's resident set size now, in MB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * 4096 / 1024 / 1024


def _silent_server() -> tuple[socket.socket, int]:
    """A TCP server that accepts connections and never answers (a stalled HTTP sink)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)  # kept open, never read from or answered

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1]


def _kafka_service(bootstrap: str, name: str = "kafka") -> dict[str, Any]:
    return {
        "name": name,
        "provider": "kafka",
        "client": "confluent",
        "bootstrap.servers": bootstrap,
        "group.id": f"mem-{uuid.uuid4().hex[:8]}",
        "linger.ms": LINGER_MS,
        "batch.size": BATCH_BYTES,
    }


def stalled(bootstrap: str, topic: str, seconds: float) -> dict[str, Any]:
    """RSS over time while the only sink never answers."""
    from mstream.config import parse_config
    from mstream.runtime import Connector

    server, port = _silent_server()
    cfg = parse_config(
        {
            "services": [
                _kafka_service(bootstrap),
                {"name": "api", "provider": "http", "host": f"http://127.0.0.1:{port}"},
            ],
            "connectors": [
                {
                    "name": "stalled",
                    "source": {
                        "service_name": "kafka",
                        "resource": topic,
                        "output_encoding": "json",
                    },
                    "sinks": [{"service_name": "api", "resource": "in", "output_encoding": "json"}],
                }
            ],
        }
    )
    connector = Connector(cfg.connectors[0], {s.name: s for s in cfg.services})
    connector.start()
    samples: list[tuple[float, float, int]] = []
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        samples.append((time.monotonic() - began, rss_mb(), connector.counters.events_in))
        time.sleep(0.25)
    connector.stop(drain=False)
    server.close()
    half = [rss for at, rss, _ in samples if at >= seconds / 2]
    return {
        "events_in": samples[-1][2],
        "rss_first_half_max": max(rss for at, rss, _ in samples if at < seconds / 2),
        "rss_second_half_min": min(half),
        "rss_second_half_max": max(half),
        "peak_mb": peak_mb(),
    }


def many(bootstrap: str, topic: str, events: int, count: int = 10) -> dict[str, Any]:
    """Peak RSS of ``count`` Kafka → Kafka connectors moving the backlog at once."""
    from mstream.config import parse_config
    from mstream.runtime import Connector

    services = []
    connectors = []
    for i in range(count):
        out = f"mem-out-{uuid.uuid4().hex[:8]}"
        _create_topic(bootstrap, out)
        services.append(_kafka_service(bootstrap, f"kafka{i}"))
        connectors.append(
            {
                "name": f"c{i}",
                "source": {
                    "service_name": f"kafka{i}",
                    "resource": topic,
                    "output_encoding": "json",
                },
                "sinks": [
                    {"service_name": f"kafka{i}", "resource": out, "output_encoding": "json"}
                ],
            }
        )
    cfg = parse_config({"services": services, "connectors": connectors})
    by_name = {s.name: s for s in cfg.services}
    running = [Connector(c, by_name) for c in cfg.connectors]
    for connector in running:
        connector.start()
    most = 0.0
    began = time.monotonic()
    while any(c.counters.events_out < events for c in running):
        if not all(c.running for c in running):
            raise RuntimeError("a connector ended early")
        most = max(most, rss_mb())
        time.sleep(0.1)
    elapsed = time.monotonic() - began
    for connector in running:
        connector.stop(drain=True)
    return {"connectors": count, "seconds": elapsed, "rss_max": most, "peak_mb": peak_mb()}


def main() -> None:
    """Run both measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--bootstrap", default=None, help="an existing broker (default: start one)")
    parser.add_argument("--child", nargs=3, metavar=("WHAT", "BOOTSTRAP", "TOPIC"))
    args = parser.parse_args()
    if args.child:
        what, bootstrap, topic = args.child
        start_up(engine=True)
        result = (
            stalled(bootstrap, topic, args.seconds)
            if what == "stalled"
            else many(bootstrap, topic, args.events)
        )
        print(json.dumps(result))
        return
    with kafka_broker(args.bootstrap) as bootstrap:
        topic = f"mem-in-{uuid.uuid4().hex[:8]}"
        produce_input(bootstrap, topic, args.events)
        for what in ("stalled", "many"):
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--events",
                    str(args.events),
                    "--seconds",
                    str(args.seconds),
                    "--child",
                    what,
                    bootstrap,
                    topic,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if what == "stalled":
                print(
                    f"stalled sink, {args.seconds:g} s: {result['events_in']:,} of "
                    f"{args.events:,} events read; RSS max {result['rss_first_half_max']:.0f} MB "
                    f"in the first half, {result['rss_second_half_min']:.0f}-"
                    f"{result['rss_second_half_max']:.0f} MB in the second"
                )
            else:
                print(
                    f"{result['connectors']} Kafka → Kafka connectors, {args.events:,} events "
                    f"each in {result['seconds']:.1f} s: RSS max {result['rss_max']:.0f} MB "
                    f"(peak {result['peak_mb']:.0f} MB)"
                )


if __name__ == "__main__":
    main()
