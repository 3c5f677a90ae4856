"""What an API caller can reach on disk, against the real service over HTTP.

* A file service created through the API needs a ``base_dir`` inside the file roots.
* No job, whatever its service, reads or writes the key file, the state database (and its
  WAL files) or the config file: refused with 400 naming the field, before it starts.
* A symlink inside a root that points outside is refused (paths are resolved).
* A line longer than ``max_line_bytes`` is dead-lettered with its reason, never read whole.
* The data directory is 0700 and the state files 0600.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import requests

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.service import ServiceOptions
from tests.waiting import wait_for

pytestmark = [pytest.mark.security, pytest.mark.api]

JSON = {"Content-Type": "application/json"}


def config(tmp: Path, **system: Any) -> Any:
    """The quick start's shape: a file service on ``base_dir = tmp``, with the key and the
    state directory inside it."""
    return parse_config(
        {
            "services": [{"name": "local", "provider": "file", "base_dir": str(tmp)}],
            "system": {
                "data_dir": str(tmp / "mstream-data"),
                "encryption_key_path": str(tmp / "mstream.key"),
                **system,
            },
        },
        str(tmp / "mstream-config.toml"),
        {},
    )


def post(url: str, path: str, body: Any) -> requests.Response:
    return requests.post(url + path, data=json.dumps(body), headers=JSON, timeout=30)


def job(name: str, source: str, sink: str, service: str = "local") -> dict[str, Any]:
    return {
        "name": name,
        "source": {"service_name": service, "resource": source, "output_encoding": "json"},
        "sinks": [{"service_name": service, "resource": sink, "output_encoding": "json"}],
    }


@pytest.fixture
def service(tmp_path: Path) -> Any:
    (tmp_path / "mstream-config.toml").write_text("# the config file\n")
    options = ServiceOptions(api_port=0, progress_interval=60)
    with ServiceThread(config(tmp_path), options) as svc:
        yield svc


def test_api_file_service_needs_a_base_dir_inside_the_roots(service: Any) -> None:
    for body in (
        {"name": "anywhere", "provider": "file"},
        {"name": "root", "provider": "file", "base_dir": "/"},
        {"name": "etc", "provider": "file", "base_dir": "/etc"},
    ):
        response = post(service.url, "/services", body)
        assert response.status_code == 400, response.text
        assert "base_dir" in response.json()["error"]["fields"], response.text


@pytest.mark.parametrize(
    ("source", "sink", "field"),
    [
        ("mstream.key", "out.jsonl", "source.resource"),
        ("mstream-data/mstream.db", "out.jsonl", "source.resource"),
        ("mstream-data/mstream.db-wal", "out.jsonl", "source.resource"),
        ("mstream-config.toml", "out.jsonl", "source.resource"),
        ("in.jsonl", "mstream.key", "sinks[0].resource"),
        ("in.jsonl", "mstream-data/evil.jsonl", "sinks[0].resource"),
    ],
)
def test_no_job_opens_mstreams_own_files(
    service: Any, tmp_path: Path, source: str, sink: str, field: str
) -> None:
    key_before = (tmp_path / "mstream.key").read_bytes()
    response = post(service.url, "/jobs", job("steal", source, sink))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert field in error["fields"], error
    assert "mstream's own files" in error["fields"][field]
    assert requests.get(f"{service.url}/jobs/steal", timeout=30).status_code == 404
    assert (tmp_path / "mstream.key").read_bytes() == key_before
    assert not (tmp_path / "out.jsonl").exists()


def test_a_symlink_out_of_the_roots_is_refused(service: Any, tmp_path: Path) -> None:
    (tmp_path / "passwd-link").symlink_to("/etc/passwd")
    (tmp_path / "key-link").symlink_to(tmp_path / "mstream.key")
    for link, reason in (("passwd-link", "is outside"), ("key-link", "own files")):
        response = post(service.url, "/jobs", job("link", link, "out.jsonl"))
        assert response.status_code == 400, response.text
        assert reason in response.json()["error"]["fields"]["source.resource"]


def test_an_oversized_line_is_dead_lettered_with_its_reason(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    with data.open("wb") as f:
        f.write(b'{"n": 1}\n')
        f.write(b"x" * 5_000_000 + b"\n")  # 5 MB, over the 1 MiB limit below
        f.write(b'{"n": 2}\n')
    cfg = parse_config(
        {
            "services": [
                {
                    "name": "local",
                    "provider": "file",
                    "base_dir": str(tmp_path),
                    "max_line_bytes": 1024 * 1024,
                }
            ],
            "connectors": [
                job("lines", "in.jsonl", "out.jsonl")
                | {"dead_letter": {"service_name": "local", "resource": "dead.jsonl"}}
            ],
            "system": {
                "data_dir": str(tmp_path / "mstream-data"),
                "encryption_key_path": str(tmp_path / "mstream.key"),
            },
        },
        "test.toml",
        {},
    )
    with ServiceThread(cfg, ServiceOptions(api_port=0, progress_interval=60)) as svc:
        wait_for(
            lambda: (
                requests.get(f"{svc.url}/jobs/lines", timeout=30).json()["state"] == "completed"
            ),
            30,
            "the job to complete",
        )
        counters = requests.get(f"{svc.url}/jobs/lines", timeout=30).json()["counters"]
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out == [{"n": 1}, {"n": 2}]
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert len(dead) == 1 and counters["dead_lettered"] == 1
    assert "longer than max_line_bytes (1,048,576)" in dead[0]["reason"]
    assert dead[0]["stage"] == "decode"


def test_state_is_private(service: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "mstream-data"
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for path in data_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "mstream.key").stat().st_mode) == 0o600
    assert os.access(data_dir, os.R_OK)
