"""Engine benchmark on the embedded providers (prints a table; not a test).

Each case moves N synthetic 10-field user events from the generator to a file sink, once
through the mstream engine (a real Connector: Rx pipeline, batching, conversion, sink)
and once as a plain Python loop doing the same conversions and writes (the ceiling).
Each run happens in a fresh subprocess so its peak RSS is its own.

    python bench/bench_engine.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USER_SCHEMA = ROOT / "examples" / "schemas" / "user.avsc"

CASES = {
    "passthrough": {"encoding": "json", "batch": None},
    "json->avro": {"encoding": "avro", "batch": None},
    "passthrough, batch 100": {"encoding": "json", "batch": 100},
    "json->avro, batch 100": {"encoding": "avro", "batch": 100},
}


def run_engine(case: str, events: int, out_dir: str) -> float:
    """Run one case through a Connector; returns seconds."""
    from mstream.config import parse_config
    from mstream.runtime import Connector

    spec = CASES[case]
    connector: dict[str, object] = {
        "name": "bench",
        "source": {"service_name": "gen", "resource": "users", "output_encoding": "json"},
        "sinks": [
            {"service_name": "files", "resource": "out.jsonl", "output_encoding": spec["encoding"]}
        ],
        "schemas": [{"id": "user", "service_name": "schemas", "resource": str(USER_SCHEMA)}],
    }
    if spec["encoding"] == "avro":
        connector["sinks"][0]["schema_id"] = "user"  # type: ignore[index]
    if spec["batch"]:
        connector["batch"] = {"kind": "count", "size": spec["batch"]}
    cfg = parse_config(
        {
            "services": [
                {"name": "gen", "provider": "generator", "count": events},
                {"name": "files", "provider": "file", "base_dir": out_dir},
                {"name": "schemas", "provider": "file"},
            ],
            "connectors": [connector],
        },
        "bench",
        {},
    )
    c = Connector(cfg.connectors[0], {s.name: s for s in cfg.services})
    began = time.perf_counter()
    c.start()
    c.wait()
    elapsed = time.perf_counter() - began
    if c.state != "completed" or c.counters.events_out != events:
        raise SystemExit(f"engine run failed: {c.state} {c.reason} out={c.counters.events_out}")
    return elapsed


def run_plain(case: str, events: int, out_dir: str) -> float:
    """The ceiling: the same generation, conversion and writes in a plain loop."""
    import fastavro
    import orjson

    from mstream.providers.generator import make_user

    spec = CASES[case]
    schema = fastavro.parse_schema(json.loads(USER_SCHEMA.read_text()))
    writer = fastavro.schemaless_writer
    chunk = 500
    began = time.perf_counter()
    with open(os.path.join(out_dir, "plain.jsonl"), "ab") as out:
        for start in range(0, events, chunk):
            lines = []
            for i in range(start, min(start + chunk, events)):
                payload = make_user(i)
                if spec["encoding"] == "avro":
                    buf = BytesIO()
                    writer(buf, schema, orjson.loads(payload))
                    payload = base64.b64encode(buf.getvalue())
                lines.append(payload)
            out.write(b"\n".join(lines) + b"\n")
            out.flush()
    return time.perf_counter() - began


def child(mode: str, case: str, events: int) -> None:
    with tempfile.TemporaryDirectory() as out_dir:
        elapsed = (run_engine if mode == "engine" else run_plain)(case, events, out_dir)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": elapsed, "peak_mb": peak_kb / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "CASE"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.events)
        return
    print(
        f"{args.events:,} events per run, generator -> file sink, Python {sys.version.split()[0]}"
    )
    header = f"{'case':<24} {'engine ev/s':>12} {'plain ev/s':>12} {'ratio':>6} {'engine MB':>10} {'plain MB':>9}"
    print(header)
    print("-" * len(header))
    for case in CASES:
        results = {}
        for mode in ("engine", "plain"):
            done = subprocess.run(
                [sys.executable, __file__, "--events", str(args.events), "--child", mode, case],
                capture_output=True,
                text=True,
                check=True,
            )
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        e, p = results["engine"], results["plain"]
        e_rate, p_rate = args.events / e["seconds"], args.events / p["seconds"]
        print(
            f"{case:<24} {e_rate:>12,.0f} {p_rate:>12,.0f} {e_rate / p_rate:>6.2f} "
            f"{e['peak_mb']:>10.0f} {p['peak_mb']:>9.0f}"
        )


if __name__ == "__main__":
    main()
