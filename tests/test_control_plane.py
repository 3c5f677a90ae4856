"""The control plane: lifecycle on the loop, sources that stop on dispose, honest states.

Each test injects one fault (a slow store, a failing checkpoint save, a stop racing a
completion, a source that cannot open) and asserts the outcome within a bound.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import reactivex
import reactivex.operators as rx_ops
import requests

import mstream
from mstream import operators as mo
from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.core import Batch, ConnectorCounters, Event
from mstream.errors import StoreError
from mstream.runtime import BlockingJobs, Connector, ControlLoop, JobManager
from mstream.runtime.dead_letter import DeadLetterRouter
from mstream.service import ServiceOptions
from mstream.stores import MemoryCheckpointStore, Stores
from mstream.stores.memory import MemoryJobStore
from tests.waiting import wait_for

JSON = {"Content-Type": "application/json"}


def source_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mstream-source" and t.is_alive()]


def generator_to_file(tmp_path: Path, *, count: int | None = None, **connector: Any) -> Any:
    gen: dict[str, Any] = {"name": "gen", "provider": "generator"}
    if count is not None:
        gen["count"] = count
    return parse_config(
        {
            "services": [gen, {"name": "files", "provider": "file", "base_dir": str(tmp_path)}],
            "connectors": [
                {
                    "name": "job",
                    "source": {
                        "service_name": "gen",
                        "resource": "counter",
                        "output_encoding": "json",
                    },
                    "sinks": [
                        {
                            "service_name": "files",
                            "resource": "out.jsonl",
                            "output_encoding": "json",
                        }
                    ],
                    **connector,
                }
            ],
        },
        "t.toml",
        {},
    )


# -- sources are real Observables ---------------------------------------------------------


def test_take_three_stops_an_endless_source_promptly() -> None:
    before = len(source_threads())
    endless = mstream.source({"name": "gen", "provider": "generator"}, resource="counter")
    chunks = endless.pipe(rx_ops.take(3), rx_ops.to_list()).run()
    assert len(chunks) == 3 and all(isinstance(e, Event) for c in chunks for e in c)
    wait_for(lambda: len(source_threads()) <= before, 5, "the source thread to end")


def test_subscribe_returns_at_once_and_dispose_stops_the_source() -> None:
    stopping = threading.Event()
    seen: list[int] = []
    endless = mstream.source(
        {"name": "gen", "provider": "generator"}, resource="counter", stopping=stopping
    )
    subscription = endless.subscribe(lambda chunk: seen.append(len(chunk)))  # returns at once
    wait_for(lambda: bool(seen), 5, "the first chunk")
    subscription.dispose()
    at_dispose = len(seen)
    assert stopping.wait(5)
    wait_for(lambda: not source_threads(), 5, "the source thread to end")
    # nothing is delivered after dispose but the chunk already on its way
    assert len(seen) <= at_dispose + 1


def test_operators_filter_acknowledges_what_it_drops() -> None:
    acked: list[int] = []
    events = [Event(b'{"n": %d}' % i, "json", ack=lambda i=i: acked.append(i)) for i in range(6)]
    chunks = [events[:3], events[3:]]
    kept = reactivex.from_iterable(chunks).pipe(mo.filter(lambda e: e.doc["n"] == 1)).run()
    assert [e.doc["n"] for e in kept] == [1] and sorted(acked) == [0, 2, 3, 4, 5]

    counters = ConnectorCounters()
    acked.clear()
    whole = Batch.of(events[3:], batched=True)
    out: list[Batch] = []
    reactivex.of(whole).pipe(mo.filter(lambda e: False, counters=counters)).subscribe(out.append)
    assert out == [] and sorted(acked) == [3, 4, 5] and counters.filtered == 3


# -- the control loop ---------------------------------------------------------------------


def test_lifecycle_calls_off_the_loop_are_refused_and_blocking_jobs_marshal_them(
    tmp_path: Path,
) -> None:
    manager = JobManager(generator_to_file(tmp_path, count=5), Stores.in_memory())
    jobs = BlockingJobs(manager)
    try:
        with pytest.raises(RuntimeError, match="control loop"):
            manager.create_from_dict({}).send(None)  # a coroutine driven off the loop
        jobs.start_enabled()
        assert jobs.wait_all(10) and jobs.get("job").state == "completed"
        on_loop = jobs.call(lambda: manager.control.on_loop())
        assert on_loop is True and not manager.control.on_loop()
    finally:
        jobs.close()


class SlowJobStore(MemoryJobStore):
    """A job store whose writes wait until released (a MongoDB store that stalls)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.waiting = threading.Event()

    def put(self, name: str, record: Any) -> None:
        self.waiting.set()
        assert self.release.wait(30)
        super().put(name, record)


