"""Restarting the whole service on the same data directory, with each ``startup_state``.

Each test builds the service twice (``ServiceThread``) on one data directory: jobs from the
file, a job and a service created through the API, a job stopped by the user; then checks
what the second process runs. One test does the same with real ``mstream`` processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.service import ServiceOptions
from tests.test_api import Client
from tests.waiting import wait_for

pytestmark = pytest.mark.api

KEY = "22" * 32


def config(tmp: Path, mode: str, connectors: list[dict[str, Any]]) -> Any:
    return parse_config(
        {
            "services": [
                {"name": "gen", "provider": "generator", "rate": 400},
                {"name": "files", "provider": "file", "base_dir": str(tmp / "out")},
            ],
            "connectors": connectors,
            "system": {
                "data_dir": str(tmp / "data"),
                "encryption_key_path": str(tmp / "mstream.key"),
                "job_lifecycle": {"startup_state": mode},
            },
        },
        "test.toml",
        {},
    )


def job(
    name: str, resource: str | None = None, source: str = "gen", enabled: bool = True
) -> dict[str, Any]:
    return {
        "name": name,
        "enabled": enabled,
        "checkpoint": {"enabled": True, "interval_ms": 100},
        "source": {"service_name": source, "resource": "counter", "output_encoding": "json"},
        "sinks": [
            {
                "service_name": "files",
                "resource": resource or f"{name}.jsonl",
                "output_encoding": "json",
            }
        ],
    }


def options() -> ServiceOptions:
    return ServiceOptions(api_port=0, environ={"MSTREAM_ENC_KEY": KEY}, progress_interval=60)


def flowing(api: Client, name: str, more_than: int = 0) -> None:
    """Wait until ``name`` delivered more than ``more_than`` events and saved a checkpoint."""
    wait_for(lambda: api.ok("GET", f"/jobs/{name}")["counters"]["events_out"] > more_than)
    wait_for(lambda: api.ok("GET", f"/jobs/{name}/checkpoints")["checkpoints"])


def first_run(tmp: Path, mode: str) -> None:
    """File jobs a and b; API service api-gen and API job c; b stopped by the user."""
    with ServiceThread(config(tmp, mode, [job("a"), job("b")]), options()) as svc:
        api = Client(svc.url)
        assert states(api) == {"a": "running", "b": "running"}
        api.ok("POST", "/services", {"name": "api-gen", "provider": "generator", "rate": 400}, 201)
        api.ok("POST", "/jobs", job("c", source="api-gen"), 201)
        for name in ("a", "b", "c"):
            flowing(api, name)
        api.ok("POST", "/jobs/b/stop")


def states(api: Client) -> dict[str, str]:
    """Every job's state once none is still ``starting`` (opening its steps)."""

    def settled() -> dict[str, str] | None:
        found = {j["name"]: j["state"] for j in api.ok("GET", "/jobs")["jobs"]}
        return None if "starting" in found.values() else found

    return wait_for(settled)  # type: ignore[no-any-return]


def assert_contiguous(path: Path) -> int:
    """The output holds 0..n-1 exactly once each, in order: resumed, nothing lost."""
    numbers = [json.loads(line)["n"] for line in path.read_text().splitlines()]
    assert numbers == list(range(len(numbers)))
    return len(numbers)


def test_seed_from_file_restores_stored_jobs(tmp_path: Path) -> None:
    first_run(tmp_path, "seed_from_file")
    before = assert_contiguous(tmp_path / "out" / "a.jsonl")
    # the file now changes a's sink and adds d: a keeps its stored definition, d is added
    second = config(tmp_path, "seed_from_file", [job("a", "changed.jsonl"), job("b"), job("d")])
    with ServiceThread(second, options()) as svc:
        api = Client(svc.url)
        assert states(api) == {"a": "running", "b": "stopped", "c": "running", "d": "running"}
        detail = api.ok("GET", "/jobs/a")
        assert detail["definition"]["sinks"][0]["resource"] == "a.jsonl"
        assert api.ok("GET", "/jobs/b")["desired_state"] == "stopped"
        assert api.ok("GET", "/jobs/c")["origin"] == "api"
        assert api.ok("GET", "/services/api-gen")["used_by"] == ["c"]
        flowing(api, "a")
    assert assert_contiguous(tmp_path / "out" / "a.jsonl") > before
    assert not (tmp_path / "out" / "changed.jsonl").exists()


