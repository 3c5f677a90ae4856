"""Schemas in the workbench: CRUD on MongoDB and Pub/Sub services, fill and convert."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
import requests
from fastavro import parse_schema
from fastavro.validation import validate

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.service import ServiceOptions
from tests.test_pubsub import PROJECT, Emulator
from tests.test_pubsub import emulator as emulator  # the fixture

JSON = {"Content-Type": "application/json"}
USER_AVRO = {
    "type": "record",
    "name": "User",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "email", "type": ["null", "string"], "default": None},
        {"name": "tier", "type": {"type": "enum", "name": "Tier", "symbols": ["gold", "silver"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ],
}


def call(method: str, url: str, body: Any = None, status: int = 200) -> Any:
    answer = requests.request(
        method, url, data=None if body is None else json.dumps(body), headers=JSON, timeout=30
    )
    assert answer.status_code == status, answer.text
    return answer.json() if answer.content else None


@pytest.fixture
def svc(mongodb_uri: str, emulator: Emulator, unique_name: str, tmp_path: Path) -> Any:
    config = parse_config(
        {
            "system": {
                "data_dir": str(tmp_path / "data"),
                "schemas": {
                    "service_name": "mongo",
                    "resource": f"schemas_{unique_name.replace('-', '_')}",
                },
            },
            "services": [
                {
                    "name": "mongo",
                    "provider": "mongodb",
                    "connection_string": mongodb_uri,
                    "db_name": "mstream_tests",
                },
                {"name": "ps", "provider": "pubsub", "project_id": PROJECT},
                {"name": "gen", "provider": "generator"},
            ],
        },
        str(tmp_path / "t.toml"),
        {},
    )
    with ServiceThread(config, ServiceOptions(api_port=0, data_dir=tmp_path / "data")) as service:
        yield service


def test_schema_crud_on_mongodb_and_pubsub(svc: ServiceThread, unique_name: str) -> None:
    base = f"{svc.url}/services"
    saved = call(
        "POST",
        f"{base}/mongo/schemas",
        {"name": "user", "encoding": "avro", "definition": USER_AVRO},
        201,
    )
    assert saved["id"] and json.loads(saved["definition"]) == USER_AVRO
    listed = call("GET", f"{base}/mongo/schemas")["schemas"]
    assert {"id": saved["id"], "name": "user", "encoding": "avro"} in listed
    assert call("GET", f"{base}/mongo/schemas/user")["id"] == saved["id"]  # by name too
    json_schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
    call(
        "POST",
        f"{base}/mongo/schemas",
        {"name": "age", "encoding": "json", "definition": json_schema},
        201,
    )
    bad = call(
        "POST",
        f"{base}/mongo/schemas",
        {"name": "x", "encoding": "avro", "definition": {"type": "nope"}},
        400,
    )
    assert "definition" in bad["error"]["message"]
    call("DELETE", f"{base}/mongo/schemas/{saved['id']}", status=204)
    call("GET", f"{base}/mongo/schemas/{saved['id']}", status=404)

    name = f"user-{unique_name}"
    created = call(
        "POST",
        f"{base}/ps/schemas",
        {"name": name, "encoding": "avro", "definition": USER_AVRO},
        201,
    )
    assert created["id"] == name
    assert any(s["id"] == name for s in call("GET", f"{base}/ps/schemas")["schemas"])
    assert json.loads(call("GET", f"{base}/ps/schemas/{name}")["definition"])["name"] == "User"
    call(
        "POST",
        f"{base}/ps/schemas",
        {"name": name, "encoding": "avro", "definition": USER_AVRO},
        409,
    )
    call("DELETE", f"{base}/ps/schemas/{name}", status=204)
    call("GET", f"{base}/gen/schemas", status=400)


def test_fill_gives_valid_events_and_convert_round_trips(svc: ServiceThread) -> None:
    events = call(
        "POST", f"{svc.url}/schema/fill", {"encoding": "avro", "definition": USER_AVRO, "count": 20}
    )["events"]
    parsed = parse_schema(USER_AVRO)
    assert len(events) == 20 and all(validate(e, parsed) for e in events)
    assert (
        events
        == call(
            "POST",
            f"{svc.url}/schema/fill",
            {"encoding": "avro", "definition": USER_AVRO, "count": 20},
        )["events"]
    )

    as_json = call(
        "POST", f"{svc.url}/schema/convert", {"from": "avro", "to": "json", "definition": USER_AVRO}
    )["definition"]
    assert as_json["required"] == ["id", "tier", "tags"] and as_json["properties"]["tier"] == {
        "enum": ["gold", "silver"]
    }
    check = fastjsonschema.compile({k: v for k, v in as_json.items() if k != "$schema"})
    for event in events:
        check(event)
    filled = call(
        "POST", f"{svc.url}/schema/fill", {"encoding": "json", "definition": as_json, "count": 5}
    )["events"]
    for event in filled:
        check(event)
    back = call(
        "POST",
        f"{svc.url}/schema/convert",
        {"from": "json", "to": "avro", "definition": as_json, "name": "User"},
    )["definition"]
    assert all(validate(e, parse_schema(back)) for e in events)

    assert (
        "count"
        in call(
            "POST", f"{svc.url}/schema/fill", {"definition": USER_AVRO, "count": 1000}, status=400
        )["error"]["fields"]
    )
    refused = call(
        "POST",
        f"{svc.url}/schema/convert",
        {
            "from": "json",
            "to": "avro",
            "definition": {"type": "object", "properties": {"a": {"type": ["string", "integer"]}}},
        },
        status=400,
    )
    assert "/a" in refused["error"]["message"]
