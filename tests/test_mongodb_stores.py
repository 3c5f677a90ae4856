"""MongoDB system stores behave exactly like the embedded SQLite ones, against a real server.

Every behavioural check runs twice (``store_kind`` = ``sqlite`` | ``mongodb``): checkpoints
(order, bound, delete, round-trips), jobs, services (opaque bytes), thread safety and
closing. Then a whole service with ``[system.checkpoints]``, ``[system.job_lifecycle]`` and
``[system.service_lifecycle]`` on MongoDB is restarted and keeps everything (with no SQLite
file at all), and an unreachable server stops start-up with a clear message.

The MongoDB server is the session's stand-in from ``tests/servers`` (``mongodb_uri``);
every test uses its own database (``unique_name``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pymongo import MongoClient

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.config.model import Config, ServiceConfig, StoreRef
from mstream.errors import ConfigError, StoreError
from mstream.service import ServiceOptions, open_stores, run_service
from mstream.stores import SqliteCheckpointStore, SqliteJobStore, Stores
from mstream.stores.mongodb import (
    MongoCheckpointStore,
    MongoConnection,
    MongoJobStore,
    MongoServiceStore,
)
from tests.test_api import Client
from tests.test_service_restart import assert_contiguous, flowing, job, states
from tests.waiting import wait_for

pytestmark = pytest.mark.mongodb

KEY = "33" * 32
CHECKPOINTS, JOBS, SERVICES = "state-checkpoints", "state-jobs", "state-services"


def mongo_config(
    uri: str,
    db_name: str,
    *,
    checkpoints: bool = True,
    jobs: bool = True,
    services: bool = True,
    base: Config | None = None,
) -> Config:
    """``base`` (default: empty) plus a ``state`` mongodb service and the chosen refs.

    The service and refs are added to the parsed model directly: what is under test is the
    stores, whatever the ``mongodb`` provider's own option validation says.
    """
    base = base or Config()
    state = ServiceConfig("state", "mongodb", {"connection_string": uri, "db_name": db_name})
    system = dataclasses.replace(
        base.system,
        checkpoints=StoreRef("state", CHECKPOINTS) if checkpoints else None,
        job_lifecycle=StoreRef("state", JOBS) if jobs else None,
        service_lifecycle=StoreRef("state", SERVICES) if services else None,
    )
    return dataclasses.replace(base, services=(*base.services, state), system=system)


@pytest.fixture(params=["sqlite", "mongodb"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which backend the behavioural checks run on."""
    return str(request.param)