def test_force_from_file_replaces_stored_jobs(tmp_path: Path) -> None:
    first_run(tmp_path, "force_from_file")
    second = config(tmp_path, "force_from_file", [job("a", "changed.jsonl"), job("b")])
    with ServiceThread(second, options()) as svc:
        api = Client(svc.url)
        # c (API job) is gone, b runs again because the file says enabled, a uses the new sink
        assert states(api) == {"a": "running", "b": "running"}
        assert api.ok("GET", "/jobs/a")["definition"]["sinks"][0]["resource"] == "changed.jsonl"
        assert api.ok("GET", "/services/api-gen")["used_by"] == []  # API services are kept
        wait_for(lambda: (tmp_path / "out" / "changed.jsonl").exists())
        # a resumed from its checkpoint: the new file continues the old sequence
        last_before = len((tmp_path / "out" / "a.jsonl").read_text().splitlines())
        first_new = wait_for(lambda: (tmp_path / "out" / "changed.jsonl").read_text().splitlines())
        assert json.loads(first_new[0])["n"] == last_before


def test_keep_uses_only_stored_jobs(tmp_path: Path) -> None:
    # first start with keep and an empty store: the file seeds the store
    first_run(tmp_path, "keep")
    second = config(tmp_path, "keep", [job("a", "changed.jsonl"), job("d")])
    with ServiceThread(second, options()) as svc:
        api = Client(svc.url)
        assert states(api) == {"a": "running", "b": "stopped", "c": "running"}
        assert api.ok("GET", "/jobs/a")["definition"]["sinks"][0]["resource"] == "a.jsonl"
        # a stopped job can be restarted and resumes from its checkpoint
        before = len((tmp_path / "out" / "b.jsonl").read_text().splitlines())
        api.ok("POST", "/jobs/b/restart")
        wait_for(lambda: len((tmp_path / "out" / "b.jsonl").read_text().splitlines()) > before)
    assert_contiguous(tmp_path / "out" / "b.jsonl")
    # after the restart b is wanted running: the next process starts it
    with ServiceThread(second, options()) as svc:
        assert states(Client(svc.url)) == {"a": "running", "b": "running", "c": "running"}


def test_completed_and_disabled_jobs_are_not_rerun(tmp_path: Path) -> None:
    finite = job("once")
    finite["source"]["service_name"] = "ten"
    raw_services = [{"name": "ten", "provider": "generator", "count": 10}]
    base = config(tmp_path, "seed_from_file", [job("off", enabled=False)])
    cfg = parse_config(
        {
            "services": [s.to_dict() for s in base.services] + raw_services,
            "connectors": [finite, job("off", enabled=False)],
            "system": {
                "data_dir": str(tmp_path / "data"),
                "encryption_key_path": str(tmp_path / "k"),
            },
        },
        "t.toml",
        {},
    )
    for _ in range(2):
        with ServiceThread(cfg, options()) as svc:
            api = Client(svc.url)
            wait_for(lambda api=api: api.ok("GET", "/jobs/once")["state"] == "completed")
            assert api.ok("GET", "/jobs/off")["state"] == "stopped"
    assert len((tmp_path / "out" / "once.jsonl").read_text().splitlines()) == 10


