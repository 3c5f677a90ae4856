"""MongoDB source, sink and schema registry against a real wire-protocol server.

The ``mongodb_uri`` fixture starts mongo-java-server 1.47.0 with its oplog (see
``tests/servers/README.md``), or uses ``$MSTREAM_TEST_MONGODB_URI``. What the stand-in does
not reproduce, and so what these tests cannot show:

* pre-images and ``wallTime`` (the source reports ``wall_time`` only when the server sends it);
* resume tokens in MongoDB's key-string format (the stand-in's are the hex of the oplog
  timestamp), ``ChangeStreamHistoryLost`` (its oplog is never trimmed), and ``drop`` /
  ``invalidate`` events shaped like MongoDB's (so the reopen-after-invalidate path is not
  exercised here);
* replica-set features: sessions, retryable writes, write concern errors, authentication.

Waits poll a condition with a deadline; nothing sleeps for synchronisation.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import Decimal128, Int64, ObjectId, Timestamp
from bson.raw_bson import RawBSONDocument

from mstream.config import parse_config
from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Event
from mstream.encodings import AvroSchema, JsonSchema, decode
from mstream.errors import ConfigError, DeliveryError
from mstream.providers import get_provider
from mstream.providers.base import StepContext
from mstream.registry import mask_service
from mstream.runtime.connector import Connector
from mstream.stores import CheckpointStore, MemoryCheckpointStore
from tests.waiting import wait_for

pytestmark = pytest.mark.mongodb

DB = "mstream_tests"


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def client(mongodb_uri: str) -> Iterator[Any]:
    from pymongo import MongoClient

    mongo: Any = MongoClient(mongodb_uri, serverSelectionTimeoutMS=10_000)
    try:
        yield mongo
    finally:
        mongo.close()


def mongo_service(uri: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "mongo",
        "provider": "mongodb",
        "connection_string": uri,
        "db_name": DB,
        **extra,
    }


def files_service(path: Path) -> dict[str, Any]:
    return {"name": "files", "provider": "file", "base_dir": str(path)}


def connector(
    services: list[dict[str, Any]],
    definition: dict[str, Any],
    store: CheckpointStore | None = None,
    **kwargs: Any,
) -> Connector:
    cfg = parse_config({"services": services, "connectors": [definition]})
    return Connector(cfg.connectors[0], {s.name: s for s in cfg.services}, store, **kwargs)


def json_lines(path: Path) -> list[Any]:
    """Every complete line of a JSON-lines file, parsed."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line]


def wait_until_streaming(coll: Any, out: Path, timeout: float = 20.0) -> None:
    """Insert probe documents until one reaches ``out``: the change stream is open.

    A source without a checkpoint starts at *now*, so writes made before its stream is open
    are (rightly) not seen; the probes tell the test when that moment has passed.
    """
    probes = iter(range(1_000_000))

    def arrived() -> bool:
        coll.insert_one({"_id": f"probe-{next(probes)}"})
        return any(_is_probe(doc) for doc in json_lines(out))

    wait_for(arrived, timeout, "the change stream to deliver a probe document")


def _is_probe(doc: Any) -> bool:
    return isinstance(doc.get("_id"), str) and doc["_id"].startswith("probe-")


def numbered(docs: list[Any]) -> list[int]:
    return [d["_id"] for d in docs if not _is_probe(d)]


def run_to_end(c: Connector, timeout: float = 30.0) -> None:
    c.start()
    assert c.wait(timeout), "the connector did not finish"
    assert c.state == "completed", c.reason


def write_lines(path: Path, docs: list[Any]) -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))


