"""The ``udf`` middleware provider in connectors: validation, filter, fan-out, dead letters,
sandbox escapes; and the in-process PythonUDFMiddleware."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import reactivex

from mstream import operators
from mstream.config import parse_config
from mstream.core import Batch, Event
from mstream.errors import ConfigError
from mstream.providers.udf import PythonUDFMiddleware
from mstream.runtime import Connector
from mstream.stores import Stores
from mstream.udf import load_scripts

pytestmark = pytest.mark.udf

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "udf"


def config(tmp_path: Path, scripts: Path = EXAMPLES, engine: Any = None, **connector: Any) -> Any:
    raw = {
        "services": [
            {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
            {
                "name": "scripts",
                "provider": "udf",
                "engine": engine or {"kind": "lua"},
                "script_path": str(scripts),
            },
            *connector.pop("services", []),
        ],
        "connectors": [{"name": "job", **connector}],
    }
    return parse_config(raw, "test.toml", {})


def run(cfg: Any) -> Connector:
    connector = Connector(
        cfg.connectors[0], {s.name: s for s in cfg.services}, Stores.in_memory().checkpoints
    )
    connector.start()
    assert connector.wait(60), "connector did not finish"
    return connector


def lines(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def write_jsonl(path: Path, docs: list[Any]) -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))


def step(service: str, resource: str = "") -> dict[str, Any]:
    return {"service_name": service, "resource": resource, "output_encoding": "json"}


def pipeline(tmp_path: Path, script: str, scripts: Path = EXAMPLES, **extra: Any) -> Any:
    return config(
        tmp_path,
        scripts,
        source=step("files", "in.jsonl"),
        middlewares=[step("scripts", script)],
        sinks=[step("files", "out.jsonl")],
        dead_letter={"service_name": "files", "resource": "dead.jsonl"},
        **extra,
    )


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (
            {"engine": {"kind": "python"}, "script_path": "x"},
            "services[0].engine.kind: unsupported engine kind 'python' (supported: lua, rhai)",
        ),
        ({"script_path": "x"}, "services[0].engine: missing required field"),
        ({"engine": {"kind": "lua"}}, "services[0].script_path: missing required field"),
        (
            {"engine": {"kind": "lua", "fuel": 3}, "script_path": "x"},
            "services[0].engine.fuel: unknown field",
        ),
        (
            {"engine": {"kind": "lua"}, "script_path": "x", "timeout": 3},
            "services[0].timeout: unknown field",
        ),
        (
            {"engine": {"kind": "lua", "time_ms": 0}, "script_path": "x"},
            "services[0].engine.time_ms",
        ),
    ],
)
def test_service_is_validated(service: dict[str, Any], expected: str) -> None:
    raw = {"services": [{"name": "scripts", "provider": "udf", **service}]}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "test.toml", {})
    assert expected in str(info.value)


def test_missing_script_fails_the_start_naming_folder_and_scripts(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"a": 1}])
    connector = run(pipeline(tmp_path, "nope.lua"))
    assert connector.state == "failed"
    reason = connector.reason or ""
    assert f"udf script 'nope.lua' not found in {EXAMPLES}" in reason
    assert "available: attribute_enrichment.lua, data_filter.lua, json_transform.lua" in reason
    assert not (tmp_path / "out.jsonl").exists() or lines(tmp_path / "out.jsonl") == []


def test_missing_folder_and_syntax_errors_fail_the_start(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"a": 1}])
    connector = run(pipeline(tmp_path, "x.lua", tmp_path / "no-such-folder"))
    assert connector.state == "failed"
    assert f"udf script_path {str(tmp_path / 'no-such-folder')!r} is not a folder" in (
        connector.reason or ""
    )
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "broken.lua").write_text("function transform(d, a)\n  return result(d, a\nend\n")
    connector = run(pipeline(tmp_path, "broken", scripts))  # the suffix may be left out
    assert connector.state == "failed"
    assert "broken.lua:3:" in (connector.reason or "")
    assert "syntax error" in (connector.reason or "")


# -- behaviour in a connector -------------------------------------------------------------


def test_json_transform_in_a_connector(tmp_path: Path) -> None:
    docs = [
        {"first_name": "A", "last_name": "B", "email": f"X{i}@Y.COM", "loyalty_points": i * 900}
        for i in range(50)
    ]
    write_jsonl(tmp_path / "in.jsonl", docs)
    connector = run(pipeline(tmp_path, "json_transform.lua"))
    assert connector.state == "completed", connector.reason
    script = load_scripts(EXAMPLES)["json_transform.lua"]
    assert lines(tmp_path / "out.jsonl") == [script.transform(d, {})[0][0] for d in docs]
    assert lines(tmp_path / "out.jsonl")[12]["tier"] == "platinum"


def test_filter_drops_events_and_counts_them(tmp_path: Path) -> None:
    products = [
        {"id": i, "name": f"p{i}", "price": 5.0 + i, "active": i % 3 != 0, "category": "food"}
        for i in range(30)
    ]
    write_jsonl(tmp_path / "in.jsonl", products)
    connector = run(pipeline(tmp_path, "data_filter.lua"))
    assert connector.state == "completed", connector.reason
    out = lines(tmp_path / "out.jsonl")
    assert [p["id"] for p in out] == [i for i in range(30) if i % 3 != 0]
    assert out[0] == {
        "id": 1,
        "name": "p1",
        "price": 6.0,
        "price_tier": "budget",
        "category": "FOOD",
        "department": "grocery",
    }
    snap = connector.counters.snapshot()
    assert snap["filtered"] == 10 and snap["dead_lettered"] == 0 and snap["events_out"] == 20


@pytest.mark.parametrize("batched", [False, True])
def test_fan_out_one_event_per_order_line(tmp_path: Path, batched: bool) -> None:
    orders = [
        {"order_id": f"o{i}", "items": [{"sku": f"s{j}", "qty": j} for j in range(i % 4)]}
        for i in range(12)
    ]
    write_jsonl(tmp_path / "in.jsonl", orders)
    extra: dict[str, Any] = {"batch": {"kind": "count", "size": 5}} if batched else {}
    connector = run(pipeline(tmp_path, "split_items.lua", **extra))
    assert connector.state == "completed", connector.reason
    out = lines(tmp_path / "out.jsonl")
    expected = [
        {"order_id": o["order_id"], "line": j + 1, "sku": f"s{j}", "qty": j}
        for o in orders
        for j in range(len(o["items"]))
    ]
    assert len(expected) == 18 and out == expected  # in order, within and across batches
    assert connector.counters.events_in == 12 and connector.counters.dead_lettered == 0
    # orders 0, 4 and 8 have no lines: counted as filtered even where other orders of the
    # same batch fan out into several events
    assert connector.counters.filtered == 3


SCRIPT_WITH_ERROR = """\
function transform(data, attributes)
  if data.n % 4 == 1 then
    error("n must not be " .. data.n)
  end
  return result(data, attributes)
