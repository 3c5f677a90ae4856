"""The Rust original's configs, snippets, schema documents and examples, run here.

``tests/data/upstream/`` holds copies of every config file of the original (v0.47.0:
``mstream-config.toml.example``, ``examples/*.toml``) and of every TOML block of its README,
``docs/*.md`` and ``examples/rhai/README.md`` (see ``tests/data/upstream/README.md``).
Each is validated with the environment variables it names set, and what mstream loaded is
compared with what the file says (every key the file writes holds the value it writes).
A snippet is a fragment of a config: the services it names but does not define, and the
``name`` / ``source`` / ``sinks`` a connector fragment leaves out, come from
``tests/data/upstream/context.toml``.

The two example pipelines run in an ``mstream`` process against the test servers, with
only their connection settings and topic / collection names rewritten. Waits poll with a
deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mstream.config import Config, load_config, parse_config
from mstream.config.schema import resolve_env
from mstream.encodings import AvroSchema, JsonSchema, decode
from mstream.errors import ConfigError
from mstream.library import run_config
from mstream.providers import get_provider
from mstream.providers.mongodb.schema_registry import install_schema_collection
from mstream.runtime.manager import JobManager
from mstream.stores import Stores
from tests.waiting import wait_for

DATA = Path(__file__).parent / "data" / "upstream"
FILES = DATA / "files"
SNIPPETS = DATA / "snippets"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "upstream"
MARKDOWN = {
    "README": "README.md",
    "reference": "docs/reference.md",
    "persistence": "docs/persistence.md",
    "rhai-README": "examples/rhai/README.md",
}
ENV = {"MSTREAM_KAFKA_USERNAME": "mstream-user", "MSTREAM_KAFKA_PASSWORD": "mstream-secret"}
MSTREAM = Path(sys.executable).with_name("mstream")
DB = "mstream_tests"


# -- the copies ------------------------------------------------------------------------


def toml_blocks(markdown: str) -> list[tuple[str, str]]:
    """Every fenced TOML block of a Markdown text, named after the headings above it.

    The name is the slug of the level-2 heading down to the nearest one
    (``management-api--workspaces--system-configuration``), with ``-2``, ``-3``... for a
    repeat.
    """
    blocks: list[tuple[str, str]] = []
    headings: dict[int, str] = {}
    lines = markdown.splitlines(keepends=True)
    fence: str | None = None
    body: list[str] = []
    for line in lines:
        stripped = line.strip()
        if fence is None and stripped.startswith("```"):
            fence = stripped[3:].strip()
            body = []
        elif fence is not None and stripped.startswith("```"):
            if fence == "toml":
                trail = [headings[level] for level in sorted(headings) if level >= 2]
                name = "--".join(re.sub(r"[^a-z0-9]+", "-", h.lower()).strip("-") for h in trail)
                taken = sum(1 for n, _ in blocks if n == name or n.startswith(f"{name}-"))
                blocks.append((f"{name}-{taken + 1}" if taken else name, "".join(body)))
            fence = None
        elif fence is not None:
            body.append(line)
        elif match := re.match(r"^(#{1,6})\s+(.*?)\s*$", line):
            level = len(match.group(1))
            headings = {k: v for k, v in headings.items() if k < level}
            headings[level] = match.group(2)
    return blocks


def _upstream_snippets() -> dict[str, str]:
    return {
        f"{stem}--{name}.toml": text
        for stem, doc in MARKDOWN.items()
        for name, text in toml_blocks((SHARED / doc).read_text(encoding="utf-8"))
    }


def test_every_upstream_config_and_snippet_is_copied_verbatim() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (the original's files) is not here to compare with")
    upstream_files = [
        SHARED / "mstream-config.toml.example",
        *sorted(SHARED.glob("examples/*.toml")),
    ]
    assert sorted(p.name for p in FILES.iterdir()) == sorted(p.name for p in upstream_files)
    for path in upstream_files:
        assert (FILES / path.name).read_bytes() == path.read_bytes(), path.name
    snippets = _upstream_snippets()
    assert len(snippets) == 14
    assert sorted(p.name for p in SNIPPETS.iterdir()) == sorted(snippets)
    for name, text in snippets.items():
        assert (SNIPPETS / name).read_text(encoding="utf-8") == text, name


# -- validation with the same meaning --------------------------------------------------


def compose(snippet: dict[str, Any]) -> dict[str, Any]:
    """A snippet completed by the context: missing services, connector name/source/sinks."""
    context = tomllib.loads((DATA / "context.toml").read_text(encoding="utf-8"))
    services = list(snippet.get("services", []))
    defined = {s.get("name") for s in services}
    services += [s for s in context["services"] if s["name"] not in defined]
    connectors = []
    for i, connector in enumerate(snippet.get("connectors", [])):
        defaults = {**context["connector"], "name": f"snippet-{i}"}
        connectors.append(
            {**{k: v for k, v in defaults.items() if k not in connector}, **connector}
        )
    return {**snippet, "services": services, "connectors": connectors}


def assert_holds(expected: Any, actual: Any, path: str) -> None:
    """Every key and value of ``expected`` is in ``actual`` (which may hold defaults more)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected a table, mstream has {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key}: written in the file, missing in mstream's config"
            assert_holds(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list | tuple), f"{path}: expected a list, mstream has {actual!r}"
        assert len(actual) == len(expected), f"{path}: {len(expected)} items in the file"
        for i, (want, have) in enumerate(zip(expected, actual, strict=True)):
            assert_holds(want, have, f"{path}[{i}]")
    else:
        assert actual == expected, f"{path}: the file says {expected!r}, mstream has {actual!r}"


