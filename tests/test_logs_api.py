"""``GET /logs`` and ``GET /logs/stream``: filters, bad input, masking, live following."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.service import ServiceOptions
from tests.waiting import wait_for

SECRET = "s3cr3t-hook-token-value"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def service(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.INFO)  # as mstream's own logging set-up does
    config = parse_config(
        {
            "system": {"data_dir": str(tmp_path / "data")},
            "services": [
                {"name": "gen", "provider": "generator", "count": 5},
                {"name": "out", "provider": "stdout"},
                {
                    "name": "hook",
                    "provider": "http",
                    "host": "http://127.0.0.1:9",
                    "headers": {"Authorization": f"Bearer {SECRET}"},
                },
            ],
            "connectors": [
                {
                    "name": "five",
                    "source": {
                        "service_name": "gen",
                        "resource": "counter",
                        "output_encoding": "json",
                    },
                    "sinks": [{"service_name": "out", "output_encoding": "json"}],
                }
            ],
        },
        str(tmp_path / "t.toml"),
        {},
    )
    with ServiceThread(config, ServiceOptions(api_port=0, data_dir=tmp_path / "data")) as svc:
        yield svc


def entries(service: ServiceThread, query: str = "") -> list[dict[str, Any]]:
    answer = requests.get(f"{service.url}/logs{query}", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["entries"]  # type: ignore[no-any-return]


def test_logs_are_filtered_by_job_level_limit_and_since(service: ServiceThread) -> None:
    found = wait_for(
        lambda: [e for e in entries(service, "?job_name=five") if "completed" in e["message"]],
        15,
        "the job's completion line",
    )
    line = found[-1]
    assert line["level"] == "info" and line["target"] == "mstream.connector.five"
    assert line["timestamp"].endswith("+00:00") and isinstance(line["id"], int)
    assert all(e["job_name"] == "five" for e in entries(service, "?job_name=five"))
    logging.getLogger("mstream.connector.five").warning("five is slow")
    warned = wait_for(lambda: entries(service, "?job_name=five&level=warn"), 5, "a warning")
    assert all(e["level"] in ("warn", "error") for e in warned)
    assert any(e["message"] == "five is slow" for e in warned)
    assert len(entries(service, "?limit=1")) == 1
    assert entries(service, "?since=2999-01-01T00:00:00Z") == []
    assert entries(service, f"?job_name=five&since={line['timestamp'].replace('+00:00', 'Z')}")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?level=loud", "level"),
        ("?limit=-1", "limit"),
        ("?limit=x", "limit"),
        ("?since=yesterday", "since"),
    ],
)
def test_bad_log_queries_are_400_naming_the_field(
    service: ServiceThread, query: str, field: str
) -> None:
    answer = requests.get(f"{service.url}/logs{query}", timeout=10)
    assert answer.status_code == 400
    assert field in answer.json()["error"]["fields"]


def test_secrets_are_masked_in_the_log_buffer(service: ServiceThread) -> None:
    logging.getLogger("mstream.test").warning("calling with Bearer %s", SECRET)
    masked = wait_for(
        lambda: [e for e in entries(service) if "calling with" in e["message"]],
        5,
        "the line",
    )
    assert SECRET not in json.dumps(entries(service)) and "****" in masked[-1]["message"]


def test_the_stream_sends_recent_entries_then_follows_live(service: ServiceThread) -> None:
    wait_for(lambda: entries(service, "?job_name=five"), 15, "the job's lines")
    received: list[dict[str, Any]] = []
    opened = threading.Event()

    def follow() -> None:
        with requests.get(
            f"{service.url}/logs/stream?initial=2", stream=True, timeout=30
        ) as answer:
            assert answer.headers["Content-Type"].startswith("text/event-stream")
            opened.set()
            for raw in answer.iter_lines(decode_unicode=True):
                if raw and raw.startswith("data: "):
                    received.append(json.loads(raw[6:]))
                    if any(e["message"] == "live line" for e in received):
                        return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert opened.wait(10)
    wait_for(lambda: len(received) >= 2, 10, "the two preloaded entries")
    logging.getLogger("mstream.connector.five").info("live line")
    reader.join(10)
    assert not reader.is_alive(), "the live line did not arrive"
    assert received[-1]["message"] == "live line" and received[-1]["job_name"] == "five"
