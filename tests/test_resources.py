"""Resources, samples and inferred fields of real services (Kafka, MongoDB, Pub/Sub), files
and scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.service import ServiceOptions
from tests.test_kafka import create_topic
from tests.test_pubsub import PROJECT, Emulator
from tests.test_pubsub import emulator as emulator  # the fixture

SECRET = "hook-secret-9f2c"


def get(url: str, status: int = 200) -> Any:
    answer = requests.get(url, timeout=30)
    assert answer.status_code == status, answer.text
    return answer.json()


def test_resources_and_samples_of_every_kind(
    kafka_bootstrap: str,
    mongodb_uri: str,
    emulator: Emulator,
    unique_name: str,
    tmp_path: Path,
) -> None:
    from kafka import KafkaProducer
    from pymongo import MongoClient

    topic = f"res-{unique_name}"
    create_topic(kafka_bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for n in range(3):
        producer.send(topic, json.dumps({"n": n}).encode())
    producer.send(topic, b"\xff not json")
    producer.flush(30)
    producer.close()

    collection = f"res_{unique_name.replace('-', '_')}"
    mongo: Any = MongoClient(mongodb_uri, serverSelectionTimeoutMS=10_000)
    mongo["mstream_tests"][collection].insert_many(
        [{"_id": 1, "email": "a@b.c", "token": f"Bearer {SECRET}"}, {"_id": 2, "age": 3}]
    )
    mongo.close()

    ps_topic = emulator.topic("res")
    subscription = emulator.subscription(ps_topic)
    emulator.publish(ps_topic, [(b'{"m": 1}', {}), (b'{"m": 2}', {})])

    files = tmp_path / "files"
    (files / "sub").mkdir(parents=True)
    (files / "a.jsonl").write_text('{"x": 1}\n{"x": 2}\nnot json\n')
    (files / "sub" / "b.jsonl").write_text('{"y": true}\n')
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "tag.lua").write_text("function transform(d, a) return result(d, a) end\n")
    config = parse_config(
        {
            "system": {"data_dir": str(tmp_path / "data"), "file_roots": [str(tmp_path)]},
            "services": [
                {"name": "kafka", "provider": "kafka", "bootstrap.servers": kafka_bootstrap},
                {
                    "name": "mongo",
                    "provider": "mongodb",
                    "connection_string": mongodb_uri,
                    "db_name": "mstream_tests",
                },
                {"name": "ps", "provider": "pubsub", "project_id": PROJECT},
                {"name": "files", "provider": "file", "base_dir": str(files)},
                {
                    "name": "scripts",
                    "provider": "udf",
                    "engine": {"kind": "lua"},
                    "script_path": str(scripts),
                    "sources": [
                        {
                            "filename": "inline.lua",
                            "content": "function transform(d, a) return nil end",
                        }
                    ],
                },
                {
                    "name": "hook",
                    "provider": "http",
                    "host": "http://127.0.0.1:9",
                    "headers": {"Authorization": f"Bearer {SECRET}"},
                },
            ],
        },
        str(tmp_path / "t.toml"),
        {},
    )
    with ServiceThread(config, ServiceOptions(api_port=0, data_dir=tmp_path / "data")) as svc:
        base = f"{svc.url}/services"
        # Kafka: topics, the newest messages, undecodable ones as base64, nothing committed
        topics = [r["name"] for r in get(f"{base}/kafka/resources")["resources"]]
        assert topic in topics and not any(t.startswith("__") for t in topics)
        newest = get(f"{base}/kafka/resources/{topic}?limit=2")["samples"]
        assert newest[0] == {"n": 2} and "$base64" in newest[1]

        # MongoDB: collections, samples with secrets masked, fields without values
        names = [r["name"] for r in get(f"{base}/mongo/resources")["resources"]]
        assert collection in names
        docs = get(f"{base}/mongo/resources/{collection}")["samples"]
        assert [d["_id"] for d in docs] == [1, 2] and SECRET not in json.dumps(docs)
        schema = get(f"{base}/mongo/resources/{collection}/schema?sample_size=10")
        fields = {f["name"]: f for f in schema["fields"]}
        assert schema["sampled"] == 2 and fields["email"]["presence"] == 0.5
        assert fields["_id"]["types"] == ["integer"] and "a@b.c" not in json.dumps(schema)

        # Pub/Sub: topics and subscriptions; a sample hands the messages back
        kinds = {(r["name"], r["kind"]) for r in get(f"{base}/ps/resources")["resources"]}
        assert (ps_topic, "topic") in kinds and (subscription, "subscription") in kinds
        pulled = get(f"{base}/ps/resources/{subscription}?limit=5")["samples"]
        assert sorted(m["m"] for m in pulled) == [1, 2]
        again = emulator.pull_until(subscription, lambda msgs: len(msgs) >= 2)
        assert len(again) >= 2  # still there for the subscription's consumers

        # files (sub-folders URL-encoded) and scripts
        listed = [r["name"] for r in get(f"{base}/files/resources")["resources"]]
        assert listed == ["a.jsonl", "sub/b.jsonl"]
        assert get(f"{base}/files/resources/a.jsonl")["samples"] == [{"x": 1}, {"x": 2}, "not json"]
        assert get(f"{base}/files/resources/{quote('sub/b.jsonl', safe='')}")["samples"] == [
            {"y": True}
        ]
        outside = get(f"{base}/files/resources/{quote('../t.toml', safe='')}", 400)
        assert "outside" in outside["error"]["message"]
        scripts_listed = get(f"{base}/scripts/resources")["resources"]
        assert [s["name"] for s in scripts_listed] == ["inline.lua", "tag.lua"]
        assert "result(d, a)" in get(f"{base}/scripts/resources/tag.lua")["script"]
        get(f"{base}/scripts/resources/none.lua", 404)

        # bad input
        assert "limit" in get(f"{base}/files/resources/a.jsonl?limit=99", 400)["error"]["fields"]
        get(f"{base}/nope/resources", 404)
        get(f"{base}/hook/resources", 400)
