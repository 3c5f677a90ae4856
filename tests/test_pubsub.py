"""Pub/Sub source, sink and schema loader against Google's emulator (``pubsub_env``).

Everything is named after ``unique_name``; waits poll a condition with a deadline, never a
fixed sleep. The emulator redelivers a nacked message at once, which the redelivery tests
rely on; a *sentinel* published last shows that nothing else is still coming.

Emulator limit (cloud-pubsub-emulator 0.8.20): it fails to process a client's cancellation
of a streaming pull (``NoSuchMethodError`` in ``onRstStreamRead`` in its log), so the
server keeps the cancelled stream registered and a *later streaming pull on the same
subscription receives nothing*, and messages nacked after the cancellation may be handed
to the dead stream instead of to a synchronous pull. Hence every subscription here is
streamed once at most, the nack-and-redeliver path is exercised while the stream is still
open, and the "nothing else is coming" sentinel check is only made on subscriptions no
stream has used. (A restarted job on the real service receives the nacked messages again.)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mstream.config import parse_config
from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Event
from mstream.encodings import AvroSchema, decode
from mstream.errors import ConfigError
from mstream.providers import get_provider
from mstream.providers import pubsub as pubsub_module
from mstream.providers.base import StepContext
from mstream.registry import mask_service
from mstream.runtime.connector import Connector
from tests.waiting import wait_for

pytestmark = pytest.mark.pubsub

PROJECT = "mstream-test"
WAIT = 30.0

COUNTER_SCHEMA = {
    "type": "record",
    "name": "Counter",
    "fields": [{"name": "n", "type": "long"}],
}


# -- helpers ---------------------------------------------------------------------------


class Emulator:
    """Topics, subscriptions and schemas on the emulator, removed again at the end."""

    def __init__(self, name: str) -> None:
        from google.cloud import pubsub_v1

        self.name = name
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self._topics: list[str] = []
        self._subscriptions: list[str] = []

    def topic(self, suffix: str) -> str:
        """Create topic ``<name>-<suffix>``; returns its short id."""
        short = f"{self.name}-{suffix}"
        path = self.publisher.topic_path(PROJECT, short)
        self.publisher.create_topic(name=path)
        self._topics.append(path)
        return short

    def subscription(self, topic: str, suffix: str = "sub") -> str:
        """Create a subscription to ``topic`` (short id); returns its short id."""
        short = f"{topic}-{suffix}"
        path = self.subscriber.subscription_path(PROJECT, short)
        self.subscriber.create_subscription(
            name=path, topic=self.publisher.topic_path(PROJECT, topic), ack_deadline_seconds=60
        )
        self._subscriptions.append(path)
        return short

    def publish(self, topic: str, messages: list[tuple[bytes, dict[str, str]]]) -> list[str]:
        """Publish ``(data, attributes)`` pairs; returns the message ids in order."""
        path = self.publisher.topic_path(PROJECT, topic)
        futures = [self.publisher.publish(path, data, **attrs) for data, attrs in messages]
        return [f.result(timeout=WAIT) for f in futures]

    def pull_until(
        self, subscription: str, done: Callable[[list[Any]], bool], timeout: float = WAIT
    ) -> list[Any]:
        """Pull (and ack) messages until ``done(messages so far)``."""
        from google.api_core.exceptions import DeadlineExceeded

        path = self.subscriber.subscription_path(PROJECT, subscription)
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while not done(got):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out pulling {subscription}: {len(got)} messages so far")
            try:
                response = self.subscriber.pull(subscription=path, max_messages=1000, timeout=2.0)
            except DeadlineExceeded:
                continue
            if response.received_messages:
                got.extend(r.message for r in response.received_messages)
                self.subscriber.acknowledge(
                    subscription=path, ack_ids=[r.ack_id for r in response.received_messages]
                )
        return got

    def pull_count(self, subscription: str, count: int) -> list[Any]:
        """Pull exactly ``count`` messages (fails if more arrive before a sentinel)."""
        return self.pull_until(subscription, lambda got: len(got) >= count)

    def drained(self, topic: str, subscription: str) -> list[Any]:
        """Publish a sentinel and pull until it arrives: what else was still there."""
        self.publish(topic, [(b'"sentinel"', {"sentinel": "1"})])
        got = self.pull_until(
            subscription, lambda msgs: any(m.attributes.get("sentinel") for m in msgs)
        )
        return [m for m in got if not m.attributes.get("sentinel")]

    def close(self) -> None:
        for path in self._subscriptions:
            self.subscriber.delete_subscription(subscription=path)
        for path in self._topics:
            self.publisher.delete_topic(topic=path)
        self.subscriber.close()
        self.publisher.stop()


@pytest.fixture
def emulator(pubsub_env: str, unique_name: str) -> Iterator[Emulator]:
    emu = Emulator(unique_name)
    try:
        yield emu
    finally:
        emu.close()


def pubsub_service(**extra: Any) -> dict[str, Any]:
    return {"name": "ps", "provider": "pubsub", "project_id": PROJECT, **extra}


def connector(
    services: list[dict[str, Any]], definition: dict[str, Any], max_restarts: int = 5
) -> Connector:
    cfg = parse_config({"services": services, "connectors": [definition]})
    return Connector(
        cfg.connectors[0], {s.name: s for s in cfg.services}, max_restarts=max_restarts
    )


def service_config(**extra: Any) -> ServiceConfig:
    return parse_config({"services": [pubsub_service(**extra)]}).services[0]


def file_lines(path: Path) -> list[Any]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line]


def stop(c: Connector) -> None:
    assert c.stop(timeout=WAIT), "the connector did not stop"


# -- configuration (no server needed) --------------------------------------------------


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (
            {"topic": "x"},
            "services[0].topic: unknown field (the Rust original ignores unknown keys; remove "
            "it or check its spelling; known for provider 'pubsub':",
        ),
        ({"project_id": None}, "services[0].project_id: "),
        ({"auth": {"kind": "oauth"}}, "services[0].auth.kind: must be service_account or"),
        ({"auth": {"kind": "static_token"}}, "services[0].auth.env_token_name: required when"),
        (
            {"auth": {"kind": "static_token", "env_token_name": "T", "account_key_path": "k"}},
            "services[0].auth.account_key_path: not used when kind is static_token",
        ),
        (
            {"auth": {"kind": "service_account", "account_key_path": "k", "extra": 1}},
            "services[0].auth.extra: unknown field (the Rust original ignores unknown keys; "
            "remove it or check its spelling; known: account_key_path, env_token_name, kind)",
        ),
        ({"max_outstanding_messages": 0}, "services[0].max_outstanding_messages: must be"),
        ({"publish_max_pending_bytes": 1000}, "services[0].publish_max_pending_bytes: must be"),
    ],
)
def test_config_errors_name_the_path(service: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"services": [pubsub_service(**service)]})
    assert expected in str(info.value), str(info.value)


def test_step_options_and_resources_are_checked() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "services": [pubsub_service(), {"name": "g", "provider": "generator"}],
                "connectors": [
                    {
                        "name": "c",
                        "source": {
                            "service_name": "g",
                            "resource": "counter",
                            "output_encoding": "json",
                        },
                        "sinks": [
                            {
                                "service_name": "ps",
                                "resource": "t",
                                "output_encoding": "json",
                                "batch_mode": "x",
                            }
                        ],
                    }
                ],
            }
        )
    assert "connectors[0].sinks[0].batch_mode: must be array or messages" in str(info.value)
    svc = service_config()
    with pytest.raises(ConfigError, match="expected a topic id or projects/PROJECT/topics/ID"):
        pubsub_module.PubSubSink(
            svc, StepConfig("ps", "projects/p/subscriptions/s"), StepContext("c", "sink")
        )
    with pytest.raises(ConfigError, match="needs a resource"):
        pubsub_module.PubSubSource(svc, StepConfig("ps", ""), StepContext("c", "source"))


def test_auth_secrets_are_masked() -> None:
    svc = service_config(auth={"kind": "service_account", "account_key_path": "/keys/sa.json"})
    assert mask_service(svc)["auth"] == {"kind": "service_account", "account_key_path": "****"}
    svc = service_config(auth={"kind": "static_token", "env_token_name": "PS_TOKEN"})
    assert mask_service(svc)["auth"]["env_token_name"] == "****"


def test_static_token_is_read_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from google.oauth2.credentials import Credentials

    svc = service_config(auth={"kind": "static_token", "env_token_name": "MSTREAM_PS_TOKEN"})
    monkeypatch.setenv("MSTREAM_PS_TOKEN", "ya29.test-token")
    credentials = pubsub_module.build_credentials(svc)
    assert isinstance(credentials, Credentials) and credentials.token == "ya29.test-token"
    monkeypatch.delenv("MSTREAM_PS_TOKEN")
    with pytest.raises(ConfigError, match="environment variable 'MSTREAM_PS_TOKEN' is not set"):
        pubsub_module.build_credentials(svc)
    svc = service_config(auth={"kind": "service_account", "account_key_path": "/nonexistent.json"})
    with pytest.raises(ConfigError, match=r"auth\.account_key_path: cannot read the key file"):
        pubsub_module.build_credentials(svc)


# -- against the emulator --------------------------------------------------------------


def test_missing_token_variable_fails_the_job_with_its_name(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MSTREAM_MISSING_TOKEN", raising=False)
    topic = emulator.topic("in")
    sub = emulator.subscription(topic)
    auth = {"kind": "static_token", "env_token_name": "MSTREAM_MISSING_TOKEN"}
    c = connector(
        [pubsub_service(auth=auth), {"name": "out", "provider": "stdout"}],
        {
            "name": "tok",
            "source": {"service_name": "ps", "resource": sub, "output_encoding": "json"},
            "sinks": [{"service_name": "out", "output_encoding": "json"}],
        },
    )
    c.start()
    assert c.wait(WAIT)
    assert c.state == "failed" and c.restarts == 0
    assert "environment variable 'MSTREAM_MISSING_TOKEN' is not set" in (c.reason or "")


def test_source_emits_chunks_and_acks_only_acknowledged_events(emulator: Emulator) -> None:
    topic = emulator.topic("in")
    sub = emulator.subscription(topic)
    ids = emulator.publish(
        topic, [(json.dumps({"n": i}).encode(), {"index": str(i), "kind": "t"}) for i in range(60)]
    )
    spec = get_provider("pubsub")
    assert spec.source is not None
    src = spec.source(service_config(), StepConfig("ps", sub), StepContext("t", "source"))
    assert isinstance(src, pubsub_module.PubSubSource)
    stopping = threading.Event()
    chunks: list[list[Event]] = []
    src.open()
    worker = threading.Thread(target=src.run, args=(chunks.append, stopping))
    worker.start()
    try:
        wait_for(lambda: sum(map(len, chunks)) >= 60, WAIT, "60 messages")
        first = [e for c in chunks for e in c]
        assert len(first) == 60 and len(chunks) < 60  # chunks, not one message at a time
        assert sorted(e.metadata["message_id"] for e in first) == sorted(ids)
        for e in first:
            n = e.doc["n"]
            assert e.attributes == {"index": str(n), "kind": "t"}
            assert e.metadata["publish_time"].year >= 2024
            assert e.metadata["ordering_key"] == ""
            assert e.metadata["subscription"] == f"projects/{PROJECT}/subscriptions/{sub}"
        for e in first:  # the pipeline acknowledged only the even ones
            if e.doc["n"] % 2 == 0:
                assert e.ack is not None
                e.ack()
        # What close() does on stop or failure, done here while the stream is still open (see
        # the module docstring): nack every message not acknowledged. Exactly those come back.
        src._nack(src._unacknowledged())
        wait_for(lambda: sum(map(len, chunks)) >= 90, WAIT, "30 redelivered messages")
        again = [e for c in chunks for e in c][60:]
        assert sorted(e.doc["n"] for e in again) == list(range(1, 60, 2))
        assert {e.metadata["message_id"] for e in again} <= set(ids)
        for e in again:
            assert e.ack is not None
            e.ack()
    finally:
        stopping.set()
        worker.join(WAIT)
        src.close()
    assert src.received == 90 and not src._pending


def test_pubsub_to_file_and_pubsub_keeps_attributes(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_topic, out_topic = emulator.topic("in"), emulator.topic("out")
    in_sub, out_sub = emulator.subscription(in_topic), emulator.subscription(out_topic)
    monkeypatch.setenv("MSTREAM_PS_TOKEN", "unused-by-the-emulator")
    auth = {"kind": "static_token", "env_token_name": "MSTREAM_PS_TOKEN"}
    c = connector(
        [
            pubsub_service(auth=auth, max_outstanding_messages=50),
            {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
        ],
        {
            "name": "ps-to-file",
            "source": {"service_name": "ps", "resource": in_sub, "output_encoding": "json"},
            "sinks": [
                {"service_name": "files", "resource": "out.jsonl", "output_encoding": "json"},
                {"service_name": "ps", "resource": out_topic, "output_encoding": "bson"},
            ],
        },
    )
    c.start()
    try:
        emulator.publish(
            in_topic,
            [(json.dumps({"n": i}).encode(), {"index": str(i), "src": "test"}) for i in range(300)],
        )
        out = tmp_path / "out.jsonl"
        wait_for(lambda: len(file_lines(out)) >= 300, WAIT, "300 lines in the file")
        published = emulator.pull_count(out_sub, 300)
    finally:
        stop(c)
    assert c.state == "stopped", c.reason
    assert sorted(d["n"] for d in file_lines(out)) == list(range(300))
    assert sorted(decode(m.data, "bson")["n"] for m in published) == list(range(300))
    for m in published:
        assert dict(m.attributes) == {"index": str(decode(m.data, "bson")["n"]), "src": "test"}
    source = c._source
    assert isinstance(source, pubsub_module.PubSubSource)
    assert source.received == 300 and not source._pending  # every message was acknowledged
    assert emulator.drained(out_topic, out_sub) == []  # and published once


@pytest.mark.parametrize(
    ("batch", "mode", "messages"),
    [(None, "array", 40), (10, "array", 4), (10, "messages", 40)],
    ids=["unbatched", "batched-array", "batched-messages"],
)
def test_generator_to_pubsub(
    emulator: Emulator, batch: int | None, mode: str, messages: int
) -> None:
    topic = emulator.topic("out")
    sub = emulator.subscription(topic)
    definition: dict[str, Any] = {
        "name": "gen-to-ps",
        "source": {"service_name": "gen", "resource": "counter", "output_encoding": "json"},
        "sinks": [
            {"service_name": "ps", "resource": topic, "output_encoding": "json", "batch_mode": mode}
        ],
    }
    if batch:
        definition["batch"] = {"kind": "count", "size": batch}
    c = connector(
        [pubsub_service(), {"name": "gen", "provider": "generator", "count": 40}], definition
    )
    c.start()
    assert c.wait(WAIT) and c.state == "completed", c.reason
    got = emulator.pull_count(sub, messages)
    docs = [json.loads(m.data) for m in got]
    if batch and mode == "array":
        assert all(isinstance(d, list) and len(d) == batch for d in docs)
        docs = [x for d in docs for x in d]
    assert sorted(d["n"] for d in docs) == list(range(40))
    assert emulator.drained(topic, sub) == []


def test_failed_sink_acks_nothing_and_nacks_every_message_received(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job whose sink fails acknowledges nothing and hands every message back.

    What the client sends is observed (the server stays real): no ack, and a nack for every
    message the source received. That Pub/Sub redelivers nacked messages is shown by
    ``test_source_emits_chunks_and_acks_only_acknowledged_events``; here the redelivery
    cannot be pulled back reliably, because the emulator may hand a message nacked after a
    cancelled stream to that dead stream (see the module docstring).
    """
    from google.cloud.pubsub_v1.subscriber.message import Message

    received: list[str] = []
    acked: list[str] = []
    nacked: list[str] = []
    on_message = pubsub_module.PubSubSource._on_message
    ack = Message.ack
    nack = pubsub_module.PubSubSource._nack

    def spy_on_message(self: Any, message: Any) -> None:
        received.append(message.ack_id)
        on_message(self, message)

    def spy_ack(self: Any) -> None:
        acked.append(self.ack_id)
        ack(self)

    def spy_nack(self: Any, ack_ids: list[str]) -> None:
        nacked.extend(ack_ids)
        nack(self, ack_ids)

    monkeypatch.setattr(pubsub_module.PubSubSource, "_on_message", spy_on_message)
    monkeypatch.setattr(Message, "ack", spy_ack)
    monkeypatch.setattr(pubsub_module.PubSubSource, "_nack", spy_nack)

    in_topic = emulator.topic("in")
    in_sub = emulator.subscription(in_topic)
    missing = f"{emulator.name}-missing"  # publishing to it fails with NotFound
    emulator.publish(in_topic, [(json.dumps({"n": i}).encode(), {}) for i in range(100)])
    c = connector(
        [pubsub_service()],
        {
            "name": "ps-to-missing",
            "source": {"service_name": "ps", "resource": in_sub, "output_encoding": "json"},
            "sinks": [{"service_name": "ps", "resource": missing, "output_encoding": "json"}],
        },
        max_restarts=0,
    )
    c.start()
    assert c.wait(WAIT)
    assert c.state == "failed" and "NotFound" in (c.reason or ""), c.reason
    assert c.counters.events_out == 0
    assert received and acked == []
    assert sorted(nacked) == sorted(received)  # every message received is handed back


