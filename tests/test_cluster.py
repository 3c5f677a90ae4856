"""Several real ``mstream`` processes sharing MongoDB state stores.

Each test starts instances of ``python -m mstream.cli`` against the session's MongoDB
stand-in (and Kafka for replicas), with a short lease (2 s, heartbeat 0.5 s) so takeovers
happen within the test's bounded waits. What is checked:

* a single-reader job (MongoDB change stream) runs on exactly one of three instances; a
  Kafka job with ``replicas = 3`` runs on all three, each consuming part of the topic;
* SIGKILL of the owner mid-stream: another instance takes over within the lease TTL and
  every change arrives (duplicates bounded by what was in flight); the takeover time is
  printed;
* SIGSTOP of the owner past its TTL: another takes over; after SIGCONT the old owner stops
  the job and none of its checkpoint writes lands (asserted in the store);
* a stop issued on one instance stops the job where it runs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pymongo import MongoClient

from tests.test_mongodb import Writer
from tests.test_service_restart import job as counter_job
from tests.waiting import wait_for

pytestmark = [pytest.mark.mongodb, pytest.mark.slow]

KEY = "44" * 32
TTL_MS, BEAT_MS = 2000, 500


class Instance:
    """One ``mstream`` process; its log lines are collected as they come."""

    def __init__(self, config: Path, instance_id: str, tmp: Path) -> None:
        self.id = instance_id
        env = {
            **os.environ,
            "MSTREAM_INSTANCE_ID": instance_id,
            "MSTREAM_ENC_KEY": KEY,
            "MSTREAM_DATA_DIR": str(tmp / f"data-{instance_id}"),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mstream.cli", "--config", str(config), "--api-port", "0"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        assert self.proc.stderr is not None
        stderr = self.proc.stderr
        self._reader = threading.Thread(
            target=lambda: self.lines.extend(iter(stderr.readline, "")), daemon=True
        )
        self._reader.start()
        self.url = wait_for(self._listening, 60, f"instance {instance_id} to listen")

    def _listening(self) -> str | None:
        assert self.proc.poll() is None, "".join(self.lines[-20:])
        for line in list(self.lines):
            found = re.search(r"API listening on (http://\S+)", line)
            if found:
                return found.group(1)
        return None

    def get(self, path: str) -> Any:
        if self.proc.poll() is not None:
            raise AssertionError(f"instance {self.id} exited:\n{''.join(self.lines[-30:])}")
        reply = requests.get(self.url + path, timeout=10)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def post(self, path: str, body: Any = None) -> requests.Response:
        return requests.post(
            self.url + path, json=body, headers={"Content-Type": "application/json"}, timeout=60
        )

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused one must run to stop
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)


def write_config(
    tmp: Path, uri: str, db: str, connectors: list[dict[str, Any]], **services: Any
) -> Path:
    """A config whose jobs, services and checkpoints live in MongoDB database ``db``."""
    extra = "".join(
        f"\n[[services]]\nname = {json.dumps(name)}\n"
        + "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in options.items())
        for name, options in services.items()
    )
    body = f"""
[system]
encryption_key_path = "{tmp / "unused.key"}"
checkpoints = {{ service_name = "state", resource = "checkpoints" }}
job_lifecycle = {{ service_name = "state", resource = "jobs" }}
service_lifecycle = {{ service_name = "state", resource = "services" }}

[system.cluster]
lease_ttl_ms = {TTL_MS}
heartbeat_interval_ms = {BEAT_MS}

[[services]]
name = "state"
provider = "mongodb"
connection_string = "{uri}"
db_name = "{db}"