def assert_same_meaning(written: dict[str, Any], config: Config) -> None:
    """What ``written`` (env values resolved) says is what ``config`` holds."""
    for service in written.get("services", []):
        loaded = config.service(service["name"])
        assert loaded is not None, f"service {service['name']!r} missing"
        assert_holds(service, loaded.to_dict(), f"services.{service['name']}")
    by_name = {c.name: c for c in config.connectors}
    for connector in written.get("connectors", []):
        assert_holds(
            connector, by_name[connector["name"]].to_dict(), f"connectors.{connector['name']}"
        )
    system = config.system
    for key, value in written.get("system", {}).items():
        actual = getattr(system, key)
        if key == "job_lifecycle":
            actual = {**dataclasses.asdict(actual), "startup_state": system.startup_state}
        elif dataclasses.is_dataclass(actual):
            actual = dataclasses.asdict(actual)
        assert_holds(value, actual, f"system.{key}")


def _rhai_only(problems: list[str], raw: dict[str, Any]) -> bool:
    """Every problem is the Rhai engine missing (issue 11's Rhai part, built elsewhere)."""
    rhai = {
        f"services[{i}].engine"
        for i, s in enumerate(raw["services"])
        if s.get("provider") == "udf" and s.get("engine", {}).get("kind") == "rhai"
    }
    return bool(problems) and all(
        p.split(": ", 2)[1].split(".kind")[0] in rhai and "rhai" in p for p in problems
    )


CASES = sorted(p.name for p in FILES.iterdir()) + sorted(p.name for p in SNIPPETS.iterdir())


@pytest.mark.parametrize("name", CASES)
def test_upstream_config_validates_with_the_same_meaning(name: str) -> None:
    path = FILES / name if (FILES / name).exists() else SNIPPETS / name
    written = tomllib.loads(path.read_text(encoding="utf-8"))
    raw = written if path.parent == FILES else compose(written)
    try:
        config = parse_config(raw, name, ENV)
    except ConfigError as exc:
        if _rhai_only(exc.problems, raw):
            pytest.xfail(f"needs the Rhai engine: {exc.problems}")
        raise
    resolved, unset = resolve_env(written, ENV)
    assert unset == []
    for i, connector in enumerate(resolved.get("connectors", [])):
        connector.setdefault("name", raw["connectors"][i]["name"])  # a fragment's: snippet-<i>
    assert_same_meaning(resolved, config)