def test_json_to_avro_with_schema_from_the_schema_service(emulator: Emulator) -> None:
    from google.cloud import pubsub_v1
    from google.pubsub_v1.types import Schema

    schema_id = f"{emulator.name}-counter"
    schemas = pubsub_v1.SchemaServiceClient()
    path = schemas.schema_path(PROJECT, schema_id)
    schemas.create_schema(
        parent=f"projects/{PROJECT}",
        schema=Schema(name=path, type_=Schema.Type.AVRO, definition=json.dumps(COUNTER_SCHEMA)),
        schema_id=schema_id,
    )
    try:
        topic = emulator.topic("avro")
        sub = emulator.subscription(topic)
        c = connector(
            [pubsub_service(), {"name": "gen", "provider": "generator", "count": 25}],
            {
                "name": "gen-to-avro",
                "schemas": [{"id": "counter", "service_name": "ps", "resource": schema_id}],
                "source": {"service_name": "gen", "resource": "counter", "output_encoding": "json"},
                "sinks": [
                    {
                        "service_name": "ps",
                        "resource": topic,
                        "output_encoding": "avro",
                        "schema_id": "counter",
                    }
                ],
            },
        )
        c.start()
        assert c.wait(WAIT) and c.state == "completed", c.reason
        schema = AvroSchema.parse(COUNTER_SCHEMA)
        got = emulator.pull_count(sub, 25)
        assert sorted(decode(m.data, "avro", schema)["n"] for m in got) == list(range(25))

        loaded = pubsub_module.load_schema(service_config(), path)  # a full name works too
        assert loaded.raw == COUNTER_SCHEMA
        with pytest.raises(ConfigError, match="not found in the Pub/Sub schema service"):
            pubsub_module.load_schema(service_config(), f"{schema_id}-missing")
    finally:
        schemas.delete_schema(name=path)
        schemas.transport.close()


