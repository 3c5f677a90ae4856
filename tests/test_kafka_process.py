"""SIGKILL an ``mstream`` process reading Kafka with checkpoints on, restart it: nothing lost.

The duplicates after the restart are exactly the events the killed process wrote after
its last saved checkpoint (the unacknowledged / not yet checkpointed tail).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mstream.stores.base import Checkpoint
from mstream.stores.sqlite import SqliteCheckpointStore, SqliteDatabase
from tests.test_kafka import BackgroundProducer, create_topic, file_numbers, tail_check
from tests.waiting import wait_for

pytestmark = pytest.mark.kafka

MSTREAM = Path(sys.executable).with_name("mstream")


def _config(path: Path, bootstrap: str, topic: str, group: str, out_dir: Path, client: str) -> None:
    path.write_text(
        f"""
[system]
encryption_key_path = "{path.parent / "mstream.key"}"

[[services]]
name = "kafka"
provider = "kafka"
client = "{client}"
"bootstrap.servers" = "{bootstrap}"
"group.id" = "{group}"
"max.poll.records" = 100
"session.timeout.ms" = 6000

[[services]]
name = "files"
provider = "file"
base_dir = "{out_dir}"

[[connectors]]
name = "k2f"
checkpoint = {{ enabled = true, interval_ms = 100 }}
source = {{ service_name = "kafka", resource = "{topic}", output_encoding = "json" }}
sinks = [{{ service_name = "files", resource = "out.jsonl", output_encoding = "json" }}]
"""
    )


def _checkpoint(data_dir: Path) -> Checkpoint | None:
    """The connector's latest saved checkpoint in the process's SQLite store."""
    if not (data_dir / "mstream.db").exists():
        return None
    db = SqliteDatabase(data_dir / "mstream.db")
    try:
        return SqliteCheckpointStore(db).latest("k2f")
    finally:
        db.close()


def _start(config: Path, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(MSTREAM), "--config", str(config), "--data-dir", str(data_dir), "--no-api"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
            env={**os.environ, "MSTREAM_LOG": "info"},
        )


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_sigkill_and_restart(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, client: str
) -> None:
    if client == "confluent":
        pytest.importorskip("confluent_kafka")
    assert MSTREAM.exists(), f"{MSTREAM} is not installed"
    topic = f"in-{unique_name}"
    create_topic(kafka_bootstrap, topic, 2)
    out_dir, data_dir = tmp_path / "out", tmp_path / "data"
    out_dir.mkdir()
    config = tmp_path / "mstream.toml"
    _config(config, kafka_bootstrap, topic, unique_name, out_dir, client)
    out = out_dir / "out.jsonl"
    log = tmp_path / "mstream.log"

    with BackgroundProducer(kafka_bootstrap, topic, 2) as producer:
        proc = _start(config, data_dir, log)
        try:
            wait_for(
                lambda: (
                    (len(file_numbers(out)) >= 3000 and _checkpoint(data_dir) is not None)
                    or proc.poll() is not None
                ),
                90,
                "3000 lines and a saved checkpoint",
            )
            assert proc.poll() is None, log.read_text()[-3000:]
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        assert not producer.finished, "the stream ended before the kill"
    total = producer.stop()

    text = out.read_bytes()
    if not text.endswith(b"\n"):  # a line cut by the kill: never acknowledged, so redelivered
        out.write_bytes(text[: text.rfind(b"\n") + 1])
    first_run = file_numbers(out)
    saved = _checkpoint(data_dir)
    assert saved is not None and set(saved.position) == {topic}, (
        "no checkpoint saved before the kill"
    )

    proc = _start(config, data_dir, log)
    try:
        wait_for(
            lambda: len(set(file_numbers(out))) >= total or proc.poll() is not None,
            120,
            "every message",
        )
        assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    lines = file_numbers(out)
    second_run = lines[len(first_run) :]
    assert lines[: len(first_run)] == first_run
    tail_check(first_run, second_run, 2, total, saved.position[topic])
    assert json.loads(out.read_text().splitlines()[0])["n"] in range(total)
