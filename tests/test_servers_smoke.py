"""Smoke tests for the real-server fixtures in ``tests/servers``.

Each test drives one server through the client library the project uses, so a broken fixture
(or a stand-in that stops behaving like the real server) shows up here first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.servers import fixtures

WAIT = 60.0
"""Seconds any single wait for a server-side effect may take."""


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- fixtures plumbing


def test_missing_server_skips_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fixtures.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="kafka test server unavailable: no java"):
        fixtures._unavailable("kafka", "no java")


def test_missing_server_fails_when_servers_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fixtures.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="MSTREAM_REQUIRE_SERVERS=1"):
        fixtures._unavailable("kafka", "no java")


def test_unique_name_is_fresh(unique_name: str) -> None:
    assert unique_name.startswith("t-")
    assert len(unique_name) == len("t-") + 8


# --------------------------------------------------------------------------------------- Kafka


@pytest.mark.kafka
def test_kafka_produce_consume_commit(kafka_bootstrap: str, unique_name: str) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    topic, group = unique_name, f"{unique_name}-group"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="smoke-admin")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        _wait_for(
            lambda: consumer.partitions_for_topic(topic) == {0, 1},
            "the new topic's 2 partitions in metadata",
        )

        sent: dict[bytes, int] = {}
        for i in range(10):
            value = f"value-{i}".encode()
            metadata = producer.send(topic, value=value, partition=i % 2).get(timeout=WAIT)
            assert metadata.partition == i % 2
            sent[value] = metadata.partition
        producer.flush(timeout=WAIT)

        consumer.subscribe([topic])
        received: dict[bytes, int] = {}

        def poll_some() -> bool:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    received[record.value] = record.partition
            return len(received) >= len(sent)

        _wait_for(poll_some, "all 10 records through the consumer group")
        assert received == sent

        consumer.commit()
        partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        assert [consumer.committed(tp) for tp in partitions] == [5, 5]
        offsets = admin.list_group_offsets({group: None})[group]
        assert {tp: meta.offset for tp, meta in offsets.items()} == dict.fromkeys(partitions, 5)
    finally:
        consumer.close()
        producer.close()
        admin.close()


# ------------------------------------------------------------------------------------- MongoDB


def _mongo_client(uri: str) -> Any:
    from pymongo import MongoClient

    return MongoClient(uri, serverSelectionTimeoutMS=int(WAIT * 1000))


def _next_events(stream: Any, count: int, timeout: float = WAIT) -> list[dict[str, Any]]:
    """Read exactly ``count`` change events from ``stream`` (fails the test on timeout)."""
    events: list[dict[str, Any]] = []

    def more() -> bool:
        event = stream.try_next()
        if event is not None:
            events.append(event)
        return len(events) >= count

    _wait_for(more, f"{count} change events (got {events})", timeout)
    return events


@pytest.mark.mongodb
def test_mongodb_insert_replace_upsert_find(mongodb_uri: str, unique_name: str) -> None:
    client = _mongo_client(mongodb_uri)
    try:
        coll = client["mstream_smoke"][unique_name]
        coll.insert_one({"_id": 1, "name": "one"})
        upserted = coll.replace_one({"_id": 2}, {"name": "two"}, upsert=True)
        assert upserted.upserted_id == 2
        replaced = coll.replace_one({"_id": 1}, {"name": "uno"}, upsert=True)
        assert (replaced.matched_count, replaced.modified_count, replaced.upserted_id) == (
            1,
            1,
            None,
        )
        assert list(coll.find({}, sort=[("_id", 1)])) == [
            {"_id": 1, "name": "uno"},
            {"_id": 2, "name": "two"},
        ]
        assert coll.find_one({"name": "two"}) == {"_id": 2, "name": "two"}
    finally:
        client.close()


@pytest.mark.mongodb
def test_mongodb_change_stream_and_resume(mongodb_uri: str, unique_name: str) -> None:
    client = _mongo_client(mongodb_uri)
    try:
        coll = client["mstream_smoke"][unique_name]
        with coll.watch(full_document="updateLookup", max_await_time_ms=200) as stream:
            coll.insert_one({"_id": 1, "v": 1})
            [insert] = _next_events(stream, 1)
            coll.update_one({"_id": 1}, {"$set": {"v": 2}})
            [update] = _next_events(stream, 1)
            coll.replace_one({"_id": 1}, {"v": 3})
            coll.delete_one({"_id": 1})
            replace, delete = _next_events(stream, 2)

        assert insert["operationType"] == "insert"
        assert insert["fullDocument"] == {"_id": 1, "v": 1}
        assert update["operationType"] == "update"
        assert update["updateDescription"]["updatedFields"] == {"v": 2}
        assert update["fullDocument"] == {"_id": 1, "v": 2}
        assert replace["operationType"] == "replace"
        assert replace["fullDocument"] == {"_id": 1, "v": 3}
        assert delete["operationType"] == "delete"
        for event in (insert, update, replace, delete):
            assert event["documentKey"] == {"_id": 1}
            assert event["ns"] == {"db": "mstream_smoke", "coll": unique_name}

        # Resume after the update: only what came later, including a write made while closed.
        coll.insert_one({"_id": 2, "v": 4})
        with coll.watch(resume_after=update["_id"], max_await_time_ms=200) as resumed:
            later = _next_events(resumed, 3)
            assert [(e["operationType"], e["documentKey"]) for e in later] == [
                ("replace", {"_id": 1}),
                ("delete", {"_id": 1}),
                ("insert", {"_id": 2}),
            ]
            assert [e["_id"] for e in later] == [replace["_id"], delete["_id"], later[2]["_id"]]
            assert resumed.try_next() is None
    finally:
        client.close()


# ------------------------------------------------------------------------------------- Pub/Sub


@pytest.mark.pubsub
def test_pubsub_publish_streaming_pull_ack(pubsub_env: str, unique_name: str) -> None:
    from google.cloud import pubsub_v1

    project = "mstream-smoke"
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic_path = publisher.topic_path(project, unique_name)
    sub_path = subscriber.subscription_path(project, f"{unique_name}-sub")
    try:
        publisher.create_topic(name=topic_path)
        subscriber.create_subscription(name=sub_path, topic=topic_path, ack_deadline_seconds=10)

        futures = [
            publisher.publish(topic_path, f"m{i}".encode(), index=str(i), kind="smoke")
            for i in range(20)
        ]
        message_ids = [future.result(timeout=WAIT) for future in futures]
        assert len(set(message_ids)) == 20

        lock = threading.Lock()
        deliveries: list[tuple[bytes, dict[str, str]]] = []

        def callback(message: Any) -> None:
            with lock:
                deliveries.append((message.data, dict(message.attributes)))
            message.ack()

        def delivered(data: bytes) -> bool:
            with lock:
                return any(d == data for d, _ in deliveries)

        streaming = subscriber.subscribe(sub_path, callback=callback)
        try:
            _wait_for(lambda: len(deliveries) >= 20, "20 messages through streaming pull")
            # A later message arrives on the same stream without any of the acked ones coming
            # back (the emulator redelivers a nacked or lost-ack message right away).
            publisher.publish(topic_path, b"sentinel", kind="sentinel").result(timeout=WAIT)
            _wait_for(lambda: delivered(b"sentinel"), "the sentinel through streaming pull")
        finally:
            streaming.cancel()
            streaming.result(timeout=WAIT)

        expected = {f"m{i}".encode(): {"index": str(i), "kind": "smoke"} for i in range(20)}
        expected[b"sentinel"] = {"kind": "sentinel"}
        with lock:
            assert sorted(data for data, _ in deliveries) == sorted(expected)  # each just once
            assert dict(deliveries) == expected
    finally:
        subscriber.delete_subscription(subscription=sub_path)
        publisher.delete_topic(topic=topic_path)
        subscriber.close()
