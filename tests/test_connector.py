"""Connectors end to end on the embedded providers: delivery, dead letters, checkpoints."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from mstream.config import parse_config
from mstream.runtime import BlockingJobs, Connector, JobManager
from mstream.runtime.connector import ACTIVE
from mstream.stores import Stores


def config(tmp_path: Path, **connector: Any) -> Any:
    services = connector.pop("services", [])
    raw = {
        "services": [
            {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
            *services,
        ],
        "connectors": [{"name": "job", **connector}],
    }
    return parse_config(raw, "test.toml", {})


def lines(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run(cfg: Any, stores: Stores | None = None) -> Connector:
    connector = Connector(
        cfg.connectors[0],
        {s.name: s for s in cfg.services},
        (stores or Stores.in_memory()).checkpoints,
    )
    connector.start()
    assert connector.wait(30), "connector did not finish"
    return connector


def test_generator_to_file_with_bad_events_dead_lettered(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        services=[{"name": "gen", "provider": "generator", "count": 1000, "invalid_every": 100}],
        source={"service_name": "gen", "resource": "users", "output_encoding": "json"},
        sinks=[{"service_name": "files", "resource": "out.jsonl", "output_encoding": "json"}],
        dead_letter={"service_name": "files", "resource": "dead.jsonl"},
    )
    connector = run(cfg)
    assert connector.state == "completed"
    out = lines(tmp_path / "out.jsonl")
    dead = lines(tmp_path / "dead.jsonl")
    assert len(out) == 990 and len(dead) == 10
    assert {u["user_id"] for u in out} == {i for i in range(1000) if (i + 1) % 100}
    assert dead[0]["stage"] == "decode" and dead[0]["connector"] == "job"
    assert "json" in dead[0]["reason"].lower()
    assert dead[0]["payload"] == {"$base64": "eyJicm9rZW4iOiA="}
    snap = connector.counters.snapshot()
    assert (snap["events_in"], snap["events_out"], snap["dead_lettered"], snap["errors"]) == (
        1000,
        990,
        10,
        10,
    )


def test_json_to_avro_batches_validated_per_event(tmp_path: Path) -> None:
    schema = {
        "type": "record",
        "name": "C",
        "fields": [{"name": "n", "type": "int"}],
    }
    (tmp_path / "c.avsc").write_text(json.dumps(schema))
    src = tmp_path / "in.jsonl"
    src.write_text(
        "\n".join(json.dumps({"n": i} if i != 3 else {"n": "three"}) for i in range(7)) + "\n"
    )
    cfg = config(
        tmp_path,
        schemas=[{"id": "c", "service_name": "files", "resource": "c.avsc"}],
        source={"service_name": "files", "resource": "in.jsonl", "output_encoding": "json"},
        sinks=[
            {
                "service_name": "files",
                "resource": "out.avro",
                "output_encoding": "avro",
                "schema_id": "c",
            },
            {
                "service_name": "files",
                "resource": "out.json",
                "output_encoding": "json",
                "batch_layout": "array",
            },
        ],
        batch={"kind": "count", "size": 3},
        dead_letter={"service_name": "files", "resource": "dead.jsonl"},
    )
    connector = run(cfg)
    assert connector.state == "completed", connector.reason
    assert len((tmp_path / "out.avro").read_text().splitlines()) == 6  # base64 Avro, one per event
    arrays = lines(tmp_path / "out.json")
    # the JSON sink has no schema: it takes the event the Avro sink refused
    assert [[d["n"] for d in a] for a in arrays] == [[0, 1, 2], ["three", 4, 5], [6]]
    dead = lines(tmp_path / "dead.jsonl")
    assert [(d["stage"], d["payload"]) for d in dead] == [("validate", {"n": "three"})]
    assert dead[0]["reason"].startswith("sinks[0] (files): ")


def test_checkpoint_resume_after_stop(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(500)))
    cfg = config(
        tmp_path,
        source={"service_name": "files", "resource": "in.jsonl", "output_encoding": "json"},
        sinks=[{"service_name": "files", "resource": "out.jsonl", "output_encoding": "json"}],
        checkpoint={"enabled": True, "interval_ms": 10},
    )
    stores = Stores.embedded(tmp_path / "state")
    first = run(cfg, stores)
    assert first.state == "completed"
    assert stores.checkpoints.latest("job").position == {"offset": src.stat().st_size}  # type: ignore[union-attr]
    # more lines arrive; a restarted connector reads only those
    with src.open("a") as f:
        f.write("".join(json.dumps({"n": i}) + "\n" for i in range(500, 520)))
    stores.close()
    stores = Stores.embedded(tmp_path / "state")  # a new process: state from the SQLite file
    second = run(cfg, stores)
    assert second.counters.events_in == 20
    assert [d["n"] for d in lines(tmp_path / "out.jsonl")] == list(range(520))
    history = stores.checkpoints.history("job")
    assert history[0].position["offset"] > history[-1].position["offset"]


def test_stop_without_drain_then_restart_loses_nothing(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        services=[{"name": "gen", "provider": "generator", "count": 200_000, "rate": 50_000}],
        source={"service_name": "gen", "resource": "counter", "output_encoding": "json"},
        sinks=[{"service_name": "files", "resource": "out.jsonl", "output_encoding": "json"}],
        checkpoint={"enabled": True, "interval_ms": 20},
    )
    stores = Stores.embedded(tmp_path / "state")
    connector = Connector(cfg.connectors[0], {s.name: s for s in cfg.services}, stores.checkpoints)
    connector.start()
    while connector.counters.events_out < 20_000:
        assert connector.running
        connector.wait(0.01)
    assert connector.stop(drain=False, timeout=30)
    assert connector.state == "stopped"
    second = run(cfg, stores)
    assert second.state == "completed"
    seen = [d["n"] for d in lines(tmp_path / "out.jsonl")]
    assert set(seen) == set(range(200_000))  # nothing lost
    duplicates = len(seen) - len(set(seen))
    assert duplicates < 20_000  # only the unacknowledged tail is delivered twice


def test_missing_source_file_fails_only_that_job(tmp_path: Path) -> None:
    raw = {
        "services": [
            {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
            {"name": "gen", "provider": "generator", "count": 10},
        ],
        "connectors": [
            {
                "name": "broken",
                "source": {
                    "service_name": "files",
                    "resource": "missing.jsonl",
                    "output_encoding": "json",
                },
                "sinks": [
                    {"service_name": "files", "resource": "x.jsonl", "output_encoding": "json"}
                ],
            },
            {
                "name": "fine",
                "source": {"service_name": "gen", "resource": "counter", "output_encoding": "json"},
                "sinks": [
                    {"service_name": "files", "resource": "y.jsonl", "output_encoding": "json"}
                ],
            },
        ],
    }
    manager = BlockingJobs(
        JobManager(parse_config(raw, "t.toml", {}), Stores.in_memory(), max_restarts=0)
    )
    manager.start_enabled()
    assert manager.wait_all(30)
    broken, fine = manager.get("broken"), manager.get("fine")
    assert broken.state == "failed"
    assert "cannot open 'missing.jsonl'" in (broken.reason or "")
    assert fine.state == "completed" and fine.counters.events_out == 10


@pytest.mark.parametrize("encoding", ["json", "bson"])
def test_mongodb_types_survive_file_round_trip(tmp_path: Path, encoding: str) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"_id": {"$oid": "650000000000000000000001"}, "at": {"$date": "2026-01-01T00:00:00Z"},'
        ' "price": {"$numberDecimal": "1.50"}, "big": {"$numberLong": "9007199254740993"}}\n'
    )
    cfg = config(
        tmp_path,
        source={"service_name": "files", "resource": "in.jsonl", "output_encoding": encoding},
        sinks=[{"service_name": "files", "resource": "out.jsonl", "output_encoding": "json"}],
    )
    run(cfg)
    out = lines(tmp_path / "out.jsonl")[0]
    assert out["_id"] == {"$oid": "650000000000000000000001"}
    assert out["price"] == {"$numberDecimal": "1.50"}
    assert "$date" in out["at"]


def _missing_source_connector(tmp_path: Path, **options: Any) -> Connector:
    cfg = config(
        tmp_path,
        source={"service_name": "files", "resource": "later.jsonl", "output_encoding": "json"},
        sinks=[{"service_name": "files", "resource": "out.jsonl", "output_encoding": "json"}],
    )
    return Connector(
        cfg.connectors[0], {s.name: s for s in cfg.services}, restart_backoff=0.0, **options
    )


def test_failures_in_a_row_beyond_max_restarts_fail_the_job(tmp_path: Path) -> None:
    connector = _missing_source_connector(tmp_path, max_restarts=2, healthy_after=60.0)
    connector.start()
    assert connector.wait(30)
    assert connector.state == "failed" and connector.restarts == 2
    assert "cannot open 'later.jsonl'" in (connector.reason or "")


def test_a_run_that_had_recovered_starts_the_restart_count_afresh(tmp_path: Path) -> None:
    # healthy_after=0: every run counts as having recovered before it failed, so failures
    # never add up to max_restarts; the source file appears after several restarts.
    connector = _missing_source_connector(tmp_path, max_restarts=2, healthy_after=0.0)
    pause = threading.Event()
    connector.start()
    try:
        for _ in range(2000):
            if connector.restarts >= 5 or connector.state not in ACTIVE:
                break
            pause.wait(0.005)
        assert connector.state in ACTIVE and connector.restarts >= 5
        (tmp_path / "later.tmp").write_text('{"n": 1}\n')  # appears whole: an atomic rename
        (tmp_path / "later.tmp").rename(tmp_path / "later.jsonl")
        assert connector.wait(30)
    finally:
        connector.stop()
    assert connector.state == "completed" and connector.counters.events_out == 1


def test_start_again_after_failure_resets_the_restart_count(tmp_path: Path) -> None:
    connector = _missing_source_connector(tmp_path, max_restarts=1, healthy_after=60.0)
    connector.start()
    assert connector.wait(30) and connector.state == "failed" and connector.restarts == 1
    (tmp_path / "later.jsonl").write_text('{"n": 1}\n')
    connector.start()
    assert connector.wait(30)
    assert connector.state == "completed" and connector.restarts == 0


@pytest.mark.parametrize("verify", [True, False])
def test_verify_payloads_off_forwards_a_passthrough_byte_for_byte(
    tmp_path: Path, verify: bool
) -> None:
    (tmp_path / "in.jsonl").write_text('{"n": 1}\n{"n": 2, oops\n{"n":3}\n')
    cfg = config(
        tmp_path,
        source={"service_name": "files", "resource": "in.jsonl", "output_encoding": "json"},
        sinks=[{"service_name": "files", "resource": "out.jsonl", "output_encoding": "json"}],
        dead_letter={"service_name": "files", "resource": "dead.jsonl"},
        verify_payloads=verify,
    )
    assert cfg.connectors[0].verify_payloads is verify
    assert ("verify_payloads" in cfg.connectors[0].to_dict()) is not verify
    connector = run(cfg)
    assert connector.state == "completed", connector.reason
    out = (tmp_path / "out.jsonl").read_text().splitlines()
    if verify:  # the broken payload is dead-lettered at the source
        assert out == ['{"n": 1}', '{"n":3}']
        assert lines(tmp_path / "dead.jsonl")[0]["stage"] == "decode"
    else:  # a mirror: every payload as it came, the broken one included
        assert out == ['{"n": 1}', '{"n": 2, oops', '{"n":3}']
        assert lines(tmp_path / "dead.jsonl") == [] and connector.counters.dead_lettered == 0


def test_verify_payloads_off_still_dead_letters_where_a_step_decodes(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"n": 1}\n{"n": 2, oops\n')
    cfg = config(
        tmp_path,
        source={"service_name": "files", "resource": "in.jsonl", "output_encoding": "json"},
        sinks=[{"service_name": "files", "resource": "out.jsonl", "output_encoding": "bson"}],
        dead_letter={"service_name": "files", "resource": "dead.jsonl"},
        verify_payloads=False,
    )
    connector = run(cfg)
    assert connector.state == "completed", connector.reason
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 1
    assert connector.counters.dead_lettered == 1