@pytest.fixture
def stores(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """The three stores on ``store_kind``, opened the way the service opens them."""
    if store_kind == "sqlite":
        opened = open_stores(Config(), str(tmp_path))
        assert isinstance(opened.checkpoints, SqliteCheckpointStore)
    else:
        uri = request.getfixturevalue("mongodb_uri")
        db_name = request.getfixturevalue("unique_name")
        opened = open_stores(mongo_config(uri, db_name), str(tmp_path))
        assert isinstance(opened.checkpoints, MongoCheckpointStore)
        assert not (tmp_path / "mstream.db").exists()
    yield opened
    opened.close()


@pytest.fixture
def mongo(mongodb_uri: str) -> Iterator[MongoClient[dict[str, Any]]]:
    """A plain client to look at what the stores wrote."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    yield client
    client.close()


# ------------------------------------------------------------------------------ checkpoints


def positions(stores: Stores, job_name: str, limit: int = 50) -> list[Any]:
    return [c.position for c in stores.checkpoints.history(job_name, limit)]


def test_checkpoints_latest_and_history_newest_first(stores: Stores) -> None:
    cps = stores.checkpoints
    assert cps.latest("a") is None
    assert cps.history("a") == []
    for i in range(5):
        cps.save("a", {"offset": i})
    cps.save("b", {"offset": 100})

    latest = cps.latest("a")
    assert latest is not None
    assert (latest.job, latest.position) == ("a", {"offset": 4})
    history = cps.history("a")
    assert [c.position["offset"] for c in history] == [4, 3, 2, 1, 0]
    assert all(c.job == "a" and isinstance(c.created_at, float) for c in history)
    assert [c.created_at for c in history] == sorted((c.created_at for c in history), reverse=True)
    assert positions(stores, "a", 2) == [{"offset": 4}, {"offset": 3}]
    assert positions(stores, "a", 0) == []
    assert positions(stores, "b") == [{"offset": 100}]
    assert latest.to_dict() == {
        "job": "a",
        "position": {"offset": 4},
        "created_at": latest.created_at,
    }


def test_checkpoint_history_is_bounded(stores: Stores) -> None:
    cps = stores.checkpoints
    assert cps.history_limit == 100
    for i in range(cps.history_limit + 5):
        cps.save("a", i)
    cps.save("b", "other")
    assert positions(stores, "a", 1000) == list(range(104, 4, -1))  # the newest 100
    cps.history_limit = 3  # per instance, as the SQLite store allows
    cps.save("a", "x")
    cps.save("a", "y")
    assert positions(stores, "a", 1000) == ["y", "x", 104]
    assert positions(stores, "b") == ["other"]  # other jobs are not pruned


def test_checkpoint_delete_forgets_one_job(stores: Stores) -> None:
    cps = stores.checkpoints
    for i in range(3):
        cps.save("a", i)
        cps.save("b", i)
    cps.delete("a")
    cps.delete("never-saved")  # no error
    assert cps.latest("a") is None and cps.history("a") == []
    assert positions(stores, "b") == [2, 1, 0]
    cps.save("a", "again")  # a job starts over after a delete
    assert positions(stores, "a") == ["again"]


POSITIONS: list[Any] = [
    {"partitions": {"orders.v1:0": 17, "orders.v1:1": 2**62}},
    {"_data": "8263A1B2C3000000012B022C0100296E5A1004"},
    {"$set": {"a.b": [1, 2.5, None, True, "é✓"]}, "": {}},
    [1, "two", [3], {"four": 4}],
    (5, 6),
    "a string",
    12345678901234,
    0.1,
    None,
]


def test_checkpoint_positions_round_trip_as_json(stores: Stores) -> None:
    for position in POSITIONS:
        stores.checkpoints.save("a", position)
    expected = [orjson.loads(orjson.dumps(p)) for p in reversed(POSITIONS)]
    assert positions(stores, "a") == expected
    with pytest.raises(TypeError):
        stores.checkpoints.save("a", {"not json": object()})
    with pytest.raises(TypeError):
        stores.checkpoints.save("a", {1: "non-string key"})
    assert positions(stores, "a", 1) == [None]  # the failed saves left nothing behind


def test_concurrent_checkpoint_saves_keep_each_writers_order(stores: Stores) -> None:
    writers, each = 4, 15
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            barrier.wait()
            for i in range(each):
                stores.checkpoints.save("shared", [w, i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    history = positions(stores, "shared", 1000)
    assert len(history) == writers * each
    for w in range(writers):
        assert [i for ww, i in history if ww == w] == list(range(each - 1, -1, -1))


# ------------------------------------------------------------------------------------- jobs


def test_jobs_put_get_all_delete(stores: Stores) -> None:
    jobs = stores.jobs
    assert jobs.get("a") is None and jobs.all() == {}
    record = {
        "definition": {"name": "b", "sinks": [{"service_name": "x", "options": {"a.b": 1}}]},
        "desired_state": "running",
        "created_at": 1700000000.25,
        "reason": None,
    }
    jobs.put("b", record)
    jobs.put("a", {"desired_state": "stopped"})
    jobs.put("c", {"v": 1})
    jobs.put("c", {"v": 2})  # replaced
    assert jobs.get("b") == record
    assert jobs.get("c") == {"v": 2}
    assert jobs.all() == {"a": {"desired_state": "stopped"}, "b": record, "c": {"v": 2}}
    assert list(jobs.all()) == ["a", "b", "c"]
    jobs.delete("a")
    jobs.delete("missing")  # no error
    assert jobs.get("a") is None
    assert list(jobs.all()) == ["b", "c"]
    with pytest.raises(TypeError):
        jobs.put("d", {"bad": {1, 2}})
    assert jobs.get("d") is None


# --------------------------------------------------------------------------------- services


def test_services_keep_opaque_bytes(stores: Stores) -> None:
    services = stores.services
    every_byte = bytes(range(256)) * 3
    assert services.get("s") is None and services.all() == {}
    services.put("s", every_byte)
    services.put("empty", b"")
    services.put("r", bytearray(b"first"))
    services.put("r", b"second")
    got = services.get("s")
    assert got == every_byte and type(got) is bytes
    assert services.get("empty") == b""
    assert services.all() == {"empty": b"", "r": b"second", "s": every_byte}
    assert list(services.all()) == ["empty", "r", "s"]
    services.delete("r")
    services.delete("missing")
    assert services.get("r") is None
    assert sorted(services.all()) == ["empty", "s"]


def test_closed_stores_fail_with_store_error(stores: Stores) -> None:
    stores.checkpoints.save("a", 1)
    stores.close()
    with pytest.raises(StoreError):
        stores.checkpoints.latest("a")
    with pytest.raises(StoreError):
        stores.jobs.get("a")
    with pytest.raises(StoreError):
        stores.services.all()


# ------------------------------------------------------------------------ MongoDB specifics


def test_mongodb_documents_and_index(
    mongodb_uri: str, unique_name: str, mongo: MongoClient[dict[str, Any]], tmp_path: Path
) -> None:
    stores = open_stores(mongo_config(mongodb_uri, unique_name), str(tmp_path))
    try:
        stores.checkpoints.save("a", {"offset": 1})
        stores.jobs.put("a", {"desired_state": "running"})
        stores.services.put("s", b"\x00\xffsecret")
    finally:
        stores.close()
    db = mongo[unique_name]
    [checkpoint] = db[CHECKPOINTS].find({}, {"_id": 0})
    assert checkpoint["job"] == "a" and checkpoint["seq"] == 1
    assert json.loads(checkpoint["position"]) == {"offset": 1}
    assert isinstance(checkpoint["created_at"], float)
    index = db[CHECKPOINTS].index_information()["job_seq"]
    assert [field for field, _ in index["key"]] == ["job", "seq"] and index["unique"]
    assert list(db[JOBS].find()) == [{"_id": "a", "record": '{"desired_state":"running"}'}]
    [service] = db[SERVICES].find()
    assert service == {"_id": "s", "blob": b"\x00\xffsecret"}  # BSON binary, subtype 0
    assert not (tmp_path / "mstream.db").exists()


def test_mixed_stores_and_shared_client(
    mongodb_uri: str, unique_name: str, mongo: MongoClient[dict[str, Any]], tmp_path: Path
) -> None:
    config = mongo_config(mongodb_uri, unique_name, jobs=False)
    stores = open_stores(config, str(tmp_path))
    try:
        assert isinstance(stores.checkpoints, MongoCheckpointStore)
        assert isinstance(stores.jobs, SqliteJobStore)
        assert isinstance(stores.services, MongoServiceStore)
        assert stores.checkpoints.connection is stores.services.connection  # one client
        stores.checkpoints.save("a", 1)
        stores.jobs.put("a", {"x": 1})
        stores.services.put("s", b"1")
    finally:
        stores.close()
    assert (tmp_path / "mstream.db").exists()
    assert mongo[unique_name][JOBS].count_documents({}) == 0
    reopened = Stores.embedded(tmp_path)
    try:
        assert reopened.jobs.get("a") == {"x": 1}
        assert reopened.checkpoints.latest("a") is None  # checkpoints went to MongoDB
    finally:
        reopened.close()

    only_services = open_stores(
        mongo_config(mongodb_uri, unique_name, checkpoints=False, jobs=False), str(tmp_path)
    )
    try:
        assert isinstance(only_services.checkpoints, SqliteCheckpointStore)
        assert isinstance(only_services.services, MongoServiceStore)
        assert only_services.services.get("s") == b"1"
    finally:
        only_services.close()


def test_connection_is_closed_by_its_last_store(mongodb_uri: str, unique_name: str) -> None:
    connection = MongoConnection(mongodb_uri, unique_name, service_name="state")
    jobs = MongoJobStore(connection, JOBS)
    services = MongoServiceStore(connection, SERVICES)
    jobs.close()
    jobs.close()  # idempotent: does not release twice
    services.put("s", b"still open")
    services.close()
    with pytest.raises(StoreError, match=r"system\.service_lifecycle .*reading a service"):
        services.get("s")


def closed_port() -> socket.socket:
    """A bound, never-listening socket: connections to its port are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def test_unreachable_mongodb_is_a_clear_startup_error(tmp_path: Path) -> None:
    with closed_port() as sock:
        port = sock.getsockname()[1]
        uri = f"mongodb://app:hunter2@127.0.0.1:{port}/?serverSelectionTimeoutMS=300"
        config = mongo_config(uri, "mstream", jobs=False, services=False)
        config = dataclasses.replace(
            config,
            system=dataclasses.replace(
                config.system,
                data_dir=str(tmp_path / "data"),
                encryption_key_path=str(tmp_path / "k"),
            ),
        )
        options = ServiceOptions(api_port=0, environ={"MSTREAM_ENC_KEY": KEY})
        with pytest.raises(StoreError) as caught:
            asyncio.run(run_service(config, options))
    message = str(caught.value)
    assert message.startswith("system.checkpoints: cannot reach MongoDB service 'state' at ")
    assert f"mongodb://app:****@127.0.0.1:{port}/" in message
    assert "Connection refused" in message
    assert "hunter2" not in message and "Topology" not in message
    assert not (tmp_path / "data" / "mstream.db").exists()  # nothing was opened


def test_unusable_mongodb_service_options(tmp_path: Path) -> None:
    bad_port = mongo_config("mongodb://app:hunter2@127.0.0.1:notaport/", "m", jobs=False)
    with pytest.raises(StoreError, match=r"^system\.checkpoints: MongoDB service 'state' at ") as e:
        open_stores(bad_port, str(tmp_path))
    assert "hunter2" not in str(e.value)
    no_db = mongo_config("mongodb://127.0.0.1:1/", "", checkpoints=False, jobs=False)
    with pytest.raises(ConfigError, match=r"system\.service_lifecycle: .*'db_name'"):
        open_stores(no_db, str(tmp_path))
    assert not (tmp_path / "mstream.db").exists()


@pytest.mark.skipif(
    importlib.util.find_spec("mstream.providers.mongodb") is None,
    reason="a config file with a mongodb service needs mstream.providers.mongodb",
)
def test_unreachable_mongodb_through_the_cli(tmp_path: Path) -> None:
    with closed_port() as sock:
        port = sock.getsockname()[1]
        cfg = tmp_path / "mstream-config.toml"
        cfg.write_text(
            f"""
[[services]]
name = "state"
provider = "mongodb"
connection_string = "mongodb://app:hunter2@127.0.0.1:{port}/?serverSelectionTimeoutMS=300"
db_name = "mstream"

[system]
data_dir = "{tmp_path / "data"}"
encryption_key_path = "{tmp_path / "k"}"
job_lifecycle = {{ service_name = "state", resource = "jobs", startup_state = "keep" }}
"""
        )
        env = {**os.environ, "MSTREAM_API_PORT": "0", "MSTREAM_ENC_KEY": KEY}
        env.pop("MSTREAM_API_TOKEN", None)
        done = subprocess.run(
            [sys.executable, "-m", "mstream.cli", "--config", str(cfg)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    shown = f"mongodb://app:****@127.0.0.1:{port}/"
    expected = f"error: system.job_lifecycle: cannot reach MongoDB service 'state' at {shown}"
    assert expected in done.stderr
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr
    assert "API listening" not in done.stderr


# ----------------------------------------------------------------------- a service restart


def test_service_keeps_everything_in_mongodb_across_a_restart(
    mongodb_uri: str, unique_name: str, mongo: MongoClient[dict[str, Any]], tmp_path: Path
) -> None:
    def config(startup_state: str, jobs: list[dict[str, Any]]) -> Config:
        base = parse_config(
            {
                "services": [
                    {"name": "gen", "provider": "generator", "rate": 400},
                    {"name": "files", "provider": "file", "base_dir": str(tmp_path / "out")},
                ],
                "connectors": jobs,
                "system": {
                    "data_dir": str(tmp_path / "data"),
                    "encryption_key_path": str(tmp_path / "mstream.key"),
                    "job_lifecycle": {"startup_state": startup_state},
                },
            },
            "test.toml",
            {},
        )
        return mongo_config(mongodb_uri, unique_name, base=base)

    options = ServiceOptions(api_port=0, environ={"MSTREAM_ENC_KEY": KEY}, progress_interval=60)
    with ServiceThread(config("seed_from_file", [job("a")]), options) as svc:
        api = Client(svc.url)
        api.ok("POST", "/services", {"name": "api-gen", "provider": "generator", "rate": 400}, 201)
        api.ok("POST", "/jobs", job("c", source="api-gen"), 201)
        for name in ("a", "c"):
            flowing(api, name)
        api.ok("POST", "/jobs/c/stop")

    db = mongo[unique_name]
    assert {d["_id"] for d in db[JOBS].find()} == {"a", "c"}
    assert {d["_id"] for d in db[SERVICES].find()} == {"gen", "files", "state", "api-gen"}
    assert all(b"mongodb://" not in d["blob"] for d in db[SERVICES].find())  # encrypted
    assert set(db[CHECKPOINTS].distinct("job")) == {"a", "c"}
    assert not (tmp_path / "data" / "mstream.db").exists()  # no SQLite file holds anything
    before = assert_contiguous(tmp_path / "out" / "a.jsonl")

    # the file no longer lists c: it comes back from MongoDB, stopped, with its API service
    with ServiceThread(config("seed_from_file", [job("a")]), options) as svc:
        api = Client(svc.url)
        assert states(api) == {"a": "running", "c": "stopped"}
        assert api.ok("GET", "/jobs/c")["origin"] == "api"
        assert api.ok("GET", "/services/api-gen")["origin"] == "api"
        checkpoints = api.ok("GET", "/jobs/c/checkpoints")["checkpoints"]
        assert checkpoints and checkpoints[0]["job"] == "c"
        flowing(api, "a")
        api.ok("POST", "/jobs/c/restart")
        wait_for(lambda: api.ok("GET", "/jobs/c")["state"] == "running")
    assert assert_contiguous(tmp_path / "out" / "a.jsonl") > before  # resumed, nothing lost
    assert_contiguous(tmp_path / "out" / "c.jsonl")
    assert not (tmp_path / "data" / "mstream.db").exists()


def test_workspaces_and_test_suites_live_in_the_collections_system_names(
    mongodb_uri: str, unique_name: str, tmp_path: Path
) -> None:
    import requests
    from pymongo import MongoClient

    from mstream.service import ServiceOptions

    workspaces, suites = (
        f"ws_{unique_name}".replace("-", "_"),
        f"ts_{unique_name}".replace("-", "_"),
    )
    config = parse_config(
        {
            "services": [
                {
                    "name": "db",
                    "provider": "mongodb",
                    "connection_string": mongodb_uri,
                    "db_name": "mstream_tests",
                }
            ],
            "system": {
                "data_dir": str(tmp_path / "data"),
                "workspaces": {"service_name": "db", "resource": workspaces},
                "test_suites": {"service_name": "db", "resource": suites},
            },
        },
        str(tmp_path / "t.toml"),
        {},
    )
    headers = {"Content-Type": "application/json"}
    options = ServiceOptions(api_port=0, data_dir=tmp_path / "data")
    with ServiceThread(config, options) as svc:
        saved = requests.post(
            f"{svc.url}/workspaces", json={"name": "PII"}, headers=headers, timeout=10
        )
        assert saved.status_code == 201, saved.text
        suite = requests.post(
            f"{svc.url}/test-suites",
            json={"name": "s", "script": "x", "cases": []},
            headers=headers,
            timeout=10,
        )
        assert suite.status_code == 201, suite.text
    mongo: Any = MongoClient(mongodb_uri, serverSelectionTimeoutMS=10_000)
    try:
        db = mongo["mstream_tests"]
        assert [d["_id"] for d in db[workspaces].find({})] == [saved.json()["id"]]
        assert db[suites].count_documents({}) == 1
    finally:
        mongo.close()
    with ServiceThread(config, options) as svc:  # kept across restarts, read back from MongoDB
        listed = requests.get(f"{svc.url}/workspaces", timeout=10).json()["workspaces"]
        assert listed == [{"id": saved.json()["id"], "name": "PII"}]
