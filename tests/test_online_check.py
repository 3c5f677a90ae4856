"""``mstream validate --online`` against the test servers: what exists passes, what is
missing or unreachable is named, and the exit code says which."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mstream.cli import main
from tests.test_kafka import create_topic
from tests.test_pubsub import PROJECT, Emulator
from tests.test_pubsub import emulator as emulator  # the fixture


def write_config(
    path: Path, kafka: str, mongo: str, topic: str, subscription: str, ps_topic: str
) -> Path:
    path.write_text(
        f"""
[[services]]
name = "kafka"
provider = "kafka"
"bootstrap.servers" = "{kafka}"
"group.id" = "g"

[[services]]
name = "mongo"
provider = "mongodb"
connection_string = "{mongo}"
db_name = "mstream_tests"

[[services]]
name = "ps"
provider = "pubsub"
project_id = "{PROJECT}"

[[connectors]]
name = "k2m"
source = {{ service_name = "kafka", resource = "{topic}", output_encoding = "json" }}
sinks = [{{ service_name = "mongo", resource = "out", output_encoding = "bson" }}]

[[connectors]]
name = "ps2k"
source = {{ service_name = "ps", resource = "{subscription}", output_encoding = "json" }}
sinks = [{{ service_name = "ps", resource = "{ps_topic}", output_encoding = "json" }}]
"""
    )
    return path


def test_online_checks_name_what_is_missing_and_pass_what_exists(
    kafka_bootstrap: str,
    mongodb_uri: str,
    emulator: Emulator,
    unique_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = f"on-{unique_name}"
    create_topic(kafka_bootstrap, topic, 3)
    ps_topic = emulator.topic("on")
    subscription = emulator.subscription(ps_topic)

    good = write_config(
        tmp_path / "good.toml", kafka_bootstrap, mongodb_uri, topic, subscription, ps_topic
    )
    assert main(["validate", "--config", str(good), "--online"]) == 0
    out = capsys.readouterr().out
    assert f"✓ services[0] kafka: bootstrap servers {kafka_bootstrap} answer" in out
    assert f"✓ connectors[0] k2m source: topic '{topic}' exists (3 partitions)" in out
    assert f"✓ connectors[1] ps2k source: subscription '{subscription}' exists" in out
    assert "✓ services[1] mongo: server answers" in out and "✗" not in out

    bad = write_config(
        tmp_path / "bad.toml",
        kafka_bootstrap,
        mongodb_uri,
        f"{topic}-missing",
        "nope-sub",
        "nope-topic",
    )
    assert main(["validate", "--config", str(bad), "--online"]) == 3
    out = capsys.readouterr().out
    assert f"✗ connectors[0] k2m source: topic '{topic}-missing' exists: no topic" in out
    assert "✗ connectors[1] ps2k source: subscription 'nope-sub' exists: NotFound" in out
    assert "✗ connectors[1] ps2k sinks[0]: topic 'nope-topic' exists: NotFound" in out

    dead = tmp_path / "dead.toml"
    dead.write_text(bad.read_text().replace(kafka_bootstrap, "127.0.0.1:1"))
    assert main(["validate", "--config", str(dead), "--online"]) == 3
    out = capsys.readouterr().out
    assert "✗ services[0] kafka: bootstrap servers 127.0.0.1:1 answer" in out
    assert "k2m source: topic" not in out  # not checked on a service that did not answer


def test_the_api_runs_the_online_checks_when_asked(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    import requests

    from mstream.api.testing import ServiceThread
    from mstream.config import parse_config
    from mstream.service import ServiceOptions

    headers = {"Content-Type": "application/json"}
    config = parse_config({"system": {"data_dir": str(tmp_path / "data")}}, "t.toml", {})
    with ServiceThread(config, ServiceOptions(api_port=0, data_dir=tmp_path / "data")) as svc:
        kafka = {
            "name": "kafka",
            "provider": "kafka",
            "bootstrap.servers": kafka_bootstrap,
            "group.id": "g",
        }
        dead = {**kafka, "name": "dead", "bootstrap.servers": "127.0.0.1:1"}
        refused = requests.post(
            f"{svc.url}/services?check=online", json=dead, headers=headers, timeout=30
        )
        assert refused.status_code == 400 and "bootstrap servers 127.0.0.1:1" in refused.text
        for service in (kafka, {"name": "out", "provider": "stdout"}):
            created = requests.post(
                f"{svc.url}/services?check=online", json=service, headers=headers, timeout=30
            )
            assert created.status_code == 201, created.text
        job = {
            "name": "k",
            "source": {
                "service_name": "kafka",
                "resource": f"missing-{unique_name}",
                "output_encoding": "json",
            },
            "sinks": [{"service_name": "out", "output_encoding": "json"}],
        }
        missing = requests.post(
            f"{svc.url}/jobs?check=online", json=job, headers=headers, timeout=30
        )
        assert missing.status_code == 400 and f"no topic 'missing-{unique_name}'" in missing.text
        bad = requests.post(
            f"{svc.url}/jobs?check=sometimes", json=job, headers=headers, timeout=30
        )
        assert bad.status_code == 400 and "check" in bad.json()["error"]["fields"]


def test_a_change_stream_source_needs_a_replica_set(
    mongodb_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pymongo import MongoClient

    client: Any = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        replica_set = bool(client.admin.command("hello").get("setName"))
    finally:
        client.close()
    config = tmp_path / "m.toml"
    config.write_text(
        f"""
[[services]]
name = "mongo"
provider = "mongodb"
connection_string = "{mongodb_uri}"
db_name = "mstream_tests"
[[services]]
name = "out"
provider = "stdout"
[[connectors]]
name = "cdc"
source = {{ service_name = "mongo", resource = "users", output_encoding = "json" }}
sinks = [{{ service_name = "out", output_encoding = "json" }}]
"""
    )
    code = main(["validate", "--config", str(config), "--online"])
    out = capsys.readouterr().out
    if replica_set:  # the stand-in answers as a replica set: change streams work
        assert code == 0 and "✓ connectors[0] cdc source: a replica set" in out
    else:
        assert code == 3 and "a standalone server has no change streams" in out
