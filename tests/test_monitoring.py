"""Monitoring in the original's shapes: ``/stats``, ``/jobs/{name}/metrics`` (lag from the
source's own timestamps) and the same figures in ``/metrics``, against the Pub/Sub emulator."""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.service import ServiceOptions
from tests.test_pubsub import Emulator, pubsub_service
from tests.test_pubsub import emulator as emulator  # the fixture
from tests.waiting import wait_for


def test_job_metrics_stats_and_prometheus_report_processed_bytes_and_lag(
    emulator: Emulator,
    tmp_path: Path,
) -> None:
    topic = emulator.topic("in")
    subscription = emulator.subscription(topic)
    payloads = [json.dumps({"n": i, "pad": "x" * i}).encode() for i in range(20)]
    published_at = time.time()
    emulator.publish(topic, [(p, {}) for p in payloads])
    config = parse_config(
        {
            "system": {"data_dir": str(tmp_path / "data"), "file_roots": [str(tmp_path)]},
            "services": [
                pubsub_service(),
                {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
            ],
            "connectors": [
                {
                    "name": "ps-to-file",
                    "source": {
                        "service_name": "ps",
                        "resource": subscription,
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
        url = f"{svc.url}/jobs/ps-to-file/metrics"
        wait_for(
            lambda: requests.get(url, timeout=10).json()["events_processed"] == 20,
            30,
            "20 events processed",
        )
        metrics = requests.get(url, timeout=10).json()
        assert metrics["bytes_processed"] == sum(len(p) for p in payloads)
        # the lag is measured from the messages' publish times, not from when they were read
        assert 0.0 < metrics["current_lag_seconds"] < time.time() - published_at + 5
        assert metrics["total_errors"] == 0 and metrics["last_processed_at"].endswith("Z")

        stats = requests.get(f"{svc.url}/stats", timeout=10).json()
        assert stats["total_events_processed"] == 20 and stats["running_jobs"] == 1
        assert stats["total_bytes_processed"] == metrics["bytes_processed"]
        assert stats["error_jobs"] == 0 and stats["uptime_seconds"] >= 0

        text = requests.get(f"{svc.url}/metrics", timeout=10).text
        assert 'mstream_lag_seconds{job="ps-to-file"}' in text
        assert (
            f'mstream_bytes_in_total{{job="ps-to-file"}} {float(stats["total_bytes_processed"])}'
            in text
        )

        missing = requests.get(f"{svc.url}/jobs/nope/metrics", timeout=10)
        assert missing.status_code == 404