def test_the_cli_validates_the_original_example_and_names_unset_variables(tmp_path: Path) -> None:
    example = FILES / "mstream-config.toml.example"
    ok = subprocess.run(
        [str(MSTREAM), "validate", "--config", str(example)],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"{example}: OK (7 services, 9 connectors)"
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    unset = subprocess.run(
        [str(MSTREAM), "validate", "--config", str(example)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert unset.returncode == 2
    assert unset.stderr.splitlines() == [
        f"error: {example}: services[3].sasl.username: environment variable "
        "MSTREAM_KAFKA_USERNAME is not set",
        f"error: {example}: services[3].sasl.password: environment variable "
        "MSTREAM_KAFKA_PASSWORD is not set",
    ]


def test_unknown_keys_say_what_the_original_would_do() -> None:
    hint = "the Rust original ignores unknown keys; remove it or check its spelling"
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "services": [{"name": "g", "provider": "generator", "foo": 1}],
                "connectors": [
                    {
                        "name": "c",
                        "source": {"service_name": "g", "output_encoding": "json"},
                        "sinks": [{"service_name": "g", "output_encoding": "json"}],
                        "checkpoint": {"enabled": True, "interval": 5},
                    }
                ],
                "system": {"workspaces": {"service_name": "g", "resource": "w", "x": 1}},
            }
        )
    assert info.value.problems == [
        f"<memory>: services[0].foo: unknown field ({hint}; known for provider 'generator': "
        "chunk_size, count, invalid_every, rate)",
        f"<memory>: connectors[0].checkpoint.interval: unknown field (did you mean 'interval_ms'? "
        f"{hint}; known: enabled, interval_ms)",
        f"<memory>: system.workspaces.x: unknown field ({hint}; known: resource, service_name)",
    ]


def test_sections_not_acted_on_are_logged_once_at_start(caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(FILES / "mstream-config.toml.example", ENV)
    caplog.set_level(logging.INFO, logger="mstream.jobs")
    manager = JobManager(config, Stores.in_memory())
    try:
        lines = [r.getMessage() for r in caplog.records if "accepted," in r.getMessage()]
    finally:
        manager.close()
        manager.control.close()
    assert lines == []  # workspaces go to the MongoDB collection it names, as in the original
    bare = parse_config({"system": {"generate_encryption_key": False}})
    assert bare.system.generate_encryption_key is False
    caplog.clear()
    manager = JobManager(bare, Stores.in_memory())
    manager.close()
    manager.control.close()
    assert [r.getMessage().split(" (")[0] for r in caplog.records if "acted" in r.getMessage()] == [
        "system.generate_encryption_key: accepted, not acted on"
    ]


def test_system_schemas_and_stores_need_a_mongodb_service() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "services": [{"name": "g", "provider": "generator"}],
                "system": {
                    "schemas": {"service_name": "g", "resource": "s"},
                    "test_suites": {"service_name": "nope", "resource": "t"},
                    "logs": {"buffer_capacity": -1},
                },
            }
        )
    assert info.value.problems == [
        "<memory>: system.logs.buffer_capacity: must be at least 0",
    ]
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "services": [{"name": "g", "provider": "generator"}],
                "system": {
                    "schemas": {"service_name": "g", "resource": "s"},
                    "test_suites": {"service_name": "nope", "resource": "t"},
                },
            }
        )
    assert info.value.problems == [
        "<memory>: system.schemas.service_name: service 'g' is a 'generator' service; system "
        "stores need a mongodb service",
        "<memory>: system.test_suites.service_name: no service named 'nope'",
    ]


# -- the examples, end to end ----------------------------------------------------------


def rewrite(text: str, replace: dict[str, str], drop: tuple[str, ...] = ()) -> str:
    """``text`` with each key (found exactly once) replaced, and lines starting with ``drop``
    removed."""
    for old, new in replace.items():
        assert text.count(old) == 1, f"{old!r} is not in the example once"
        text = text.replace(old, new)
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(drop))


@pytest.fixture
def mongo(mongodb_uri: str) -> Iterator[Any]:
    from pymongo import MongoClient

    client: Any = MongoClient(mongodb_uri, serverSelectionTimeoutMS=10_000)
    try:
        yield client
    finally:
        client.close()


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(MSTREAM), "--config", str(config), "--data-dir", str(config.parent), "--no-api"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
            env={**os.environ, **ENV, "MSTREAM_LOG": "info"},
        )