[[services]]
name = "files"
provider = "file"
base_dir = "{tmp / "out"}"
{extra}
"""
    path = tmp / "cluster.toml"
    path.write_text(body + "".join(_connector_toml(c) for c in connectors))
    return path


def _connector_toml(connector: dict[str, Any]) -> str:
    return "\n[[connectors]]\n" + "".join(
        f"{key} = {_inline(value)}\n" for key, value in connector.items()
    )


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_inline(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return json.dumps(value)


def change_job(name: str, collection: str, out: str) -> dict[str, Any]:
    return {
        "name": name,
        "checkpoint": {"enabled": True, "interval_ms": 100},
        "source": {"service_name": "state", "resource": collection, "output_encoding": "json"},
        "sinks": [{"service_name": "files", "resource": out, "output_encoding": "json"}],
    }


@pytest.fixture
def instances() -> Iterator[list[Instance]]:
    """The instances a test started, stopped at its end whatever happened."""
    started: list[Instance] = []
    yield started
    for instance in started:
        instance.stop()


def owners(instance: Instance, job: str) -> list[str]:
    """The instances holding a live lease of ``job``, as ``instance`` sees them."""
    leases = instance.get("/cluster")["leases"]
    return sorted(lease["owner"] for lease in leases if lease["job"] == job and lease["live"])


def numbers(path: Path) -> tuple[list[int], int]:
    """The ``n`` of every line of a JSON-lines file, and how many lines were torn (a
    process killed in mid-write leaves part of one line, its events delivered again)."""
    if not path.exists():
        return [], 0
    found, torn = [], 0
    for line in path.read_text().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            torn += 1
            continue
        if isinstance(doc.get("n"), int):
            found.append(doc["n"])
    return found, torn


def stable_members(bootstrap: str, group: str) -> int:
    """How many members a consumer group has once it is stable (0 while it rebalances)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_groups([group])
    finally:
        admin.close()
    info = described[group]
    return len(info["members"]) if info["group_state"] == "Stable" else 0


def streaming(coll: Any, out: Path) -> None:
    """Insert probes until one reaches ``out``: the job's change stream is open."""
    probes = iter(range(1_000_000))

    def arrived() -> bool:
        coll.insert_one({"_id": f"probe-{next(probes)}"})
        return out.exists() and "probe-" in out.read_text()

    wait_for(arrived, 60, "the change stream to deliver a probe")


def test_one_owner_for_a_change_stream_and_kafka_replicas_on_all_three(
    tmp_path: Path,
    mongodb_uri: str,
    kafka_bootstrap: str,
    unique_name: str,
    instances: list[Instance],
) -> None:
    from tests.test_kafka import create_topic, produce

    topic_in, topic_out = f"{unique_name}-in", f"{unique_name}-out"
    create_topic(kafka_bootstrap, topic_in, 6)
    create_topic(kafka_bootstrap, topic_out, 1)
    kafka = {
        "provider": "kafka",
        "bootstrap.servers": kafka_bootstrap,
        "group.id": f"{unique_name}-group",
        "auto.offset.reset": "earliest",
    }
    mirror = {
        "name": "mirror",
        "replicas": 3,
        "source": {"service_name": "kafka", "resource": topic_in, "output_encoding": "json"},
        "sinks": [{"service_name": "kafka", "resource": topic_out, "output_encoding": "json"}],
    }
    cfg = write_config(
        tmp_path,
        mongodb_uri,
        unique_name,
        [change_job("changes", "events", "changes.jsonl"), mirror],
        kafka=kafka,
    )
    for i in range(3):
        instances.append(Instance(cfg, f"node-{i}", tmp_path))
    first = instances[0]
    wait_for(lambda: len(owners(first, "mirror")) == 3, 60, "three replicas of the Kafka job")
    assert len(owners(first, "changes")) == 1
    owner = owners(first, "changes")[0]

    def listed() -> bool:  # every heartbeat, as the first instance last read them
        members = {m["id"]: m for m in first.get("/cluster")["instances"] if m["alive"]}
        return (
            set(members) == {"node-0", "node-1", "node-2"}
            and "changes#0" in members[owner]["jobs"]
            and all(any(j.startswith("mirror#") for j in m["jobs"]) for m in members.values())
        )

    wait_for(listed, 30, "three live instances listing their job slots")

    # the change stream is read once: each change is written once
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    coll = client[unique_name]["events"]
    streaming(coll, tmp_path / "out" / "changes.jsonl")
    coll.insert_many([{"_id": i, "n": i} for i in range(200)])
    wait_for(lambda: len(numbers(tmp_path / "out" / "changes.jsonl")[0]) >= 200, 30, "200 changes")
    assert sorted(numbers(tmp_path / "out" / "changes.jsonl")[0]) == list(range(200))
    for instance in instances:
        job = instance.get("/jobs/changes")
        assert job["instance"] == owner, job

    # the Kafka topic's partitions are spread: every replica consumes a part
    wait_for(
        lambda: stable_members(kafka_bootstrap, f"{unique_name}-group") == 3,
        60,
        "the consumer group to settle with three members",
    )
    produce(kafka_bootstrap, topic_in, range(600), partitions=6)

    def consumed() -> list[int]:
        return [i.get("/jobs/mirror")["counters"]["events_in"] for i in instances]

    wait_for(lambda: sum(consumed()) >= 600, 60, "600 events through the replicas")
    per_instance = consumed()
    print(f"\nKafka replicas consumed {per_instance} of 600 events")
    assert all(count > 0 for count in per_instance), per_instance
    client.close()