class Writer:
    """Inserts ``{"_id": i, "n": i}`` in ordered batches from a thread until stopped: a live stream."""

    def __init__(self, coll: Any, step: int = 50, limit: int = 100_000) -> None:
        self.coll, self.step, self.limit = coll, step, limit
        self.count = 0
        self.errors: list[BaseException] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._done.is_set() and self.count < self.limit:
                upto = self.count + self.step
                self.coll.insert_many([{"_id": i, "n": i} for i in range(self.count, upto)])
                self.count = upto
        except BaseException as exc:
            self.errors.append(exc)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop writing; returns how many documents were inserted."""
        self._done.set()
        self._thread.join(60)
        assert not self._thread.is_alive() and not self.errors, self.errors
        return self.count


# -- source ----------------------------------------------------------------------------


def test_source_events_carry_payload_attributes_and_metadata(
    mongodb_uri: str, client: Any, unique_name: str
) -> None:
    coll = client[DB][unique_name]
    svc = parse_config({"services": [mongo_service(mongodb_uri)]}).services[0]
    spec = get_provider("mongodb")
    assert spec.source is not None
    stopping = threading.Event()
    ctx = StepContext("t", "source", stopping=stopping, checkpointing=True)
    src = spec.source(svc, StepConfig("mongo", unique_name, output_encoding="bson"), ctx)
    chunks: list[list[Event]] = []
    lock = threading.Lock()

    def emit(events: list[Event]) -> None:
        with lock:
            chunks.append(events)

    def seen() -> list[Event]:
        with lock:
            return [e for c in chunks for e in c]

    src.open()  # the stream is open when open() returns: later writes are seen
    worker = threading.Thread(target=src.run, args=(emit, stopping))
    worker.start()
    try:
        at = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
        oid = ObjectId("65a1b2c3d4e5f60718293a4b")
        coll.insert_one({"_id": 1, "v": 1, "at": at, "oid": oid, "big": Int64(2**40)})
        coll.update_one({"_id": 1}, {"$set": {"v": 2}})
        # an update carries the document as it is when the server looks it up
        wait_for(lambda: len(seen()) >= 2, 20, "the insert and the update")
        coll.replace_one({"_id": 1}, {"v": 3, "price": Decimal128("9.99")})
        coll.delete_one({"_id": 1})
        coll.insert_many([{"_id": i} for i in range(100, 150)])
        wait_for(lambda: len(seen()) >= 54, 20, "54 change events")
    finally:
        stopping.set()
        worker.join(10)
        src.close()
    assert not worker.is_alive(), "run() did not honour stopping"
    events = seen()
    assert len(events) == 54
    assert len(chunks) < 54  # emitted in chunks, not one call per event
    ops = [e.metadata["operation_type"] for e in events[:4]]
    assert ops == ["insert", "update", "replace", "delete"]
    docs = [decode(e.payload, "bson") for e in events[:4]]
    assert docs[0] == {"_id": 1, "v": 1, "at": at, "oid": oid, "big": 2**40}
    assert isinstance(docs[0]["big"], Int64)
    assert docs[1] == {"_id": 1, "v": 2, "at": at, "oid": oid, "big": 2**40}
    assert docs[2] == {"_id": 1, "v": 3, "price": Decimal128("9.99")}
    assert docs[3] == {"_id": 1}  # a delete delivers the document key
    for e in events:
        assert e.encoding == "bson"
        assert e.attributes == {
            "operation_type": e.metadata["operation_type"],
            "database": DB,
            "collection": unique_name,
        }
        assert e.metadata["database"] == DB and e.metadata["collection"] == unique_name
        assert e.metadata["document_key"] == {"_id": decode(e.payload, "bson")["_id"]}
        assert isinstance(e.metadata["cluster_time"], Timestamp)
        assert set(e.metadata["resume_token"]) == {"_data"}
    assert sorted(e.metadata["document_key"]["_id"] for e in events[4:]) == list(range(100, 150))

    # the checkpoint moves only over acknowledged events, in order
    assert src.position() is not None  # the post-batch token from opening the stream
    opened_at = src.position()
    assert all(e.ack is not None for e in events)
    events[1].ack()  # type: ignore[misc]
    assert src.position() == opened_at  # event 0 is not acknowledged yet
    events[0].ack()  # type: ignore[misc]
    position = src.position()
    assert position != opened_at and position["namespace"] == f"{DB}.{unique_name}"
    # It is events[1]'s token, or a later post-batch token the idle stream recorded before
    # events[2] (other writes on the server move it on): either way a stream resumed from
    # it starts exactly at events[2].
    if position["resume_token"] != events[1].metadata["resume_token"]:
        assert position["resume_token"] not in [e.metadata["resume_token"] for e in events]
    with coll.watch(resume_after=position["resume_token"], max_await_time_ms=200) as stream:
        deadline = time.monotonic() + 20
        first = stream.try_next()
        while first is None and time.monotonic() < deadline:
            first = stream.try_next()
    assert first is not None and first["_id"] == events[2].metadata["resume_token"]


def test_change_stream_to_file_with_attributes(
    mongodb_uri: str, client: Any, unique_name: str, tmp_path: Path
) -> None:
    """Inserts, updates, replaces and deletes reach a file sink as Extended JSON.

    A Lua script copies the event attributes into the documents, so the file shows what a
    Pub/Sub sink would publish as message attributes.
    """
    coll = client[DB][unique_name]
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "tag.lua").write_text(
        "function transform(data, attributes)\n"
        "  data.op = attributes.operation_type\n"
        '  data.ns = attributes.database .. "." .. attributes.collection\n'
        "  return result(data, attributes)\n"
        "end\n"
    )
    out = tmp_path / "out.jsonl"
    c = connector(
        [
            mongo_service(mongodb_uri),
            files_service(tmp_path),
            {
                "name": "udf",
                "provider": "udf",
                "engine": {"kind": "lua"},
                "script_path": str(scripts),
            },
        ],
        {
            "name": "m2f",
            "source": {"service_name": "mongo", "resource": unique_name, "output_encoding": "json"},
            "middlewares": [
                {"service_name": "udf", "resource": "tag.lua", "output_encoding": "json"}
            ],
            "sinks": [
                {"service_name": "files", "resource": "out.jsonl", "output_encoding": "json"}
            ],
        },
    )
    c.start()
    try:
        wait_until_streaming(coll, out)
        oid = ObjectId("65a1b2c3d4e5f60718293a4b")
        coll.insert_one({"_id": oid, "v": 1, "at": datetime(2024, 5, 1, tzinfo=UTC)})
        coll.update_one({"_id": oid}, {"$set": {"v": 2}})
        # an update carries the document as it is when the server looks it up
        wait_for(lambda: len(numbered(json_lines(out))) >= 2, 20, "the insert and the update")
        coll.replace_one({"_id": oid}, {"v": 3})
        coll.delete_one({"_id": oid})
        wait_for(lambda: len(numbered(json_lines(out))) >= 4, 20, "four changes in the file")
    finally:
        assert c.stop(drain=True)
    assert c.state == "stopped", c.reason
    lines = [d for d in json_lines(out) if not _is_probe(d)]
    ns = f"{DB}.{unique_name}"
    oid_json = {"$oid": "65a1b2c3d4e5f60718293a4b"}
    assert lines == [
        {
            "_id": oid_json,
            "v": 1,
            "at": {"$date": "2024-05-01T00:00:00.000Z"},
            "op": "insert",
            "ns": ns,
        },
        {
            "_id": oid_json,
            "v": 2,
            "at": {"$date": "2024-05-01T00:00:00.000Z"},
            "op": "update",
            "ns": ns,
        },
        {"_id": oid_json, "v": 3, "op": "replace", "ns": ns},
        {"_id": oid_json, "op": "delete", "ns": ns},
    ]


def test_stop_mid_stream_then_resume_from_the_saved_token(
    mongodb_uri: str, client: Any, unique_name: str, tmp_path: Path
) -> None:
    """Nothing is lost across a stop; the duplicates are exactly the unacknowledged tail.

    The first run is stopped without draining while a writer keeps inserting; the second
    run resumes after the saved resume token. The first change after that token (read with
    a plain PyMongo change stream) is where the second run must begin.
    """
    coll = client[DB][unique_name]
    store = MemoryCheckpointStore()
    services = [mongo_service(mongodb_uri, chunk_size=100), files_service(tmp_path)]

    def definition(out: str) -> dict[str, Any]:
        return {
            "name": "resume",
            "checkpoint": {"enabled": True, "interval_ms": 50},
            "source": {"service_name": "mongo", "resource": unique_name, "output_encoding": "json"},
            "sinks": [{"service_name": "files", "resource": out, "output_encoding": "json"}],
        }

    first = connector(services, definition("first.jsonl"), store)
    first.start()
    wait_until_streaming(coll, tmp_path / "first.jsonl")
    writer = Writer(coll).start()
    wait_for(lambda: len(numbered(json_lines(tmp_path / "first.jsonl"))) >= 500, 30, "500 lines")
    before = store.latest("resume")
    wait_for(lambda: store.latest("resume") != before, 30, "a checkpoint after those lines")
    assert first.stop(drain=False)
    stopped_at = writer.count
    wait_for(lambda: writer.count >= stopped_at + 500, 30, "500 more writes while stopped")
    total = writer.stop()
    assert total < writer.limit, "the stream ended before the stop"
    first_run = numbered(json_lines(tmp_path / "first.jsonl"))
    assert first_run == list(range(len(first_run)))  # in order, nothing skipped
    saved = store.latest("resume")
    assert saved is not None
    assert saved.position["namespace"] == f"{DB}.{unique_name}"
    token = saved.position["resume_token"]

    with coll.watch(resume_after=token, max_await_time_ms=100) as stream:
        change = None
        while change is None or _is_probe(change["documentKey"]):
            change = stream.try_next()
        resume_at = change["documentKey"]["_id"]
    assert 0 < resume_at <= len(first_run)  # the checkpoint moved, and not past delivery

    second = connector(services, definition("second.jsonl"), store)
    second.start()
    try:
        wait_for(
            lambda: len(numbered(json_lines(tmp_path / "second.jsonl"))) >= total - resume_at,
            30,
            "every change after the saved token",
        )
    finally:
        assert second.stop(drain=True)
    assert second.state == "stopped", second.reason
    second_run = numbered(json_lines(tmp_path / "second.jsonl"))
    assert second_run == list(range(resume_at, total))
    duplicates = sorted(set(first_run) & set(second_run))
    assert duplicates == list(range(resume_at, len(first_run)))
    assert set(first_run) | set(second_run) == set(range(total))
    latest = store.latest("resume")
    assert latest is not None and latest.position != saved.position


def test_idle_stream_checkpoint_keeps_writes_made_while_stopped(
    mongodb_uri: str, client: Any, unique_name: str, tmp_path: Path
) -> None:
    """A job stopped before any change resumes from the token recorded when its stream opened."""
    coll = client[DB][unique_name]
    store = MemoryCheckpointStore()
    services = [mongo_service(mongodb_uri), files_service(tmp_path)]
    definition = {
        "name": "quiet",
        "checkpoint": {"enabled": True, "interval_ms": 50},
        "source": {"service_name": "mongo", "resource": unique_name, "output_encoding": "json"},
        "sinks": [{"service_name": "files", "resource": "out.jsonl", "output_encoding": "json"}],
    }
    first = connector(services, definition, store)
    first.start()
    wait_for(lambda: store.latest("quiet") is not None, 20, "the opening checkpoint")
    assert first.stop(drain=True)
    assert not (tmp_path / "out.jsonl").exists() or json_lines(tmp_path / "out.jsonl") == []
    coll.insert_many([{"_id": i} for i in range(20)])  # while no job is reading

    second = connector(services, definition, store)
    second.start()
    try:
        wait_for(lambda: len(json_lines(tmp_path / "out.jsonl")) >= 20, 20, "20 changes")
    finally:
        assert second.stop(drain=True)
    assert [d["_id"] for d in json_lines(tmp_path / "out.jsonl")] == list(range(20))


# -- sink ------------------------------------------------------------------------------

SINK_DOCS = [
    {
        "_id": i,
        "name": f"item-{i}",
        "at": {"$date": "2024-05-01T00:00:00Z"},
        "oid": {"$oid": "65a1b2c3d4e5f60718293a4b"},
        "big": {"$numberLong": "1099511627776"},
    }
    for i in range(40)
]


@pytest.mark.parametrize(
    ("mode", "batched", "encoding"),
    [
        ("insert", False, "json"),
        ("insert", True, "bson"),
        ("replace", False, "bson"),
        ("replace", True, "json"),
    ],
)
def test_file_to_mongodb(
    mongodb_uri: str,
    client: Any,
    unique_name: str,
    tmp_path: Path,
    mode: str,
    batched: bool,
    encoding: str,
) -> None:
    """Events are written with their MongoDB types; a replace run upserts by ``_id``."""
    coll = client[DB][unique_name]
    write_lines(tmp_path / "in.jsonl", SINK_DOCS)

    def run(resource: str) -> Connector:
        definition: dict[str, Any] = {
            "name": "f2m",
            "source": {"service_name": "files", "resource": resource, "output_encoding": "json"},
            "sinks": [
                {"service_name": "mongo", "resource": unique_name, "output_encoding": encoding}
            ],
        }
        if batched:
            definition["batch"] = {"kind": "count", "size": 7}
        c = connector(
            [mongo_service(mongodb_uri, write_mode=mode), files_service(tmp_path)], definition
        )
        run_to_end(c)
        return c

    c = run("in.jsonl")
    assert c.counters.events_out == 40 and c.counters.errors == 0
    stored = list(coll.find({}, sort=[("_id", 1)]))
    assert [d["_id"] for d in stored] == list(range(40))
    first = stored[0]
    assert first["at"] == datetime(2024, 5, 1)  # naive UTC from PyMongo's default options
    assert first["oid"] == ObjectId("65a1b2c3d4e5f60718293a4b")
    assert first["big"] == 2**40 and isinstance(first["big"], Int64)

    # a second run: new versions of 0-9 and new documents 40-44
    changed = [{"_id": i, "name": f"changed-{i}"} for i in range(10)]
    added = [{"_id": i, "name": f"item-{i}"} for i in range(40, 45)]
    write_lines(tmp_path / "more.jsonl", changed + added)
    c = run("more.jsonl")
    names = {d["_id"]: d["name"] for d in coll.find({})}
    assert sorted(names) == list(range(45))
    if mode == "replace":
        assert c.counters.events_out == 15 and c.counters.errors == 0
        assert [names[i] for i in range(10)] == [f"changed-{i}" for i in range(10)]
        assert coll.find_one({"_id": 0}) == {"_id": 0, "name": "changed-0"}
    else:  # insert: the changed versions collide with stored documents and are dead-lettered
        assert c.counters.errors == 10
        assert [names[i] for i in range(10)] == [f"item-{i}" for i in range(10)]


def test_bad_events_are_dead_lettered_and_the_job_goes_on(
    mongodb_uri: str, client: Any, unique_name: str, tmp_path: Path
) -> None:
    coll = client[DB][unique_name]
    lines = [
        json.dumps({"_id": 1, "v": 1}),
        json.dumps({"v": "no id"}),
        json.dumps([{"_id": 2}]),
        json.dumps({"_id": 3, "v": 3}),
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    c = connector(
        [mongo_service(mongodb_uri, write_mode="replace"), files_service(tmp_path)],
        {
            "name": "bad",
            "source": {"service_name": "files", "resource": "in.jsonl", "output_encoding": "json"},
            "sinks": [
                {"service_name": "mongo", "resource": unique_name, "output_encoding": "json"}
            ],
            "dead_letter": {"service_name": "files", "resource": "dead.jsonl"},
        },
    )
    run_to_end(c)
    assert sorted(coll.find({}), key=lambda d: d["_id"]) == [{"_id": 1, "v": 1}, {"_id": 3, "v": 3}]
    dead = json_lines(tmp_path / "dead.jsonl")
    assert [d["payload"] for d in dead] == [{"v": "no id"}, [{"_id": 2}]]
    assert {d["stage"] for d in dead} == {"sink"}
    assert "replace needs an _id" in dead[0]["reason"]
    assert "sinks[0] (mongo)" in dead[0]["reason"]
    assert "must be an object, got list" in dead[1]["reason"]
    # events_out counts what reached the sink: the two it refused are errors, not "out"
    assert c.counters.errors == 2 and c.counters.events_out == 2


def test_insert_duplicates_identical_are_written_different_are_dead_lettered(
    mongodb_uri: str, client: Any, unique_name: str, tmp_path: Path
) -> None:
    """At-least-once redelivery re-inserts identical documents: those are not errors."""
    coll = client[DB][unique_name]
    coll.insert_many([{"_id": 1, "v": "same"}, {"_id": 2, "v": "stored"}])
    docs = [{"_id": 1, "v": "same"}, {"_id": 2, "v": "new"}, {"_id": 3, "v": 3}, {"v": 4}]
    write_lines(tmp_path / "in.jsonl", docs)
    c = connector(
        [mongo_service(mongodb_uri), files_service(tmp_path)],
        {
            "name": "dups",
            "batch": {"kind": "count", "size": 10},
            "source": {"service_name": "files", "resource": "in.jsonl", "output_encoding": "json"},
            "sinks": [
                {"service_name": "mongo", "resource": unique_name, "output_encoding": "bson"}
            ],
            "dead_letter": {"service_name": "files", "resource": "dead.jsonl"},
        },
    )
    run_to_end(c)
    stored = {d["_id"] if d["_id"] in (1, 2, 3) else "generated": d["v"] for d in coll.find({})}
    assert stored == {1: "same", 2: "stored", 3: 3, "generated": 4}
    assert isinstance(coll.find_one({"v": 4})["_id"], ObjectId)
    dead = json_lines(tmp_path / "dead.jsonl")
    assert [d["payload"] for d in dead] == [{"_id": 2, "v": "new"}]
    assert "duplicate key: a different document is stored" in dead[0]["reason"]
    assert c.counters.errors == 1


# -- schema registry -------------------------------------------------------------------

AVRO_SCHEMA = {
    "type": "record",
    "name": "Item",
    "fields": [{"name": "n", "type": "long"}, {"name": "name", "type": "string"}],
}


def test_avro_schema_from_a_collection(
    mongodb_uri: str, client: Any, unique_name: str, tmp_path: Path
) -> None:
    schemas = f"{unique_name}-schemas"
    client[DB][schemas].insert_many(
        [
            {
                "_id": "item",
                "schema_encoding": "avro",
                "schema_definition": json.dumps(AVRO_SCHEMA),
            },
            {"_id": "embedded", "schema_definition": AVRO_SCHEMA},
            {"_id": "json-schema", "schema_encoding": "json", "schema_definition": "{}"},
            {"_id": "bson", "schema_encoding": "bson", "schema_definition": "{}"},
        ]
    )
    write_lines(tmp_path / "in.jsonl", [{"n": i, "name": f"item-{i}"} for i in range(5)])
    c = connector(
        [mongo_service(mongodb_uri), files_service(tmp_path)],
        {
            "name": "avro",
            "schemas": [{"id": "item", "service_name": "mongo", "resource": f"{schemas}/item"}],
            "source": {"service_name": "files", "resource": "in.jsonl", "output_encoding": "json"},
            "sinks": [
                {
                    "service_name": "files",
                    "resource": "out.jsonl",
                    "output_encoding": "avro",
                    "schema_id": "item",
                }
            ],
        },
    )
    run_to_end(c)
    schema = AvroSchema.parse(AVRO_SCHEMA)
    out = (tmp_path / "out.jsonl").read_text().split()
    assert [decode(base64.b64decode(line), "avro", schema)["n"] for line in out] == list(range(5))

    loader = get_provider("mongodb").schema_loader
    assert loader is not None
    svc = parse_config({"services": [mongo_service(mongodb_uri)]}).services[0]
    assert loader(svc, f"{schemas}/embedded") == schema
    assert loader(svc, f"{schemas}/json-schema") == JsonSchema.parse("{}")
    for resource, expected in [
        (f"{schemas}/", "'<collection>/<schema_id>'"),
        (f"{schemas}/missing", "no document with _id or schema_id 'missing'"),
        (f"{schemas}/bson", "encoding 'bson' is not a schema language"),
    ]:
        with pytest.raises(ConfigError, match=expected):
            loader(svc, resource)


# -- configuration and failures --------------------------------------------------------


def test_config_errors_name_the_path_and_hide_the_secret() -> None:
    def problems(service: dict[str, Any]) -> list[str]:
        with pytest.raises(ConfigError) as info:
            parse_config({"services": [service]})
        return [p.removeprefix("<memory>: ") for p in info.value.problems]

    base = {"name": "m", "provider": "mongodb", "connection_string": "mongodb://h", "db_name": "x"}
    found = problems({"name": "m", "provider": "mongodb"})
    assert any(p.startswith("services[0].connection_string: missing required") for p in found)
    assert any(p.startswith("services[0].db_name: missing required") for p in found)
    [unknown] = problems({**base, "write_mod": "replace"})
    assert unknown.startswith("services[0].write_mod: unknown field")
    assert "write_mode" in unknown  # the known fields are listed
    [mode] = problems({**base, "write_mode": "upsert"})
    assert mode == "services[0].write_mode: must be insert or replace (got 'upsert')"
    [scheme] = problems({**base, "connection_string": "http://app:s3cret-pw@h"})
    assert scheme == ("services[0].connection_string: must start with mongodb:// or mongodb+srv://")
    [uri] = problems({**base, "connection_string": "mongodb://app:s3cret-pw@h/?bogusTimeoutMS=x"})
    assert uri.startswith("services[0].connection_string: invalid MongoDB URI")
    assert "s3cret-pw" not in uri
    [db] = problems({**base, "db_name": "a.b"})
    assert db.startswith("services[0].db_name: 'a.b' is not a valid database name")

    svc = parse_config(
        {"services": [{**base, "connection_string": "mongodb://app:s3cret-pw@db1:27017/?tls=true"}]}
    ).services[0]
    masked = mask_service(svc)["connection_string"]
    assert masked == "mongodb://app:****@db1:27017/?tls=true"

    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "services": [base, {"name": "out", "provider": "stdout"}],
                "connectors": [
                    {
                        "name": "c",
                        "source": {"service_name": "m", "output_encoding": "json"},
                        "sinks": [{"service_name": "out", "output_encoding": "json"}],
                    }
                ],
            }
        )
    assert any(
        p.startswith("<memory>: connectors[0].source.resource: missing required field")
        for p in info.value.problems
    )


def test_unreachable_server_fails_the_job_with_the_reason(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"mongodb://app:s3cret-pw@127.0.0.1:{port}/?serverSelectionTimeoutMS=200"
    c = connector(
        [mongo_service(uri), files_service(tmp_path)],
        {
            "name": "down",
            "source": {"service_name": "mongo", "resource": "users", "output_encoding": "json"},
            "sinks": [{"service_name": "files", "resource": "o.jsonl", "output_encoding": "json"}],
        },
        max_restarts=1,
    )
    c.start()
    assert c.wait(20)
    assert c.state == "failed" and c.restarts == 1
    assert c.reason is not None and "cannot open the change stream" in c.reason
    assert "s3cret-pw" not in c.reason

    svc = ServiceConfig("mongo", "mongodb", {**mongo_service(uri), "max_retries": 1})
    spec = get_provider("mongodb")
    assert spec.sink is not None
    ctx = StepContext("t", "sink")
    sink = spec.sink(svc, StepConfig("mongo", "users"), ctx)
    sink.open()
    failures: list[BaseException | None] = []
    from mstream.core import Batch

    sink.write(Batch.of([Event(b'{"_id": 1}', "json")], batched=False), failures.append)
    sink.close()
    assert isinstance(failures[0], DeliveryError)
    assert "after 1 retry" in str(failures[0]) and ctx.counters.retries == 1


def test_bson_payload_round_trip_through_the_sink(
    mongodb_uri: str, client: Any, unique_name: str
) -> None:
    """A raw BSON payload (as a MongoDB source emits) is written as it is."""
    spec = get_provider("mongodb")
    assert spec.sink is not None
    svc = parse_config({"services": [mongo_service(mongodb_uri)]}).services[0]
    sink = spec.sink(
        svc, StepConfig("mongo", unique_name, output_encoding="bson"), StepContext("t", "sink")
    )
    sink.open()
    from mstream.core import Batch

    doc = {"_id": ObjectId(), "price": Decimal128("1.10"), "raw": b"\x00\x01"}
    outcome: list[BaseException | None] = []
    sink.write(Batch.of([Event(bson.encode(doc), "bson")], batched=False), outcome.append)
    sink.close()
    assert outcome == [None]
    assert client[DB][unique_name].find_one({}) == doc


def _counting_source(uri: str, collection: str, stopping: threading.Event) -> Any:
    """A change stream source (chunks of 2) that counts the changes it has read."""
    from mstream.providers.mongodb.source import ChangeStreamSource

    class Counting(ChangeStreamSource):
        read = 0

        def _event(self, change: RawBSONDocument) -> Event | None:
            Counting.read += 1
            return super()._event(change)

    svc = parse_config({"services": [mongo_service(uri, chunk_size=2)]}).services[0]
    ctx = StepContext("t", "source", stopping=stopping, checkpointing=True)
    return Counting(svc, StepConfig("mongo", collection, output_encoding="bson"), ctx)


def test_the_next_chunk_is_read_while_the_pipeline_works_and_no_further(
    mongodb_uri: str, client: Any, unique_name: str
) -> None:
    """Reading goes on while ``emit`` blocks, up to ``read_ahead`` chunks waiting; every
    chunk read is emitted, in order."""
    stopping, release = threading.Event(), threading.Event()
    src = _counting_source(mongodb_uri, unique_name, stopping)
    emitted: list[int] = []

    def emit(events: list[Event]) -> None:
        release.wait(30)  # the pipeline is busy with the first chunk
        emitted.extend(decode(e.payload, "bson")["_id"] for e in events)

    src.open()
    worker = threading.Thread(target=src.run, args=(emit, stopping))
    worker.start()
    try:
        client[DB][unique_name].insert_many([{"_id": i} for i in range(20)])
        # one chunk in emit, read_ahead (2) more read: the one queued and the one waiting
        wait_for(lambda: type(src).read >= 2 * (1 + src.read_ahead), 20, "the read-ahead")
        assert type(src).read == 2 * (1 + src.read_ahead) and emitted == []
        release.set()
        wait_for(lambda: len(emitted) == 20, 20, "every change emitted")
    finally:
        release.set()
        stopping.set()
        worker.join(10)
        src.close()
    assert not worker.is_alive(), "run() did not honour stopping"
    assert emitted == list(range(20))


def test_a_failed_pipeline_stops_the_change_stream_reading(
    mongodb_uri: str, client: Any, unique_name: str
) -> None:
    stopping = threading.Event()
    src = _counting_source(mongodb_uri, unique_name, stopping)

    def emit(events: list[Event]) -> None:
        raise DeliveryError("the sink failed for good")

    src.open()
    client[DB][unique_name].insert_many([{"_id": i} for i in range(20)])
    try:
        with pytest.raises(DeliveryError, match="failed for good"):
            src.run(emit, stopping)
    finally:
        src.close()
    assert type(src).read <= 2 * (2 + src.read_ahead)  # it stopped soon, not at the end


def test_changes_of_a_chunk_share_one_position_and_a_skip_closes_the_run() -> None:
    """Deliverable changes read together share one tracker position (the last one's token);
    a skipped change closes the run first, so the checkpoint never passes an unacknowledged
    change."""
    from mstream.providers.mongodb.source import ChangeStreamSource

    svc = parse_config({"services": [mongo_service("mongodb://127.0.0.1:1")]}).services[0]
    ctx = StepContext("t", "source", checkpointing=True)
    src = ChangeStreamSource(svc, StepConfig("mongo", "users", output_encoding="bson"), ctx)

    def change(n: int, op: str = "insert") -> RawBSONDocument:
        doc: dict[str, Any] = {"_id": {"_data": f"82{n:04d}"}, "operationType": op}
        if op == "insert":
            doc["fullDocument"] = {"_id": n}
            doc["documentKey"] = {"_id": n}
        return RawBSONDocument(bson.encode(doc))

    first = [src._event(change(n)) for n in (1, 2)]
    assert src._event(change(3, "drop")) is None  # skipped: the run [1, 2] is closed first
    second = [src._event(change(4))]
    src._close_run()
    assert first[0] is not None and first[0].ack is first[1].ack  # type: ignore[union-attr]
    token = {"_data": "820002"}
    first[0].ack()  # type: ignore[misc,union-attr]
    assert src.position() is None  # change 2 is not acknowledged: nothing is saved
    first[1].ack()  # type: ignore[misc,union-attr]
    assert src.position()["resume_token"] == {"_data": "820003"}  # past the skipped drop
    second[0].ack()  # type: ignore[misc,union-attr]
    assert src.position()["resume_token"] == {"_data": "820004"}
    assert first[0].metadata["resume_token"] == {"_data": "820001"}  # type: ignore[union-attr]
    assert first[1].metadata["resume_token"] == token  # type: ignore[union-attr]
