"""Benchmark: a connector with a script UDF, vs the same transform as a Python UDF.

Moves N generated 10-field user events (``generator`` → middleware → ``file`` sink) and
prints events per second for:

* ``no middleware``: a config-built Connector without a middleware (the ceiling);
* ``udf json_transform.lua``: a config-built Connector with the sandboxed Lua script
  ``examples/udf/json_transform.lua`` (``provider = "udf"``);
* ``PythonUDFMiddleware``: the same pipeline built in code (generator → batch → convert →
  middleware → deliver), with the transform written in Python;
* ``udf script, same code pipeline``: that code-built pipeline with the Lua script, so the
  last two differ only in the transform.

Usage::

    .venv/bin/python bench/bench_udf_connector.py [--events 100000] [--batch 0]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "examples" / "udf"


def json_transform(data: dict[str, Any], attributes: dict[str, str]) -> Any:
    """``json_transform.lua`` in Python."""
    data = dict(data)
    data["version"] = "1.0"
    points = data.get("loyalty_points")
    if isinstance(points, int | float):
        tier, discount = (
            next(
                (t, d)
                for floor, t, d in (
                    (10000, "platinum", 20),
                    (5000, "gold", 15),
                    (1000, "silver", 10),
                    (100, "bronze", 5),
                )
                if points >= floor
            )
            if points >= 100
            else ("member", 0)
        )
        data.update(
            tier=tier,
            discount_percentage=discount,
            free_shipping=points >= 1000,
            priority_support=points >= 5000,
        )
    if data.get("first_name") and data.get("last_name"):
        data["full_name"] = f"{data['first_name']} {data['last_name']}"
    if isinstance(data.get("email"), str):
        data["email"] = data["email"].lower()
    for key in ("password", "ssn", "credit_card"):
        data.pop(key, None)
    attributes = {**attributes, "processor": "json_transform"}
    if "tier" in data:
        attributes["loyalty_tier"] = data["tier"]
    return data, attributes


def raw_config(out: Path, events: int, batch: int, middleware: bool) -> dict[str, Any]:
    connector: dict[str, Any] = {
        "name": "bench",
        "source": {"service_name": "gen", "resource": "users", "output_encoding": "json"},
        "sinks": [{"service_name": "files", "resource": "out.jsonl", "output_encoding": "json"}],
    }
    if middleware:
        connector["middlewares"] = [
            {"service_name": "scripts", "resource": "json_transform.lua", "output_encoding": "json"}
        ]
    if batch:
        connector["batch"] = {"kind": "count", "size": batch}
    return {
        "services": [
            {"name": "gen", "provider": "generator", "count": events},
            {"name": "files", "provider": "file", "base_dir": str(out)},
            {
                "name": "scripts",
                "provider": "udf",
                "engine": {"kind": "lua"},
                "script_path": str(SCRIPTS),
            },
        ],
        "connectors": [connector],
    }


def run_connector(events: int, batch: int, middleware: bool) -> float:
    """Events/s of a config-built Connector."""
    from mstream.config import parse_config
    from mstream.runtime import Connector

    with tempfile.TemporaryDirectory() as out:
        cfg = parse_config(raw_config(Path(out), events, batch, middleware), "bench.toml", {})
        connector = Connector(cfg.connectors[0], {s.name: s for s in cfg.services})
        began = time.perf_counter()
        connector.start()
        connector.wait()
        elapsed = time.perf_counter() - began
        assert connector.state == "completed", connector.reason
        assert connector.counters.events_out == events
    return events / elapsed


def run_code_pipeline(events: int, batch: int, python: bool) -> float:
    """Events/s of the same pipeline composed in code, with a Python or a script UDF."""
    from mstream import operators as ops
    from mstream.config import ServiceConfig, StepConfig
    from mstream.core import ConnectorCounters
    from mstream.providers import get_provider
    from mstream.providers.base import Middleware, StepContext
    from mstream.providers.udf import PythonUDFMiddleware, UdfServiceSchema
    from mstream.runtime.source import source_observable

    counters = ConnectorCounters()
    ctx = StepContext("bench", "middleware", counters=counters)
    gen = ServiceConfig("gen", "generator", {"count": events})
    source = get_provider("generator").source(gen, StepConfig("gen", "users"), ctx)  # type: ignore[misc]
    middleware: Middleware
    if python:
        middleware = PythonUDFMiddleware(json_transform)
    else:
        udf = ServiceConfig(
            "scripts",
            "udf",
            UdfServiceSchema().load({"engine": {"kind": "lua"}, "script_path": str(SCRIPTS)}),
        )
        middleware = get_provider("udf").middleware(  # type: ignore[misc]
            udf, StepConfig("scripts", "json_transform.lua"), ctx
        )
    middleware.open()

    def reject(event: Any, reason: str, stage: str) -> None:
        raise AssertionError(f"{stage}: {reason}")

    with tempfile.TemporaryDirectory() as out:
        files = ServiceConfig("files", "file", {"base_dir": out})
        sink = get_provider("file").sink(files, StepConfig("files", "out.jsonl"), ctx)  # type: ignore[misc]
        sink.open()
        began = time.perf_counter()
        source_observable(source, threading.Event()).pipe(
            ops.batch(batch or None, 1.0),
            ops.convert("json", reject, verify=True),
            ops.middleware(middleware, reject, counters=counters),
            ops.convert("json", reject),
            ops.deliver([ops.SinkTarget(sink, "json")], reject, counters=counters),
        ).subscribe()
        elapsed = time.perf_counter() - began
        sink.close()
        assert counters.events_out == events, counters.events_out
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=0, help="batch size (0 = unbatched)")
    args = parser.parse_args()
    n, batch = args.events, args.batch
    rows = [
        ("no middleware (Connector)", run_connector(n, batch, middleware=False)),
        ("udf json_transform.lua (Connector)", run_connector(n, batch, middleware=True)),
        ("udf json_transform.lua (code pipeline)", run_code_pipeline(n, batch, python=False)),
        ("PythonUDFMiddleware (code pipeline)", run_code_pipeline(n, batch, python=True)),
    ]
    print(f"{n} events, generator users -> middleware -> file, batch={batch or 'none'}")
    print(f"{'case':<42} {'events/s':>10}")
    for name, rate in rows:
        print(f"{name:<42} {rate:>10,.0f}")


if __name__ == "__main__":
    main()
