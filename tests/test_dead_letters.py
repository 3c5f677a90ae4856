"""Dead letters kept in the state store: list, replay (after a fix or an edit), discard.

The end-to-end case is the issue's: a Kafka → MongoDB job whose MongoDB sink refuses an
event (its ``_id`` is taken by a different document), the data is fixed, the event is
replayed and arrives once; nothing is left.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import requests

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.service import ServiceOptions
from mstream.stores import MemoryDeadLetterStore, SqliteDatabase, SqliteDeadLetterStore
from mstream.stores.dead_letters import DeadLetterStore
from tests.test_kafka import create_topic
from tests.waiting import wait_for

JSON = {"Content-Type": "application/json"}


@pytest.fixture(params=["memory", "sqlite", "mongodb"])
def store(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        yield MemoryDeadLetterStore(limit=3)
    elif request.param == "sqlite":
        yield SqliteDeadLetterStore(SqliteDatabase(Path(tempfile.mkdtemp()) / "db"), limit=3)
    else:
        from mstream.stores.mongodb import MongoConnection, MongoDeadLetterStore

        uri = request.getfixturevalue("mongodb_uri")
        name = request.getfixturevalue("unique_name").replace("-", "_")
        kept = MongoDeadLetterStore(MongoConnection(uri, name, service_name="state"), "dl", limit=3)
        try:
            yield kept
        finally:
            kept.close()


def test_the_store_is_bounded_counts_drops_and_filters(store: DeadLetterStore) -> None:
    ids = [
        store.add("job", {"stage": stage, "reason": reason})
        for stage, reason in [
            ("decode", "bad json"),
            ("sink", "sinks[0] (m): duplicate key"),
            ("sink", "sinks[1] (k): too large"),
            ("middleware", "script error"),
            ("sink", "sinks[0] (m): duplicate key again"),
        ]
    ]
    store.add("other", {"stage": "decode", "reason": "x"})
    items, total = store.page("job")
    assert total == 3 and store.dropped("job") == 2 and store.dropped("other") == 0
    assert [r["id"] for r in items] == ids[:1:-1]  # newest first, the two oldest dropped
    assert store.page("job", stage="sink")[1] == 2
    assert [r["reason"] for r in store.page("job", reason="duplicate")[0]] == [
        "sinks[0] (m): duplicate key again"
    ]
    assert [r["id"] for r in store.get("job", [ids[4], ids[2], 999])] == [ids[2], ids[4]]
    assert store.delete("job", [ids[4]]) == 1 and store.page("job")[1] == 2
    assert store.delete("job") == 2 and store.page("job") == ([], 0) and store.dropped("job") == 0
    assert store.page("other")[1] == 1


def produce_documents(bootstrap: str, topic: str, count: int) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for n in range(count):
            producer.send(topic, json.dumps({"_id": n, "v": "new"}).encode())
        producer.flush(timeout=30)
    finally:
        producer.close()


def test_kafka_to_mongodb_refused_event_is_replayed_after_the_fix(
    kafka_bootstrap: str, mongodb_uri: str, unique_name: str, tmp_path: Path
) -> None:
    from pymongo import MongoClient

    topic, collection = f"dl-{unique_name}", f"dl_{unique_name.replace('-', '_')}"
    create_topic(kafka_bootstrap, topic)
    mongo: Any = MongoClient(mongodb_uri, serverSelectionTimeoutMS=10_000)
    coll = mongo["mstream_tests"][collection]
    coll.insert_one({"_id": 3, "v": "old"})  # takes the _id of event 3 with other content
    produce_documents(kafka_bootstrap, topic, 10)
    config = parse_config(
        {
            "system": {"data_dir": str(tmp_path / "data")},
            "services": [
                {
                    "name": "kafka",
                    "provider": "kafka",
                    "bootstrap.servers": kafka_bootstrap,
                    "group.id": f"g-{unique_name}",
                    "auto.offset.reset": "earliest",
                },
                {
                    "name": "mongo",
                    "provider": "mongodb",
                    "connection_string": mongodb_uri,
                    "db_name": "mstream_tests",
                },
            ],
            "connectors": [
                {
                    "name": "k2m",
                    "source": {
                        "service_name": "kafka",
                        "resource": topic,
                        "output_encoding": "json",
                    },
                    "sinks": [
                        {"service_name": "mongo", "resource": collection, "output_encoding": "bson"}
                    ],
                }
            ],
        },
        str(tmp_path / "t.toml"),
        {},
    )
    try:
        with ServiceThread(config, ServiceOptions(api_port=0, data_dir=tmp_path / "data")) as svc:
            url = f"{svc.url}/jobs/k2m/dead-letters"
            page = wait_for(
                lambda: (p := requests.get(url, timeout=10).json())["total"] == 1 and p,
                60,
                "the refused event to be kept",
            )
            [kept] = page["dead_letters"]
            assert kept["stage"] == "sink" and kept["step"] == "sinks[0]"
            assert kept["payload"] == {"_id": 3, "v": "new"} and "original" not in kept
            wait_for(lambda: coll.count_documents({}) == 10, 30, "the other nine written")

            # replayed before the fix: refused again, kept again (with its new reason)
            again = requests.post(f"{url}/replay", json={}, headers=JSON, timeout=60).json()
            assert again["replayed"] == 1 and again["rejected_again"] == 1
            assert again["delivered"] == 0 and again["remaining"] == 1

            coll.delete_one({"_id": 3})  # the fix
            done = requests.post(f"{url}/replay", json={}, headers=JSON, timeout=60).json()
            assert done["replayed"] == 1 and done["delivered"] == 1, done
            assert done["rejected_again"] == 0 and done["remaining"] == 0 and not done["error"]
            assert requests.get(url, timeout=10).json()["total"] == 0
            docs = sorted(coll.find({}), key=lambda d: d["_id"])
            assert [d["_id"] for d in docs] == list(range(10))  # every event once
            assert all(d["v"] == "new" for d in docs)
    finally:
        mongo.close()


@pytest.fixture
def file_job(tmp_path: Path) -> Any:
    (tmp_path / "in.jsonl").write_text('{"n": 1}\n{not json\n{"n": 3}\n')
    config = parse_config(
        {
            "system": {"data_dir": str(tmp_path / "data"), "file_roots": [str(tmp_path)]},
            "services": [{"name": "files", "provider": "file", "base_dir": str(tmp_path)}],
            "connectors": [
                {
                    "name": "f2f",
                    "source": {
                        "service_name": "files",
                        "resource": "in.jsonl",
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
        yield svc


def test_an_undecodable_event_is_replayed_with_an_edit(
    file_job: ServiceThread, tmp_path: Path
) -> None:
    url = f"{file_job.url}/jobs/f2f/dead-letters"
    page = wait_for(
        lambda: (p := requests.get(url, timeout=10).json())["total"] == 1 and p, 30, "a kept event"
    )
    [kept] = page["dead_letters"]
    assert kept["stage"] == "decode" and kept["step"] == "source"
    out = tmp_path / "out.jsonl"
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 2, 30, "two lines out")
    edited = requests.post(
        f"{url}/replay",
        json={"ids": [kept["id"]], "edits": {str(kept["id"]): {"n": 2}}},
        headers=JSON,
        timeout=60,
    ).json()
    assert edited["delivered"] == 1 and edited["remaining"] == 0, edited
    assert [json.loads(line)["n"] for line in out.read_text().splitlines()] == [1, 3, 2]


def test_discard_and_bad_requests(file_job: ServiceThread) -> None:
    url = f"{file_job.url}/jobs/f2f/dead-letters"
    wait_for(lambda: requests.get(url, timeout=10).json()["total"] == 1, 30, "a kept event")
    for query, field in [("?limit=0", "limit"), ("?offset=-1", "offset")]:
        bad = requests.get(url + query, timeout=10)
        assert bad.status_code == 400 and field in bad.json()["error"]["fields"]
    for body, field in [
        ({"ids": "all"}, "ids"),
        ({"ids": [0]}, "ids"),
        ({"what": 1}, "what"),
        ({"ids": [1], "edits": {"2": {}}}, "edits"),
    ]:
        bad = requests.post(f"{url}/replay", json=body, headers=JSON, timeout=10)
        assert bad.status_code == 400 and field in bad.json()["error"]["fields"], bad.text
    assert requests.delete(f"{url}?ids=x", timeout=10).status_code == 400
    assert requests.get(f"{file_job.url}/jobs/nope/dead-letters", timeout=10).status_code == 404
    gone = requests.delete(url, timeout=10)
    assert gone.status_code == 200 and gone.json()["discarded"] == 1
    assert requests.get(url, timeout=10).json()["total"] == 0


def test_the_dlq_command_lists_replays_and_discards(
    file_job: ServiceThread, capsys: pytest.CaptureFixture[str]
) -> None:
    from mstream.cli import main

    url = f"{file_job.url}/jobs/f2f/dead-letters"
    wait_for(lambda: requests.get(url, timeout=10).json()["total"] == 1, 30, "a kept event")
    assert main(["dlq", "list", "f2f", "--url", file_job.url]) == 0
    listed = capsys.readouterr()
    assert "\tdecode\tsource\t" in listed.out and "1 kept, 0 dropped" in listed.err
    # unchanged, the event is refused again: exit code 1, and it stays kept
    assert main(["dlq", "replay", "f2f", "--url", file_job.url]) == 1
    assert json.loads(capsys.readouterr().out)["rejected_again"] == 1
    assert main(["dlq", "discard", "f2f", "--url", file_job.url]) == 0
    assert json.loads(capsys.readouterr().out)["discarded"] == 1
    assert main(["dlq", "list", "nope", "--url", file_job.url]) == 2
    assert "404" in capsys.readouterr().err