def test_a_slow_job_store_never_blocks_the_api(tmp_path: Path) -> None:
    slow = SlowJobStore()
    config = parse_config({"system": {"data_dir": str(tmp_path / "data")}}, "t.toml", {})
    with ServiceThread(config, ServiceOptions(api_port=0, data_dir=tmp_path / "data")) as svc:
        assert svc.service.manager is not None
        svc.service.manager.stores.jobs = slow
        definition = {
            "name": "slow",
            "source": {"service_name": "gen", "resource": "counter", "output_encoding": "json"},
            "sinks": [{"service_name": "out", "output_encoding": "json"}],
        }
        session = requests.Session()
        for service in (
            {"name": "gen", "provider": "generator"},
            {"name": "out", "provider": "stdout"},
        ):
            answer = session.post(f"{svc.url}/services", json=service, headers=JSON, timeout=10)
            assert answer.status_code == 201, answer.text
        creating = threading.Thread(
            target=lambda: session.post(
                f"{svc.url}/jobs", json=definition, headers=JSON, timeout=60
            )
        )
        creating.start()
        try:
            assert slow.waiting.wait(10)
            began = time.monotonic()
            listed = requests.get(f"{svc.url}/jobs", timeout=10)
            assert listed.status_code == 200 and time.monotonic() - began < 2.0
            busy = requests.post(f"{svc.url}/jobs/slow/stop", headers=JSON, timeout=10)
            assert busy.status_code == 409 and "busy" in busy.json()["error"]["message"]
        finally:
            slow.release.set()
            creating.join(60)
        wait_for(
            lambda: requests.get(f"{svc.url}/jobs/slow", timeout=10).json()["state"] == "running",
            10,
            "the job to run once its record is written",
        )
        stopped = requests.post(f"{svc.url}/jobs/slow/stop", headers=JSON, timeout=30)
        assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"


# -- honest states ------------------------------------------------------------------------


def test_a_stop_racing_a_completion_never_leaves_a_job_stopping(tmp_path: Path) -> None:
    config = generator_to_file(tmp_path, count=20)
    for _ in range(40):
        connector = Connector(config.connectors[0], {s.name: s for s in config.services})
        connector.start()
        connector.stop(timeout=10)
        assert connector.wait(10)
        assert connector.state in ("stopped", "completed"), connector.state


def test_a_source_that_cannot_open_is_retrying_and_health_is_degraded(tmp_path: Path) -> None:
    config = parse_config(
        {
            "system": {"data_dir": str(tmp_path / "data"), "file_roots": [str(tmp_path)]},
            "services": [{"name": "files", "provider": "file", "base_dir": str(tmp_path)}],
            "connectors": [
                {
                    "name": "late",
                    "source": {
                        "service_name": "files",
                        "resource": "later.jsonl",
                        "output_encoding": "json",
                    },
                    "sinks": [
                        {
                            "service_name": "files",
                            "resource": "out.jsonl",
                            "output_encoding": "json",
                        }
                    ],
                }
            ],
        },
        str(tmp_path / "t.toml"),
        {},
    )
    with ServiceThread(config, ServiceOptions(api_port=0, data_dir=tmp_path / "data")) as svc:
        job_url = f"{svc.url}/jobs/late"
        wait_for(
            lambda: requests.get(job_url, timeout=10).json()["state"] == "retrying",
            10,
            "the job to be retrying",
        )
        job = requests.get(job_url, timeout=10).json()
        assert job["retry"]["attempt"] >= 1 and "later.jsonl" in job["retry"]["last_error"]
        health = requests.get(f"{svc.url}/health", timeout=10)
        body = health.json()
        assert health.status_code == 200 and body["status"] == "degraded" and not body["healthy"]
        assert any("late" in r and "later.jsonl" in r for r in body["reasons"])
        assert requests.get(f"{svc.url}/health?strict=true", timeout=10).status_code == 503

        (tmp_path / "later.tmp").write_text('{"n": 1}\n')
        (tmp_path / "later.tmp").rename(tmp_path / "later.jsonl")
        wait_for(
            lambda: requests.get(f"{svc.url}/health", timeout=10).json()["status"] == "healthy",
            30,
            "health to recover once the file exists",
        )