def _stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
            pytest.fail(f"mstream did not stop on SIGINT:\n{log.read_text()[-3000:]}")
    assert proc.returncode == 0, log.read_text()[-3000:]


def _running(proc: subprocess.Popen[bytes], log: Path) -> Callable[[Callable[[], bool]], bool]:
    def check(condition: Callable[[], bool]) -> bool:
        assert proc.poll() is None, f"mstream exited:\n{log.read_text()[-3000:]}"
        return condition()

    return check


N = 300


@pytest.mark.kafka
@pytest.mark.mongodb
def test_kafka_to_mongo_example_end_to_end(
    kafka_bootstrap: str, mongodb_uri: str, mongo: Any, unique_name: str, tmp_path: Path
) -> None:
    from kafka import KafkaProducer

    topic, coll, jobs = f"events-{unique_name}", f"events_{unique_name}", f"jobs_{unique_name}"
    config = tmp_path / "kafka_to_mongo.toml"
    config.write_text(
        rewrite(
            (FILES / "kafka_to_mongo.toml").read_text(),
            {
                '"your-broker:9092"': json.dumps(kafka_bootstrap),
                '"mongodb://analytics:analytics@mongo-analytics:27017/?authSource=admin"': (
                    json.dumps(mongodb_uri)
                ),
                'resource = "job_lifecycle"': f'resource = "{jobs}"',
                'resource = "events-topic"': f'resource = "{topic}"',
                'resource = "events_processed"': f'resource = "{coll}"',
            },
            drop=('"security.protocol"', '"sasl.'),  # the test broker has no SASL or TLS
        )
    )
    target = mongo["analytics"][coll]
    log = tmp_path / "mstream.log"
    producer: Any = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    proc = _start(config, log)
    running = _running(proc, log)
    try:
        probes = iter(range(10_000))

        def probe_arrived() -> bool:  # the consumer is assigned once a probe gets through
            producer.send(topic, json.dumps({"probe": next(probes)}).encode()).get(10)
            return target.count_documents({"probe": {"$exists": True}}) > 0

        wait_for(lambda: running(probe_arrived), 60, "a probe event in MongoDB")
        events = [
            {"event_id": i, "kind": ["view", "click"][i % 2], "value": i * 1.5} for i in range(N)
        ]
        for event in events:
            producer.send(topic, json.dumps(event).encode())
        producer.flush(30)
        query = {"event_id": {"$exists": True}}
        wait_for(lambda: running(lambda: target.count_documents(query) >= N), 60, f"{N} events")
    finally:
        producer.close()
        _stop(proc, log)
    stored = sorted(
        (
            {k: v for k, v in d.items() if k != "_id"}
            for d in target.find({"event_id": {"$exists": True}})
        ),
        key=lambda d: d["event_id"],
    )
    assert stored == events  # all N, once each, with their content
    text = log.read_text()
    assert "startup_state = keep with an empty job store" in text
    assert mongo["analytics"][jobs].count_documents({"_id": "kafka_to_mongo_events"}) == 1


