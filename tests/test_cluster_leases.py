"""Job leases, fencing and cluster settings, against the MongoDB stand-in.

The lease store's rules (one holder, lapse, fencing token, a finished generation is not
taken again), checkpoints fenced by the token, the settings' validation, and a fault: an
instance whose state store dies stops its jobs by the clock, before another instance could
take them, while its API keeps answering.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.config.model import ClusterConfig
from mstream.config.schema import parse_connector
from mstream.errors import ConfigError
from mstream.service import ServiceOptions
from mstream.stores.cluster import FencedCheckpoints, LeaseLost, LeaseStore
from mstream.stores.mongodb import MongoCheckpointStore, MongoConnection
from tests.test_mongodb_stores import KEY, mongo_config
from tests.test_service_restart import job as counter_job
from tests.waiting import wait_for

pytestmark = pytest.mark.mongodb


@pytest.fixture
def connection(mongodb_uri: str, unique_name: str) -> Iterator[MongoConnection]:
    conn = MongoConnection(mongodb_uri, unique_name, service_name="state")
    conn.acquire()
    yield conn
    conn.release()


@pytest.fixture
def leases(connection: MongoConnection) -> Iterator[LeaseStore]:
    store = LeaseStore(connection, "jobs_leases", ttl=5.0)
    yield store
    store.close()


def test_one_holder_until_the_lease_lapses_and_each_take_raises_the_token(
    leases: LeaseStore,
) -> None:
    now = 1000.0
    a = leases.acquire("j", 0, "a", 0, now)
    assert a is not None and (a.owner, a.token, a.expires_at) == ("a", 1, 1005.0)
    assert leases.acquire("j", 0, "b", 0, now + 4) is None  # held
    assert leases.acquire("j", 1, "b", 0, now + 4) is not None  # another slot is free
    assert leases.renew(a, now + 4)
    assert leases.acquire("j", 0, "b", 0, now + 8) is None  # renewed until 1009
    b = leases.acquire("j", 0, "b", 0, now + 10)
    assert b is not None and b.token == 2
    assert not leases.renew(a, now + 10), "the old holder renewed a lease it lost"
    assert not leases.release(a, "stopped")
    assert not leases.holds(a) and leases.holds(b)
    assert leases.current("j#0") == b


def test_a_finished_generation_is_not_taken_again(leases: LeaseStore) -> None:
    now = 1000.0
    for state in ("completed", "failed"):
        job = f"j-{state}"
        a = leases.acquire(job, 0, "a", 3, now)
        assert a is not None and leases.release(a, state, "done")
        assert leases.acquire(job, 0, "b", 3, now + 1) is None
        taken = leases.acquire(job, 0, "b", 4, now + 1)  # restarted: a new generation
        assert taken is not None and taken.generation == 4
    stopped = leases.acquire("j-stopped", 0, "a", 0, now)
    assert stopped is not None and leases.release(stopped, "stopped")
    assert leases.acquire("j-stopped", 0, "b", 0, now + 1) is not None  # handed over


def test_checkpoints_are_refused_once_the_lease_is_taken(
    connection: MongoConnection, leases: LeaseStore
) -> None:
    store = MongoCheckpointStore(connection, "checkpoints")
    try:
        now = time.time()
        old = leases.acquire("j", 0, "a", 0, now - 10)
        assert old is not None
        FencedCheckpoints(store, leases, old).save("j", {"n": 1})
        new = leases.acquire("j", 0, "b", 0, now)  # the old one lapsed
        assert new is not None
        with pytest.raises(LeaseLost, match=r"held by b \(token 2\).*\(a, token 1\) lost"):
            FencedCheckpoints(store, leases, old).save("j", {"n": 99})
        FencedCheckpoints(store, leases, new).save("j", {"n": 2})
        # a write that slipped in under the old token (a pause between its check and its
        # write) is never resumed from: the highest token wins
        store.save("j", {"n": 98}, token=old.token)
        latest = store.latest("j")
        assert latest is not None and latest.position == {"n": 2}
        assert [c.position["n"] for c in store.history("j")] == [98, 2, 1]
    finally:
        store.close()


def test_a_write_that_lands_after_the_takeover_is_withdrawn(
    connection: MongoConnection, leases: LeaseStore
) -> None:
    """The owner is paused between its lease check and its write; the other instance takes
    the job meanwhile. The late write is withdrawn and the save raises LeaseLost."""

    class PausedMidSave(MongoCheckpointStore):
        def save(self, job: str, position: Any, totals: Any = None, *, token: Any = None) -> None:
            if position == {"n": 99}:  # the pause: the lease lapses, b takes the job
                assert leases.acquire("j", 0, "b", 0, time.time()) is not None
            super().save(job, position, totals, token=token)

    store = PausedMidSave(connection, "checkpoints")
    try:
        old = leases.acquire("j", 0, "a", 0, time.time() - 10)
        assert old is not None
        FencedCheckpoints(store, leases, old).save("j", {"n": 1})
        with pytest.raises(LeaseLost, match=r"held by b \(token 2\)"):
            FencedCheckpoints(store, leases, old).save("j", {"n": 99})
        assert [c.position["n"] for c in store.history("j")] == [1]
    finally:
        store.close()


def test_settings_are_validated() -> None:
    assert parse_config({}).system.cluster == ClusterConfig(10_000, 2000)
    with pytest.raises(ConfigError, match=r"cluster\.heartbeat_interval_ms: must be at most half"):
        parse_config({"system": {"cluster": {"lease_ttl_ms": 3000}}})
    with pytest.raises(ConfigError, match=r"system\.instance_id: must be 1-100 letters"):
        parse_config({"system": {"instance_id": "a b"}})
    with pytest.raises(ConfigError, match="MSTREAM_INSTANCE_ID: must be"):
        ServiceOptions.from_env({"MSTREAM_INSTANCE_ID": "../x"})


def _job(provider: str, **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    services = {
        "src": parse_config(
            {"services": [{"name": "src", "provider": provider, **extra}]}
        ).services[0],
        "out": parse_config({"services": [{"name": "out", "provider": "stdout"}]}).services[0],
    }
    raw = {
        "name": "j",
        "replicas": 3,
        "source": {"service_name": "src", "resource": "users", "output_encoding": "json"},
        "sinks": [{"service_name": "out", "resource": "x", "output_encoding": "json"}],
    }
    return raw, services


def test_replicas_need_a_kafka_or_pubsub_source_without_checkpoints() -> None:
    raw, services = _job("generator")
    with pytest.raises(ConfigError, match=r"replicas: a 'generator' source has a single reader"):
        parse_connector(raw, services)
    raw, services = _job("kafka", **{"bootstrap.servers": "h:9092", "group.id": "g"})
    parsed = parse_connector(raw, services)
    assert parsed.replicas == 3
    assert parse_connector(parsed.to_dict(), services) == parsed  # what the job store keeps
    raw["checkpoint"] = {"enabled": True}
    with pytest.raises(ConfigError, match="replicas share the consumer group's"):
        parse_connector(raw, services)


def test_an_instance_whose_store_dies_stops_its_jobs_by_the_clock(tmp_path: Path) -> None:
    """The store goes away with the job running: within the TTL less a heartbeat the job is
    stopped here (so no other instance can be running it at the same time), while the API
    answers at once."""
    from tests.servers.launchers import start_mongodb

    server = start_mongodb().server
    try:
        uri = server.address + "?serverSelectionTimeoutMS=1000&connectTimeoutMS=1000"
        base = parse_config(
            {
                "services": [
                    {"name": "gen", "provider": "generator", "rate": 100},
                    {"name": "files", "provider": "file", "base_dir": str(tmp_path / "out")},
                ],
                "connectors": [counter_job("ticks", "t.jsonl")],
                "system": {
                    "data_dir": str(tmp_path / "data"),
                    "instance_id": "solo",
                    "cluster": {"lease_ttl_ms": 2000, "heartbeat_interval_ms": 500},
                },
            },
            "test.toml",
            {},
        )
        config = mongo_config(uri, "faults", base=base)
        options = ServiceOptions(
            api_port=0, environ={"MSTREAM_ENC_KEY": KEY}, progress_interval=60, stop_timeout=5
        )
        with ServiceThread(config, options) as svc:

            def job() -> dict[str, Any]:
                reply = requests.get(f"{svc.url}/jobs/ticks", timeout=5)
                assert reply.status_code == 200, reply.text
                return reply.json()  # type: ignore[no-any-return]

            wait_for(lambda: job()["counters"]["events_out"] > 0, 30, "events")
            assert job()["instance"] == "solo"
            cluster = requests.get(f"{svc.url}/cluster", timeout=5).json()
            assert cluster["enabled"] and cluster["instance_id"] == "solo"
            assert [m["id"] for m in cluster["instances"]] == ["solo"]
            server.stop(grace=0)  # SIGKILL at once
            killed = time.monotonic()
            wait_for(lambda: job()["state"] != "running", 10, "the job to be fenced")
            took = time.monotonic() - killed
            print(f"\nstore killed: the job was fenced after {took:.2f}s (TTL 2s)")
            assert took < 2.0, f"fenced {took:.1f}s after the store died: past the TTL"
            began = time.monotonic()
            assert job()["instance"] is None
            assert time.monotonic() - began < 1.0
            wait_for(lambda: job()["state"] == "stopped", 10, "the job to stop")
            out = tmp_path / "out" / "t.jsonl"
            written = job()["counters"]["events_out"]
            assert written == len(out.read_text().splitlines())
    finally:
        server.stop()


def test_a_hand_edited_job_record_does_not_stop_the_heartbeat(
    mongodb_uri: str, unique_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A job record whose ``generation`` is not a number (edited by hand) runs as
    generation 0; the heartbeat goes on and nothing is logged with a traceback."""
    from mstream.stores.mongodb import MongoJobStore
    from tests.test_mongodb_stores import JOBS

    base = parse_config(
        {
            "services": [
                {"name": "gen", "provider": "generator", "rate": 100},
                {"name": "files", "provider": "file", "base_dir": str(tmp_path / "out")},
            ],
            "system": {"data_dir": str(tmp_path / "data"), "instance_id": "solo"},
        },
        "test.toml",
        {},
    )
    config = mongo_config(mongodb_uri, unique_name, base=base)
    connection = MongoConnection(mongodb_uri, unique_name)
    jobs = MongoJobStore(connection, JOBS)
    definition = counter_job("edited", "e.jsonl")
    jobs.put("edited", {"definition": definition, "desired_state": "running", "generation": "x"})
    jobs.close()
    options = ServiceOptions(api_port=0, environ={"MSTREAM_ENC_KEY": KEY}, progress_interval=60)
    with ServiceThread(config, options) as svc:
        wait_for(
            lambda: requests.get(f"{svc.url}/jobs/edited", timeout=5).json()["instance"] == "solo",
            30,
            "the edited job to run here",
        )

        def leases() -> list[tuple[str, int]]:
            cluster = requests.get(f"{svc.url}/cluster", timeout=5).json()
            return [(lease["job"], lease["generation"]) for lease in cluster["leases"]]

        wait_for(lambda: leases() == [("edited", 0)], 30, "its lease, in generation 0")
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