class FailingCheckpoints(MemoryCheckpointStore):
    """Checkpoint saves fail once armed (a store lost during the final save)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = threading.Event()

    def save(self, job: str, position: Any, totals: Any = None) -> None:
        if self.failing.is_set():
            raise StoreError("checkpoint store unreachable")
        super().save(job, position, totals)


def test_a_failing_final_checkpoint_is_logged_and_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = generator_to_file(tmp_path, checkpoint={"enabled": True, "interval_ms": 100})
    store = FailingCheckpoints()
    connector = Connector(config.connectors[0], {s.name: s for s in config.services}, store)
    connector.start()
    wait_for(lambda: store.latest("job") is not None, 10, "a first checkpoint")
    store.failing.set()
    assert connector.stop(timeout=10)
    assert connector.state == "stopped"
    assert "final checkpoint not saved" in (connector.reason or "")
    assert any("final checkpoint not saved" in r.getMessage() for r in caplog.records)


def test_dead_letter_summary_is_logged_by_the_tick_without_another_event() -> None:
    now = [0.0]
    lines: list[str] = []
    router = DeadLetterRouter("job", ConnectorCounters(), None, clock=lambda: now[0])
    router.logger.addHandler(handler := _ListHandler(lines))
    try:
        for _ in range(4):
            router(Event(b"{bad", "json"), "invalid JSON", "decode")
        router.tick()
        assert len(lines) == 1  # the first at once; the rest wait for the interval
        now[0] = 6.0
        router.tick()
        assert len(lines) == 2 and "3 events" in lines[1] and "invalid JSON" in lines[1]
    finally:
        router.logger.removeHandler(handler)


class _ListHandler(__import__("logging").Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: Any) -> None:
        self.lines.append(record.getMessage())


# -- exit ---------------------------------------------------------------------------------


def test_a_script_that_ends_stops_its_jobs_and_keeps_the_final_checkpoint(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, pathlib, threading, time
        import mstream
        from mstream.stores import Stores
        out = pathlib.Path({str(tmp_path)!r})
        jobs = mstream.run_config({{
            "services": [
                {{"name": "gen", "provider": "generator", "rate": 2000}},
                {{"name": "files", "provider": "file", "base_dir": str(out)}}],
            "connectors": [{{"name": "job", "checkpoint": {{"enabled": True, "interval_ms": 60000}},
                "source": {{"service_name": "gen", "resource": "counter", "output_encoding": "json"}},
                "sinks": [{{"service_name": "files", "resource": "out.jsonl",
                            "output_encoding": "json"}}]}}]}},
            stores=Stores.embedded(out / "data"), wait=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and jobs.get("job").counters.events_out < 500:
            threading.Event().wait(0.05)
        print("leaving", flush=True)
        """
    )
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "leaving" in done.stdout and time.monotonic() - began < 60
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) >= 500
    # the final checkpoint (saved by the exit hook's drained stop) covers every line written
    saved = Stores.embedded(tmp_path / "data")
    try:
        checkpoint = saved.checkpoints.latest("job")
    finally:
        saved.close()
    assert checkpoint is not None
    assert checkpoint.position == len(lines), (checkpoint.position, len(lines))