@pytest.mark.kafka
@pytest.mark.mongodb
def test_mongo_to_kafka_example_end_to_end(
    kafka_bootstrap: str, mongodb_uri: str, mongo: Any, unique_name: str, tmp_path: Path
) -> None:
    from kafka import KafkaConsumer

    topic, coll, jobs = f"users-{unique_name}", f"users_{unique_name}", f"jobs_{unique_name}"
    config = tmp_path / "mongo_to_kafka.toml"
    config.write_text(
        rewrite(
            (FILES / "mongo_to_kafka.toml").read_text(),
            {
                '"mongodb://admin:adminpassword@mongo:27017/?replicaSet=rs0"': json.dumps(
                    mongodb_uri
                ),
                '"kafka:9092"': json.dumps(kafka_bootstrap),
                'resource = "job_lifecycle"': f'resource = "{jobs}"',
                'resource = "users"': f'resource = "{coll}"',
                'resource = "users-topic"': f'resource = "{topic}"',
            },
        )
    )
    source = mongo["etl"][coll]
    log = tmp_path / "mstream.log"
    consumer: Any = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=200
    )
    consumer.subscribe([topic])
    received: list[dict[str, Any]] = []

    def poll() -> list[dict[str, Any]]:
        for batch in consumer.poll(timeout_ms=200).values():
            received.extend(json.loads(m.value) for m in batch)
        return received

    proc = _start(config, log)
    running = _running(proc, log)
    try:
        probes = iter(range(10_000))

        def probe_arrived() -> bool:  # a source without a checkpoint starts at *now*
            source.insert_one({"_id": f"probe-{next(probes)}"})
            return any(str(d["_id"]).startswith("probe-") for d in poll())

        wait_for(lambda: running(probe_arrived), 60, "a probe document on the topic")
        users = [{"_id": i, "name": f"user-{i}", "email": f"u{i}@example.com"} for i in range(N)]
        source.insert_many(users)

        def all_users() -> bool:
            return len([d for d in poll() if isinstance(d["_id"], int)]) >= N

        wait_for(lambda: running(all_users), 60, f"{N} users on the topic")
    finally:
        consumer.close()
        _stop(proc, log)
    assert (
        sorted((d for d in received if isinstance(d["_id"], int)), key=lambda d: d["_id"]) == users
    )


# -- schema documents in MongoDB -------------------------------------------------------

USER_AVRO = {
    "type": "record",
    "name": "User",
    "fields": [{"name": "email", "type": "string"}, {"name": "age", "type": "int"}],
}
USER_JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "email": {"type": "string", "format": "email"},
        "age": {"type": "integer", "minimum": 0},
        "address": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
    "required": ["email", "age"],
}


@pytest.fixture
def schema_collection() -> Iterator[Callable[[str | None], None]]:
    """``install_schema_collection``, put back to the default after the test."""
    yield install_schema_collection
    install_schema_collection(None)


def _mongo_service(uri: str) -> dict[str, Any]:
    return {"name": "registry", "provider": "mongodb", "connection_string": uri, "db_name": DB}


@pytest.mark.mongodb
def test_schema_documents_in_the_originals_form(
    mongodb_uri: str,
    mongo: Any,
    unique_name: str,
    schema_collection: Callable[[str | None], None],
) -> None:
    saved, moved = f"{unique_name}-schemas", f"{unique_name}-moved"
    mongo[DB]["schemas"].insert_many(
        [
            {
                "id": f"{unique_name}-1",
                "name": f"user-{unique_name}",
                "encoding": "avro",
                "definition": json.dumps(USER_AVRO),
            },
            {
                "id": f"{unique_name}-2",
                "encoding": "json",
                "definition": json.dumps(USER_JSON_SCHEMA),
            },
            {"id": f"{unique_name}-3", "encoding": "bson", "definition": "{}"},
            {"id": f"{unique_name}-4", "definition": "{}"},
        ]
    )
    mongo[DB][saved].insert_one(
        {"id": moved, "encoding": "avro", "definition": json.dumps(USER_AVRO)}
    )
    loader = get_provider("mongodb").schema_loader
    assert loader is not None
    registry = parse_config({"services": [_mongo_service(mongodb_uri)]}).services[0]
    avro = AvroSchema.parse(USER_AVRO)
    assert loader(registry, f"{unique_name}-1") == avro  # matched on id
    assert loader(registry, f"user-{unique_name}") == avro  # matched on name
    json_schema = loader(registry, f"{unique_name}-2")
    assert isinstance(json_schema, JsonSchema) and json_schema.raw == USER_JSON_SCHEMA
    for resource, expected in [
        (f"{unique_name}-3", "encoding 'bson' is not a schema language"),
        (f"{unique_name}-4", "the document has no 'encoding' field"),
        (moved, f"no document with id or name '{moved}' in 'schemas'"),
    ]:
        with pytest.raises(ConfigError, match=expected):
            loader(registry, resource)

    # [system.schemas].resource names the collection, installed by the job manager
    config = parse_config(
        {
            "services": [_mongo_service(mongodb_uri)],
            "system": {"schemas": {"service_name": "registry", "resource": saved}},
        }
    )
    manager = JobManager(config, Stores.in_memory())
    manager.close()
    manager.control.close()
    assert loader(registry, moved) == avro
    with pytest.raises(
        ConfigError, match=f"no document with id or name '{unique_name}-1' in '{saved}'"
    ):
        loader(registry, f"{unique_name}-1")