end
"""


def test_script_error_is_dead_lettered_with_its_line_and_the_job_goes_on(
    tmp_path: Path,
) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "picky.lua").write_text(SCRIPT_WITH_ERROR)
    write_jsonl(tmp_path / "in.jsonl", [{"n": i} for i in range(10)])
    connector = run(pipeline(tmp_path, "picky.lua", scripts))
    assert connector.state == "completed", connector.reason
    assert lines(tmp_path / "out.jsonl") == [{"n": i} for i in range(10) if i % 4 != 1]
    dead = lines(tmp_path / "dead.jsonl")
    assert [d["payload"] for d in dead] == [{"n": 1}, {"n": 5}, {"n": 9}]
    assert dead[0]["stage"] == "middleware"
    assert dead[0]["reason"] == "picky.lua:3: n must not be 1"
    assert connector.counters.dead_lettered == 3


ATTACKS = {
    "io": 'return io.open("/etc/passwd"):read("a")',
    "os": 'return os.execute("touch {marker}")',
    "require": 'return require("socket")',
    "load": 'return load("return 1")()',
    "python": "return python.builtins.open",
    "debug": "return debug.getregistry()",
    "loop": "while true do end",
    "memory": 'local s = "x" while true do s = s .. s end',
    "recursion": "local function f(n) return 1 + f(n + 1) end return f(1)",
    "global": "leaked = true return result(data, attributes)",
}


def test_sandbox_escapes_are_dead_lettered_and_the_process_stays_healthy(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned"
    branches = "\n".join(
        f'  if data.attack == "{name}" then\n    {body.format(marker=marker)}\n  end'
        for name, body in ATTACKS.items()
    )
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "hostile.lua").write_text(
        f"function transform(data, attributes)\n{branches}\n  return result(data, attributes)\nend\n"
    )
    events: list[dict[str, Any]] = []
    for name in ATTACKS:
        events += [{"n": len(events)}, {"attack": name, "n": len(events) + 1}]
    events.append({"n": len(events)})
    write_jsonl(tmp_path / "in.jsonl", events)
    connector = run(
        pipeline(  # a generous time limit: the step limit stops loops deterministically
            tmp_path, "hostile.lua", scripts, engine={"kind": "lua", "time_ms": 10_000}
        )
    )
    assert connector.state == "completed", connector.reason
    assert lines(tmp_path / "out.jsonl") == [e for e in events if "attack" not in e]
    dead = {d["payload"]["attack"]: d["reason"] for d in lines(tmp_path / "dead.jsonl")}
    assert sorted(dead) == sorted(ATTACKS)
    for name in ("io", "os", "require", "load", "python", "debug"):
        assert dead[name].startswith("hostile.lua:")
        assert f"'{name}' is not available" in dead[name]
    assert "step limit exceeded" in dead["loop"]
    assert "memory limit exceeded" in dead["memory"]
    assert "stack overflow" in dead["recursion"] or "memory limit" in dead["recursion"]
    assert "global" in dead["global"]
    assert not marker.exists()


def test_engine_limits_come_from_the_service(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "busy.lua").write_text(
        "function transform(data, attributes)\n"
        "  local x = 0 for i = 1, data.steps do x = x + i end\n"
        "  data.sum = x return result(data, attributes)\nend\n"
    )
    write_jsonl(tmp_path / "in.jsonl", [{"steps": 10}, {"steps": 200_000}])
    cfg = pipeline(
        tmp_path,
        "busy.lua",
        scripts,
        engine={"kind": "lua", "max_instructions": 100_000, "time_ms": 10_000},
    )
    connector = run(cfg)
    assert connector.state == "completed", connector.reason
    assert lines(tmp_path / "out.jsonl") == [{"steps": 10, "sum": 55}]
    [dead] = lines(tmp_path / "dead.jsonl")
    assert "step limit exceeded" in dead["reason"]


def test_bson_output_and_attributes_of_results(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "split_items.lua", tmp_path / "split_items.lua")
    cfg = config(
        tmp_path,
        tmp_path,
        source=step("files", "in.jsonl"),
        middlewares=[{**step("scripts", "split_items.lua"), "output_encoding": "bson"}],
        sinks=[step("files", "out.jsonl")],
    )
    service = cfg.service("scripts")
    from mstream.providers import get_provider
    from mstream.providers.base import StepContext

    middleware = get_provider("udf").middleware(  # type: ignore[misc]
        service, cfg.connectors[0].middlewares[0], StepContext("job", "middleware")
    )
    middleware.open()
    event = Event(
        b'{"order_id": 7, "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]}',
        "json",
        attributes={"source": "orders"},
        metadata={"offset": 99},
    )
    out = middleware.process(Batch.of([event], batched=False), print)
    assert [(e.encoding, e.doc, e.attributes, e.metadata) for e in out] == [
        ("bson", {"order_id": 7, "line": 1, "sku": "a", "qty": 1}, {"order_id": "7", "line": "1"},
         {"offset": 99}),
        ("bson", {"order_id": 7, "line": 2, "sku": "b", "qty": 2}, {"order_id": "7", "line": "2"},
         {"offset": 99}),
    ]  # fmt: skip
    import bson

    assert bson.decode(out[1].payload) == {"order_id": 7, "line": 2, "sku": "b", "qty": 2}


# -- PythonUDFMiddleware ------------------------------------------------------------------


def test_python_udf_middleware_from_code() -> None:
    def enrich(data: Any, attributes: dict[str, str]) -> Any:
        if data["n"] == 2:
            return None
        if data["n"] == 3:
            raise ValueError("three is bad")
        return [({**data, "copy": k}, {**attributes, "k": str(k)}) for k in range(2)]

    events = [Event(b'{"n": %d}' % i, "json", attributes={"a": "1"}) for i in range(5)]
    rejected: list[tuple[Any, str, str]] = []
    out: list[Event] = []
    reactivex.of(Batch.of(events, batched=False)).pipe(
        operators.middleware(
            PythonUDFMiddleware(enrich), lambda e, r, s: rejected.append((e.doc, r, s))
        )
    ).subscribe(lambda b: out.extend(b.events))
    assert [(e.doc, e.attributes) for e in out] == [
        ({"n": n, "copy": k}, {"a": "1", "k": str(k)}) for n in (0, 1, 4) for k in range(2)
    ]
    [(doc, reason, stage)] = rejected
    assert doc == {"n": 3} and stage == "middleware"
    assert reason.startswith("enrich:") and "ValueError: three is bad" in reason


def test_python_udf_is_not_reachable_from_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config(tmp_path, engine={"kind": "python"})
    assert "supported: lua" in str(info.value)


def test_an_engine_fault_costs_one_event_not_the_job() -> None:
    from mstream.providers.udf import TransformMiddleware

    class Faulty:
        name = "faulty.lua"

        def transform(self, data: Any, attributes: dict[str, str]) -> Any:
            if data["n"] == 1:
                raise IndexError("tuple index out of range")
            return [(data, attributes)]

    middleware = TransformMiddleware()
    middleware._transformer = Faulty()
    rejected: list[tuple[Any, str, str]] = []
    events = [Event(b'{"n": %d}' % i, "json") for i in range(3)]
    out = middleware.process(
        Batch.of(events, batched=False), lambda e, r, s: rejected.append((e.doc, r, s))
    )
    assert [e.doc for e in out] == [{"n": 0}, {"n": 2}]
    assert rejected == [
        ({"n": 1}, "faulty.lua: internal error: IndexError: tuple index out of range", "middleware")
    ]