def test_control_loop_runs_calls_on_its_own_thread() -> None:
    control = ControlLoop()
    try:
        names: list[str] = []
        control.call(lambda: names.append(threading.current_thread().name))
        assert names == ["mstream-control"]
        with pytest.raises(ZeroDivisionError):
            control.call(lambda: 1 / 0)
    finally:
        control.close()


def test_counter_totals_survive_a_restart_while_since_start_counts_begin_at_zero(
    tmp_path: Path,
) -> None:
    config = generator_to_file(tmp_path, checkpoint={"enabled": True, "interval_ms": 100})
    store = MemoryCheckpointStore()
    services = {s.name: s for s in config.services}
    first = Connector(config.connectors[0], services, store)
    first.start()
    wait_for(lambda: first.counters.events_out >= 200, 10, "the first run to deliver")
    assert first.stop(timeout=10)
    delivered = first.counters.events_out
    saved = store.latest("job")
    assert saved is not None and saved.totals is not None
    assert saved.totals["events_out"] == delivered

    second = Connector(config.connectors[0], services, store)
    second.start()
    try:
        wait_for(lambda: second.counters.events_out > 0, 10, "the second run to deliver")
        snapshot = second.counters.snapshot()
        assert snapshot["totals"]["events_out"] == delivered + snapshot["events_out"]
    finally:
        assert second.stop(timeout=10)
    assert store.latest("job").totals["events_out"] == delivered + second.counters.events_out  # type: ignore[union-attr]


def test_a_mongodb_source_on_a_dead_server_is_retrying_within_seconds(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = parse_config(
        {
            "services": [
                {
                    "name": "mongo",
                    "provider": "mongodb",
                    "connection_string": f"mongodb://127.0.0.1:{port}/?directConnection=true",
                    "db_name": "app",
                    "server_selection_timeout_ms": 1000,
                },
                {"name": "out", "provider": "stdout"},
            ],
            "connectors": [
                {
                    "name": "cdc",
                    "source": {
                        "service_name": "mongo",
                        "resource": "users",
                        "output_encoding": "json",
                    },
                    "sinks": [{"service_name": "out", "output_encoding": "json"}],
                }
            ],
        },
        "t.toml",
        {},
    )
    connector = Connector(config.connectors[0], {s.name: s for s in config.services})
    began = time.monotonic()
    connector.start()
    try:
        wait_for(lambda: connector.state == "retrying", 15, "the job to report retrying")
        assert time.monotonic() - began < 15
        assert connector.retry is not None and f"127.0.0.1:{port}" in connector.retry["last_error"]
    finally:
        assert connector.stop(timeout=15)
    assert connector.state == "stopped"


class SlowCheckpoints(MemoryCheckpointStore):
    """Saves that wait until released once armed (a MongoDB store that stalls)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = threading.Event()
        self.saving = threading.Event()
        self.release = threading.Event()

    def save(self, job: str, position: Any, totals: Any = None) -> None:
        if self.armed.is_set():
            self.saving.set()
            assert self.release.wait(30)
        super().save(job, position, totals)


def test_a_stop_during_a_slow_checkpoint_save_waits_for_it_and_keeps_the_final_one(
    tmp_path: Path,
) -> None:
    config = generator_to_file(tmp_path, checkpoint={"enabled": True, "interval_ms": 50})
    store = SlowCheckpoints()
    connector = Connector(config.connectors[0], {s.name: s for s in config.services}, store)
    connector.start()
    wait_for(lambda: store.latest("job") is not None, 10, "a first checkpoint")
    store.armed.set()
    assert store.saving.wait(10)  # a periodic save is now stuck in the store
    assert connector.stop(timeout=0.5) is False  # the stop waits for it, it is not lost
    assert connector.state == "stopping"
    store.release.set()
    assert connector.wait(10) and connector.state == "stopped"
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    saved = store.latest("job")
    assert saved is not None and saved.position == len(lines)  # the final save covers it all