def _lines(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.mongodb
def test_json_schema_validates_projects_and_dead_letters_with_the_path(
    mongodb_uri: str,
    mongo: Any,
    unique_name: str,
    tmp_path: Path,
    schema_collection: Callable[[str | None], None],
) -> None:
    collection = f"{unique_name}-schemas"
    mongo[DB][collection].insert_one(
        {"id": "user", "encoding": "json", "definition": json.dumps(USER_JSON_SCHEMA)}
    )
    events = [
        {
            "email": "a@example.com",
            "age": 30,
            "pin": "1234",
            "address": {"city": "Oslo", "zip": "1"},
        },
        {"email": "b@example.com", "age": "forty"},
        {"email": "c@example.com", "age": -1},
        {"email": "not an email", "age": 5},  # format is an annotation in 2020-12
        {"age": 7},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    jobs = run_config(
        {
            "services": [
                _mongo_service(mongodb_uri),
                {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
            ],
            "system": {"schemas": {"service_name": "registry", "resource": collection}},
            "connectors": [
                {
                    "name": "users",
                    "schemas": [{"id": "u", "service_name": "registry", "resource": "user"}],
                    "source": {
                        "service_name": "files",
                        "resource": "in.jsonl",
                        "output_encoding": "json",
                        "schema_id": "u",
                    },
                    "sinks": [
                        {
                            "service_name": "files",
                            "resource": "out.jsonl",
                            "output_encoding": "bson",
                        }
                    ],
                    "dead_letter": {"service_name": "files", "resource": "dead.jsonl"},
                }
            ],
        },
        timeout=60,
    )
    try:
        job = jobs.get("users")
        assert job.state == "completed", job.reason
        counters = job.counters
    finally:
        jobs.close()
    out = [
        decode(base64.b64decode(line), "bson")
        for line in (tmp_path / "out.jsonl").read_text().split()
    ]
    assert out == [
        {"email": "a@example.com", "age": 30, "address": {"city": "Oslo"}},
        {"email": "not an email", "age": 5},
    ]
    dead = _lines(tmp_path / "dead.jsonl")
    assert [(d["stage"], d["reason"]) for d in dead] == [
        ("validate", "schema 'user': at /age: must be integer"),
        ("validate", "schema 'user': at /age: must be bigger than or equal to 0"),
        ("validate", "schema 'user': at the document root: must contain ['email'] properties"),
    ]
    assert [d["payload"] for d in dead] == events[1:3] + events[4:]
    assert counters.dead_lettered == 3 and counters.events_out == 2


@pytest.mark.mongodb
def test_avro_output_with_a_json_schema_fails_the_job_at_start(
    mongodb_uri: str,
    mongo: Any,
    unique_name: str,
    tmp_path: Path,
    schema_collection: Callable[[str | None], None],
) -> None:
    mongo[DB]["schemas"].insert_one(
        {"id": unique_name, "encoding": "json", "definition": json.dumps(USER_JSON_SCHEMA)}
    )
    (tmp_path / "in.jsonl").write_text('{"email": "a@example.com", "age": 1}\n')
    jobs = run_config(
        {
            "services": [
                _mongo_service(mongodb_uri),
                {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
            ],
            "connectors": [
                {
                    "name": "to-avro",
                    "schemas": [{"id": "u", "service_name": "registry", "resource": unique_name}],
                    "source": {
                        "service_name": "files",
                        "resource": "in.jsonl",
                        "output_encoding": "json",
                    },
                    "sinks": [
                        {
                            "service_name": "files",
                            "resource": "out.jsonl",
                            "output_encoding": "avro",
                            "schema_id": "u",
                        }
                    ],
                }
            ],
        },
        timeout=60,
    )
    try:
        job = jobs.get("to-avro")
        assert job.state == "failed"
        assert "avro output of files needs an Avro schema; schema" in (job.reason or "")
        assert "is a JSON Schema" in (job.reason or "")
    finally:
        jobs.close()
    assert _lines(tmp_path / "out.jsonl") == []