def test_oversized_message_is_dead_lettered_not_fatal(emulator: Emulator, tmp_path: Path) -> None:
    topic = emulator.topic("out")
    sub = emulator.subscription(topic)
    big = "x" * (pubsub_module.MAX_MESSAGE_BYTES + 1000)
    (tmp_path / "in.jsonl").write_text(
        json.dumps({"n": 0})
        + "\n"
        + json.dumps({"n": 1, "blob": big})
        + "\n"
        + json.dumps({"n": 2})
        + "\n"
    )
    c = connector(
        [pubsub_service(), {"name": "files", "provider": "file", "base_dir": str(tmp_path)}],
        {
            "name": "big",
            "source": {"service_name": "files", "resource": "in.jsonl", "output_encoding": "json"},
            "sinks": [{"service_name": "ps", "resource": topic, "output_encoding": "json"}],
            "dead_letter": {"service_name": "files", "resource": "dead.jsonl"},
        },
    )
    c.start()
    assert c.wait(WAIT) and c.state == "completed", c.reason
    got = emulator.pull_count(sub, 2)
    assert sorted(json.loads(m.data)["n"] for m in got) == [0, 2]
    dead = file_lines(tmp_path / "dead.jsonl")
    assert len(dead) == 1 and dead[0]["stage"] == "sink"
    assert "limit" in dead[0]["reason"] and dead[0]["payload"]["n"] == 1
    assert c.counters.snapshot()["dead_lettered"] == 1
    assert emulator.drained(topic, sub) == []
