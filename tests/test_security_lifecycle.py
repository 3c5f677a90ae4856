"""Job lifecycle under hostile timing, and starting safely, against the real service.

* Concurrent DELETE, restart and create on one job name can never leave a connector
  running that the API does not list (each connector runs on a thread named
  ``mstream-<job>``, so a hidden one is visible in :func:`threading.enumerate`).
* ``safe_mode`` (``mstream --safe-mode``) restores every stored job stopped, and leaves
  their desired states alone for the next normal start.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.service import ServiceOptions
from tests.waiting import wait_for

pytestmark = [pytest.mark.security, pytest.mark.api]

KEY = "33" * 32
JSON = {"Content-Type": "application/json"}


def config(tmp: Path) -> Any:
    return parse_config(
        {
            "services": [
                {"name": "gen", "provider": "generator", "rate": 2000},
                {"name": "files", "provider": "file", "base_dir": str(tmp / "out")},
            ],
            "system": {
                "data_dir": str(tmp / "data"),
                "encryption_key_path": str(tmp / "mstream.key"),
            },
        },
        "test.toml",
        {},
    )


def job(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"service_name": "gen", "resource": "counter", "output_encoding": "json"},
        "sinks": [
            {"service_name": "files", "resource": f"{name}.jsonl", "output_encoding": "json"}
        ],
        "checkpoint": {"enabled": True, "interval_ms": 100},
    }


def options(**extra: Any) -> ServiceOptions:
    return ServiceOptions(
        api_port=0, environ={"MSTREAM_ENC_KEY": KEY}, progress_interval=60, **extra
    )


def connector_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"mstream-{name}" and t.is_alive()]


def listed_state(session: requests.Session, url: str, name: str) -> str | None:
    response = session.get(f"{url}/jobs/{name}", timeout=30)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return str(response.json()["state"])


def test_concurrent_delete_restart_create_leave_no_hidden_connector(tmp_path: Path) -> None:
    name = "race"
    with ServiceThread(config(tmp_path), options(stop_timeout=10)) as service:
        url = service.url
        session = requests.Session()
        calls = [
            ("POST", "/jobs", json.dumps(job(name))),
            ("POST", f"/jobs/{name}/stop", None),
            ("POST", f"/jobs/{name}/restart", None),
            ("DELETE", f"/jobs/{name}", None),
        ]
        statuses: dict[int, int] = {}

        def send(call: tuple[str, str, str | None]) -> int:
            method, path, body = call
            return requests.request(
                method, url + path, data=body, headers=JSON, timeout=60
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            for _round in range(25):
                for status in pool.map(send, calls * 2):
                    statuses[status] = statuses.get(status, 0) + 1
                # invariant, once this round's calls have all answered
                state = listed_state(session, url, name)
                running = connector_threads(name)
                if state is None or state in ("stopped", "completed", "failed"):
                    wait_for(
                        lambda: not connector_threads(name), 10, "no connector of an unlisted job"
                    )
                else:
                    assert len(running) <= 1, running
        # every answer is a success or a clean refusal (busy / exists / running / not found)
        assert set(statuses) <= {200, 201, 204, 404, 409}, statuses
        assert statuses.get(409, 0) > 0, statuses  # the storm did collide
        # finally: stop and delete; nothing may keep writing
        for method, path in (("POST", f"/jobs/{name}/stop"), ("DELETE", f"/jobs/{name}")):
            status = requests.request(method, url + path, headers=JSON, timeout=60).status_code
            assert status in (200, 204, 404), status
        assert listed_state(session, url, name) is None
        wait_for(lambda: not connector_threads(name), 10, "every connector of the job stopped")
        out = tmp_path / "out" / f"{name}.jsonl"
        size = out.stat().st_size if out.exists() else 0
        # a hidden connector would keep appending at 2,000 events/s
        assert not connector_threads(name)
        assert (out.stat().st_size if out.exists() else 0) == size


def test_safe_mode_starts_no_stored_job_and_keeps_desired_states(tmp_path: Path) -> None:
    with ServiceThread(config(tmp_path), options()) as service:
        created = requests.post(
            f"{service.url}/jobs", data=json.dumps(job("kept")), headers=JSON, timeout=30
        )
        assert created.status_code == 201, created.text
        wait_for(lambda: bool(connector_threads("kept")), 10, "the job running")

    with ServiceThread(config(tmp_path), options(safe_mode=True)) as service:
        body = requests.get(f"{service.url}/jobs/kept", timeout=30).json()
        assert body["state"] == "stopped"
        assert "safe mode" in body["reason"]
        assert body["desired_state"] == "running"  # untouched for the next normal start
        assert not connector_threads("kept")
        restarted = requests.post(f"{service.url}/jobs/kept/restart", headers=JSON, timeout=30)
        assert restarted.status_code == 200, restarted.text
        assert restarted.json()["state"] in ("starting", "running")

    with ServiceThread(config(tmp_path), options()) as service:
        wait_for(
            lambda: listed_state(requests.Session(), service.url, "kept") == "running",
            10,
            "the job running again after a normal start",
        )


def test_restarting_a_completed_job_asks_from_where(tmp_path: Path) -> None:
    with ServiceThread(config(tmp_path), options()) as service:
        url = service.url
        post = requests.post(
            f"{url}/services",
            data=json.dumps({"name": "fifty", "provider": "generator", "count": 50}),
            headers=JSON,
            timeout=30,
        )
        assert post.status_code == 201, post.text
        definition = job("once") | {
            "source": {"service_name": "fifty", "resource": "counter", "output_encoding": "json"}
        }
        created = requests.post(
            f"{url}/jobs", data=json.dumps(definition), headers=JSON, timeout=30
        )
        assert created.status_code == 201, created.text
        wait_for(
            lambda: listed_state(requests.Session(), url, "once") == "completed", 20, "completion"
        )
        out = tmp_path / "out" / "once.jsonl"
        assert len(out.read_text().splitlines()) == 50

        again = requests.post(f"{url}/jobs/once/restart", headers=JSON, timeout=30)
        assert again.status_code == 409, again.text
        assert "from=checkpoint" in again.json()["error"]["message"]
        bogus = requests.post(f"{url}/jobs/once/restart?from=yesterday", headers=JSON, timeout=30)
        assert bogus.status_code == 400, bogus.text
        assert "from" in bogus.json()["error"]["fields"]
        assert len(out.read_text().splitlines()) == 50  # nothing written again

        fresh = requests.post(f"{url}/jobs/once/restart?from=beginning", headers=JSON, timeout=30)
        assert fresh.status_code == 200, fresh.text
        wait_for(
            lambda: len(out.read_text().splitlines()) == 100, 20, "the job read from the beginning"
        )


def test_a_job_stuck_opening_is_failed_by_the_start_watchdog(tmp_path: Path) -> None:
    """A MongoDB source whose server accepts connections and never answers would sit in
    ``watch()`` for the two minutes its URI allows; the watchdog fails it after 2 s, the
    API keeps answering, and the job can be deleted."""
    from tests.test_stop_signals import StalledServer

    stalled = StalledServer()
    try:
        cfg = parse_config(
            {
                "services": [
                    {
                        "name": "mongo",
                        "provider": "mongodb",
                        "connection_string": f"mongodb://127.0.0.1:{stalled.port}/"
                        "?serverSelectionTimeoutMS=120000&connectTimeoutMS=120000"
                        "&socketTimeoutMS=120000&directConnection=true",
                        "db_name": "app",
                    },
                    {"name": "files", "provider": "file", "base_dir": str(tmp_path / "out")},
                ],
                "connectors": [
                    {
                        "name": "stuck",
                        "source": {
                            "service_name": "mongo",
                            "resource": "users",
                            "output_encoding": "json",
                        },
                        "sinks": [
                            {
                                "service_name": "files",
                                "resource": "o.jsonl",
                                "output_encoding": "json",
                            }
                        ],
                    }
                ],
                "system": {
                    "data_dir": str(tmp_path / "data"),
                    "encryption_key_path": str(tmp_path / "mstream.key"),
                },
            },
            "test.toml",
            {},
        )
        with ServiceThread(cfg, options(start_timeout=2.0, stop_timeout=5)) as service:
            url = service.url
            wait_for(
                lambda: listed_state(requests.Session(), url, "stuck") == "failed",
                20,
                "the watchdog to fail the job",
            )
            body = requests.get(f"{url}/jobs/stuck", timeout=10).json()
            assert "did not start within 2s" in body["reason"]
            began = time.perf_counter()
            assert requests.get(f"{url}/health", timeout=10).status_code == 200
            assert time.perf_counter() - began < 1.0
            deleted = requests.delete(f"{url}/jobs/stuck", headers=JSON, timeout=30)
            assert deleted.status_code == 204, deleted.text
    finally:
        stalled.close()