def test_sigkill_of_the_owner_hands_the_job_over_with_nothing_lost(
    tmp_path: Path, mongodb_uri: str, unique_name: str, instances: list[Instance]
) -> None:
    cfg = write_config(
        tmp_path, mongodb_uri, unique_name, [change_job("changes", "events", "o.jsonl")]
    )
    for i in range(3):
        instances.append(Instance(cfg, f"node-{i}", tmp_path))
    first = instances[0]
    owner_id = wait_for(lambda: owners(first, "changes"), 30, "an owner")[0]
    owner = next(i for i in instances if i.id == owner_id)
    others = [i for i in instances if i is not owner]
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    coll = client[unique_name]["events"]
    out = tmp_path / "out" / "o.jsonl"
    streaming(coll, out)
    writer = Writer(coll, step=20, limit=20_000).start()
    wait_for(lambda: len(numbers(out)[0]) >= 300, 30, "300 changes before the kill")
    assert writer.count < writer.limit, "the writes ended before the kill"
    owner.proc.kill()
    killed = time.monotonic()
    new_owner = wait_for(
        lambda: [o for o in owners(others[0], "changes") if o != owner_id],
        TTL_MS / 1000 * 5,
        "another instance to take the job",
    )[0]
    took = time.monotonic() - killed
    print(f"\ntakeover after SIGKILL: {took:.2f}s (lease TTL {TTL_MS / 1000:.0f}s) by {new_owner}")
    assert took < TTL_MS / 1000 + 3 * BEAT_MS / 1000 + 2.0
    wait_for(lambda: writer.count >= writer.limit, 60, "the rest of the writes")
    total = writer.stop()
    wait_for(lambda: set(numbers(out)[0]) >= set(range(total)), 60, f"all {total} changes")
    seen, torn = numbers(out)
    duplicates = len(seen) - len(set(seen))
    print(f"{total} changes: 0 lost, {duplicates} delivered twice, {torn} torn line(s)")
    assert set(seen) == set(range(total))
    assert torn <= 1
    assert duplicates <= 1000, "more duplicates than the in-flight bound allows"
    client.close()


def two_instances_ticking(
    tmp: Path, uri: str, db: str, instances: list[Instance]
) -> tuple[Instance, Instance]:
    """Two instances sharing one generator → file job "ticks" (200 events/s, checkpoints
    every 100 ms): (the one running it, the other)."""
    cfg = write_config(
        tmp, uri, db, [counter_job("ticks")], gen={"provider": "generator", "rate": 200}
    )
    for i in range(2):
        instances.append(Instance(cfg, f"node-{i}", tmp))
    owner_id = wait_for(lambda: owners(instances[0], "ticks"), 30, "an owner")[0]
    owner = next(i for i in instances if i.id == owner_id)
    return owner, next(i for i in instances if i is not owner)


def test_paused_owner_is_fenced_after_sigcont(
    tmp_path: Path, mongodb_uri: str, unique_name: str, instances: list[Instance]
) -> None:
    owner, other = two_instances_ticking(tmp_path, mongodb_uri, unique_name, instances)
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    checkpoints = client[unique_name]["checkpoints"]
    leases = client[unique_name]["jobs_leases"]
    wait_for(lambda: checkpoints.count_documents({"job": "ticks"}) > 3, 30, "checkpoints")
    old_token = leases.find_one({"_id": "ticks#0"})["token"]

    owner.proc.send_signal(signal.SIGSTOP)
    wait_for(lambda: owners(other, "ticks") == [other.id], 30, "the other instance to take over")
    taken_at = time.time()
    new_token = leases.find_one({"_id": "ticks#0"})["token"]
    assert new_token > old_token
    wait_for(
        lambda: checkpoints.count_documents({"job": "ticks", "token": new_token}) > 3,
        30,
        "the new owner's checkpoints",
    )
    owner.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: "lease ticks#0 lost" in owner.log(), 30, "the old owner to notice")
    wait_for(lambda: owner.get("/jobs/ticks")["instance"] == other.id, 30, "the old owner's view")
    assert owner.get("/cluster")["instances"]
    assert not [
        lease
        for lease in owner.get("/cluster")["leases"]
        if lease["owner"] == owner.id and lease["live"]
    ]
    # a save the pause cut between its lease check and its write lands after the takeover:
    # the old owner checks its lease again after writing and withdraws it
    wait_for(
        lambda: (
            checkpoints.count_documents(
                {"job": "ticks", "token": old_token, "created_at": {"$gt": taken_at}}
            )
            == 0
        ),
        30,
        "no checkpoint of the fenced owner after the takeover",
    )
    latest = checkpoints.find({"job": "ticks"}).sort("seq", -1).limit(1)[0]
    assert latest["token"] == new_token
    assert "Traceback" not in owner.log()
    client.close()