def test_stored_job_with_a_missing_service_is_listed_as_failed(tmp_path: Path) -> None:
    first_run(tmp_path, "seed_from_file")
    # remove the API service behind the API's back (as if the store had lost it)
    with ServiceThread(config(tmp_path, "seed_from_file", []), options()) as svc:
        api = Client(svc.url)
        api.ok("POST", "/jobs/c/stop")
        api.ok("DELETE", "/jobs/c", status=204)
        api.ok("POST", "/jobs", job("e", source="api-gen"), 201)
        api.ok("POST", "/jobs/e/stop")
    from mstream.stores import Stores

    stores = Stores.embedded(tmp_path / "data")
    stores.services.delete("api-gen")
    stores.close()
    with ServiceThread(config(tmp_path, "seed_from_file", []), options()) as svc:
        api = Client(svc.url)
        broken = api.ok("GET", "/jobs/e")
        assert broken["state"] == "failed" and "no service named 'api-gen'" in broken["reason"]
        assert states(api)["a"] == "running"  # the others are fine
        assert api.call("POST", "/jobs/e/restart").status_code == 409
        api.ok("POST", "/services", {"name": "api-gen", "provider": "generator", "count": 3}, 201)
        assert api.ok("POST", "/jobs/e/restart")["state"] in ("starting", "running", "completed")


def test_mstream_processes_restart(tmp_path: Path) -> None:
    cfg = tmp_path / "mstream-config.toml"
    cfg.write_text(
        f"""
[[services]]
name = "gen"
provider = "generator"
rate = 300

[[services]]
name = "files"
provider = "file"
base_dir = "{tmp_path / "out"}"

[[connectors]]
name = "a"
checkpoint = {{ enabled = true, interval_ms = 100 }}
source = {{ service_name = "gen", resource = "counter", output_encoding = "json" }}
sinks = [{{ service_name = "files", resource = "a.jsonl", output_encoding = "json" }}]

[system]
data_dir = "{tmp_path / "data"}"
encryption_key_path = "{tmp_path / "mstream.key"}"
file_roots = ["{tmp_path}"]
"""
    )
    env = {**os.environ, "MSTREAM_API_PORT": "0", "MSTREAM_LOG": "info"}
    env.pop("MSTREAM_ENC_KEY", None)
    env.pop("MSTREAM_API_TOKEN", None)

    def run(action: Any) -> str:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mstream.cli", "--config", str(cfg)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            lines = []
            url = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                line = proc.stderr.readline()
                if not line:
                    break
                lines.append(line)
                found = re.search(r"API listening on (http://127\.0\.0\.1:\d+)", line)
                if found:
                    url = found.group(1)
                if url and "mstream started:" in line:  # the API listens before jobs start
                    action(Client(url))
                    break
            else:
                raise AssertionError("".join(lines))
            proc.send_signal(signal.SIGTERM)
            _, rest = proc.communicate(timeout=60)
            assert proc.returncode == 0, "".join(lines) + rest
            return "".join(lines) + rest
        finally:
            if proc.poll() is None:
                proc.kill()

    def first(api: Client) -> None:
        flowing(api, "a", 50)
        api.ok(
            "POST", "/services", {"name": "db", "provider": "file", "base_dir": str(tmp_path)}, 201
        )

    log = run(first)
    assert (tmp_path / "mstream.key").stat().st_mode & 0o777 == 0o600
    assert "created a new encryption key file" in log

    def second(api: Client) -> None:
        assert api.ok("GET", "/services/db")["origin"] == "api"
        flowing(api, "a", 50)

    log = run(second)
    assert "services: 3 stored" in log
    assert_contiguous(tmp_path / "out" / "a.jsonl")

    # the wrong key: a clear start-up error, exit code 2, nothing served
    wrong = subprocess.run(
        [sys.executable, "-m", "mstream.cli", "--config", str(cfg)],
        env={**env, "MSTREAM_ENC_KEY": "44" * 32},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert wrong.returncode == 2, wrong.stderr
    assert "error: cannot decrypt stored services with this key (MSTREAM_ENC_KEY)" in wrong.stderr
    assert "API listening" not in wrong.stderr and "Traceback" not in wrong.stderr
