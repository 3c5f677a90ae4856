"""Inline ``sources`` of a ``udf`` service (the original's key), validation of the engine
table per kind, and the Rhai engine's absence; no Rust extension needed here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mstream.config import parse_config
from mstream.errors import ConfigError
from mstream.runtime import Connector
from mstream.stores import Stores

pytestmark = pytest.mark.udf

DOUBLE = "function transform(d, a) d.n = d.n * 2 return result(d, a) end"


def service(**options: Any) -> dict[str, Any]:
    return {"name": "scripts", "provider": "udf", "engine": {"kind": "lua"}, **options}


def parse(*services: dict[str, Any], **connector: Any) -> Any:
    raw: dict[str, Any] = {"services": list(services)}
    if connector:
        raw["connectors"] = [{"name": "job", **connector}]
    return parse_config(raw, "test.toml", {})


def step(name: str, resource: str) -> dict[str, Any]:
    return {"service_name": name, "resource": resource, "output_encoding": "json"}


def run_pipeline(tmp_path: Path, udf: dict[str, Any], resource: str, docs: list[Any]) -> Any:
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    cfg = parse(
        {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
        udf,
        source=step("files", "in.jsonl"),
        middlewares=[step("scripts", resource)],
        sinks=[step("files", "out.jsonl")],
    )
    connector = Connector(
        cfg.connectors[0], {s.name: s for s in cfg.services}, Stores.in_memory().checkpoints
    )
    connector.start()
    assert connector.wait(60)
    out = tmp_path / "out.jsonl"
    lines = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    return connector, lines


def test_lua_sources_inline_without_a_folder(tmp_path: Path) -> None:
    udf = service(sources=[{"filename": "double.lua", "content": DOUBLE}])
    connector, out = run_pipeline(tmp_path, udf, "double", [{"n": 1}, {"n": 21}])
    assert connector.state == "completed", connector.reason
    assert out == [{"n": 2}, {"n": 42}]


def test_an_inline_source_wins_over_the_file_and_both_are_listed(tmp_path: Path) -> None:
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "double.lua").write_text("function transform(d, a) return nil end")
    (folder / "keep.lua").write_text("function transform(d, a) return result(d, a) end")
    udf = service(script_path=str(folder), sources=[{"filename": "double.lua", "content": DOUBLE}])
    connector, out = run_pipeline(tmp_path, udf, "double.lua", [{"n": 4}])
    assert connector.state == "completed", connector.reason
    assert out == [{"n": 8}]
    connector, _ = run_pipeline(tmp_path, udf, "nope", [{"n": 4}])
    assert connector.state == "failed"
    assert f"udf script 'nope' not found in {folder} and sources" in (connector.reason or "")
    assert "(available: double.lua, keep.lua)" in (connector.reason or "")


def test_a_missing_script_path_is_fine_when_sources_are_given(tmp_path: Path) -> None:
    udf = service(
        script_path=str(tmp_path / "not-there"),  # the original creates it; nothing is written
        sources=[{"filename": "double.lua", "content": DOUBLE}],
    )
    connector, out = run_pipeline(tmp_path, udf, "double", [{"n": 3}])
    assert connector.state == "completed", connector.reason
    assert out == [{"n": 6}]
    assert not (tmp_path / "not-there").exists()


def test_a_syntax_error_in_a_source_names_it(tmp_path: Path) -> None:
    udf = service(sources=[{"filename": "bad.lua", "content": "function transform(d, a)\n"}])
    connector, _ = run_pipeline(tmp_path, udf, "bad", [{"n": 3}])
    assert connector.state == "failed"
    assert "sources: bad.lua:" in (connector.reason or "")
    assert "syntax error" in (connector.reason or "")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "services[0].script_path: missing required field (or give the scripts inline"),
        (
            {"sources": [{"filename": "../x.lua", "content": DOUBLE}]},
            "services[0].sources[0].filename: invalid script filename '../x.lua': one plain",
        ),
        (
            {"sources": [{"filename": "x.rhai", "content": DOUBLE}]},
            "services[0].sources[0].filename: invalid script filename 'x.rhai': must end with .lua",
        ),
        (
            {"sources": [{"filename": "x.lua", "content": DOUBLE}] * 2},
            "services[0].sources[1].filename: duplicate script filename 'x.lua'",
        ),
        ({"sources": [{"filename": "x.lua"}]}, "services[0].sources[0].content: missing required"),
        (
            {"sources": [{"filename": "x.lua", "content": "", "path": "/etc"}]},
            "services[0].sources[0].path: unknown field",
        ),
        (
            {"engine": {"kind": "lua", "max_operations": 5}, "script_path": "x"},
            "services[0].engine.max_operations: unknown field",
        ),
        ({"engine": {}, "script_path": "x"}, "services[0].engine.kind: missing required field"),
        ({"engine": "lua", "script_path": "x"}, "services[0].engine: expected a table"),
    ],
)
def test_sources_and_engine_tables_are_validated(options: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(service(**options))
    assert expected in str(info.value)


def test_rhai_without_the_extension_is_a_config_error_saying_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mstream.providers.udf as udf

    monkeypatch.setattr(udf, "rhai_available", lambda: False)
    with pytest.raises(ConfigError) as info:
        parse(service(engine={"kind": "rhai"}, script_path="x"))
    message = str(info.value)
    assert "services[0].engine.kind: the Rhai engine (the mstream_rhai Rust extension)" in message
    assert "bash rust/install-rhai.sh" in message and "pip install -e '.[rhai]'" in message