def test_a_stop_on_one_instance_stops_the_job_where_it_runs(
    tmp_path: Path, mongodb_uri: str, unique_name: str, instances: list[Instance]
) -> None:
    owner, other = two_instances_ticking(tmp_path, mongodb_uri, unique_name, instances)
    wait_for(lambda: owner.get("/jobs/ticks")["counters"]["events_out"] > 0, 30, "events")
    assert other.get("/jobs/ticks")["instance"] == owner.id

    reply = other.post("/jobs/ticks/stop")
    assert reply.status_code == 200, reply.text
    assert reply.json()["desired_state"] == "stopped"
    wait_for(lambda: owner.get("/jobs/ticks")["state"] == "stopped", 30, "the owner to stop it")
    assert owners(other, "ticks") == []
    out = tmp_path / "out" / "ticks.jsonl"
    lines = len(out.read_text().splitlines())
    # it stays stopped: after three more heartbeats of each instance, none has taken it up
    since = time.time() + 3 * BEAT_MS / 1000

    def beaten() -> bool:
        members = other.get("/cluster")["instances"]
        return len(members) == 2 and all(m["heartbeat_at"] > since for m in members)

    wait_for(beaten, 30, "three more heartbeats")
    assert owners(other, "ticks") == [] and len(out.read_text().splitlines()) == lines

    # and a restart on that instance runs it again somewhere
    assert other.post("/jobs/ticks/restart").status_code == 200
    wait_for(lambda: len(owners(owner, "ticks")) == 1, 30, "the job running again")


def test_jobs_created_through_one_api_run_once_and_are_listed_everywhere(
    tmp_path: Path, mongodb_uri: str, unique_name: str, instances: list[Instance]
) -> None:
    cfg = write_config(tmp_path, mongodb_uri, unique_name, [], gen={"provider": "generator"})
    for i in range(2):
        instances.append(Instance(cfg, f"node-{i}", tmp_path))
    a, b = instances
    service = {"name": "api-gen", "provider": "generator", "count": 50, "rate": 20}
    assert a.post("/services", service).status_code == 201
    job = counter_job("fifty", source="api-gen")
    created = a.post("/jobs", job)
    assert created.status_code == 201, created.text

    def described(instance: Instance) -> dict[str, Any]:
        reply = requests.get(f"{instance.url}/jobs/fifty", timeout=10)
        return reply.json() if reply.status_code == 200 else {}  # type: ignore[no-any-return]

    # b reads the service and the job within a heartbeat, and refuses the name; the job
    # runs for 2.5 s, so a delete on b while it runs is refused
    wait_for(lambda: described(b).get("state") == "running", 30, "b to list the job running")
    same_name = b.post("/jobs", job)
    assert same_name.status_code == 409, same_name.text
    gone = requests.delete(f"{b.url}/jobs/fifty", timeout=30)
    assert gone.status_code == 409 and "stop it before deleting it" in gone.text, gone.text
    wait_for(
        lambda: described(a)["state"] == described(b)["state"] == "completed",
        30,
        "both instances to show the job completed",
    )
    out = tmp_path / "out" / "fifty.jsonl"
    assert sorted(json.loads(line)["n"] for line in out.read_text().splitlines()) == list(
        range(50)
    )  # run once: each event once
    again = b.post("/jobs/fifty/restart")
    assert again.status_code == 409 and "from=checkpoint" in again.text
    assert b.post("/jobs/fifty/restart?from=beginning").status_code == 200
    wait_for(lambda: len(out.read_text().splitlines()) == 100, 30, "a second run, from the start")
    wait_for(lambda: described(a)["state"] == "completed", 30, "the second run to complete")
    assert requests.delete(f"{a.url}/jobs/fifty", timeout=30).status_code == 204
    wait_for(
        lambda: requests.get(f"{b.url}/jobs/fifty", timeout=10).status_code == 404,
        30,
        "b to forget the deleted job",
    )
