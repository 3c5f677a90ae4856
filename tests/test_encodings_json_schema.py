"""JSON Schema entries: drafts, the 2019-09 / 2020-12 translation, projection, MongoDB values,
and where the pipeline applies them (as the original does)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import bson
import pytest
import reactivex
from bson import Decimal128, Int64, ObjectId

from mstream import operators as ops
from mstream.core import Batch, Event
from mstream.encodings import AvroSchema, JsonSchema, encode, parse_schema
from mstream.encodings.json_schema import json_view
from mstream.errors import ConfigError, SchemaValidationError
from mstream.providers.base import Middleware


def problem(schema: dict[str, Any], doc: Any) -> str | None:
    """The validation error's text, or None when ``doc`` is valid."""
    try:
        JsonSchema.parse(schema, name="s").validate(doc)
    except SchemaValidationError as exc:
        return str(exc)
    return None


def refusal(schema: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        JsonSchema.parse(schema, name="s")
    return str(info.value)


def test_draft_is_read_from_schema_and_defaults_to_2020_12() -> None:
    assert JsonSchema.parse({}).draft == "2020-12"
    for uri, draft in [
        ("http://json-schema.org/draft-04/schema#", "draft-04"),
        ("http://json-schema.org/draft-06/schema#", "draft-06"),
        ("http://json-schema.org/draft-07/schema#", "draft-07"),
        ("https://json-schema.org/draft/2019-09/schema", "2019-09"),
        ("https://json-schema.org/draft/2020-12/schema", "2020-12"),
    ]:
        assert JsonSchema.parse({"$schema": uri}).draft == draft
    assert "unknown $schema 'urn:x'" in refusal({"$schema": "urn:x"})


def test_2020_12_keywords_keep_their_meaning() -> None:
    # $ref with siblings: both apply (draft 7 would ignore the siblings)
    ref = {
        "$defs": {"n": {"type": "integer"}},
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/n", "minimum": 5}},
    }
    assert problem(ref, {"a": 1}) == "schema 's': at /a: must be bigger than or equal to 5"
    assert problem(ref, {"a": "x"}) == "schema 's': at /a: must be integer"
    assert problem(ref, {"a": 7}) is None
    # prefixItems / items
    tuple_ = {"type": "array", "prefixItems": [{"type": "integer"}], "items": False}
    assert problem(tuple_, [1]) is None
    assert problem(tuple_, [1, 2]) is not None
    assert problem(tuple_, ["x"]) == "schema 's': at /0: must be integer"
    # dependentRequired / dependentSchemas
    dependent = {
        "type": "object",
        "properties": {"a": {}, "b": {}},
        "dependentRequired": {"a": ["b"]},
        "dependentSchemas": {"b": {"required": ["c"]}},
    }
    assert (
        problem(dependent, {"a": 1})
        == "schema 's': at the document root: missing dependency b for a"
    )
    assert problem(dependent, {"a": 1, "b": 2}) is not None
    assert problem(dependent, {"a": 1, "b": 2, "c": 3}) is None
    # format is an annotation in 2019-09 / 2020-12 (as in the original), asserted in draft 7
    email = {"type": "object", "properties": {"e": {"type": "string", "format": "email"}}}
    assert problem(email, {"e": "nope"}) is None
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", **email}
    assert problem(draft7, {"e": "nope"}) == "schema 's': at /e: must be email"


def test_keywords_without_a_draft_7_equivalent_are_refused_not_ignored() -> None:
    for keyword, value in [
        ("unevaluatedProperties", False),
        ("minContains", 1),
        ("$dynamicRef", "#x"),
        ("$anchor", "x"),
    ]:
        found = refusal({"type": "object", "properties": {"a": {keyword: value}}})
        assert f"keyword {keyword!r} at #/properties/a/{keyword} has no draft-7 equivalent" in found
    assert "'items' at #/items is a list; 2020-12 uses prefixItems" in refusal(
        {"type": "array", "items": [{"type": "string"}]}
    )
    assert "'dependencies' at #/dependencies is not a 2020-12 keyword" in refusal(
        {"dependencies": {"a": ["b"]}}
    )
    assert "only references inside the schema" in refusal({"$ref": "https://example.com/s"})
    assert "cannot compile it" in refusal({"type": "strng"})
    with pytest.raises(ConfigError, match="must be a JSON object, got list"):
        JsonSchema.parse("[]")
    # in draft 7 itself, items lists and dependencies are draft-7 keywords
    draft7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "array",
        "items": [{"type": "string"}],
        "additionalItems": False,
    }
    assert problem(draft7, ["a"]) is None and problem(draft7, ["a", "b"]) is not None


def test_projection_keeps_listed_properties_and_refuses_what_the_original_cannot_project() -> None:
    schema = JsonSchema.parse(
        {
            "type": "object",
            "properties": {
                "a": {"type": "object", "properties": {"x": {}}},
                "l": {"type": "array", "items": {"type": "object", "properties": {"k": {}}}},
                "free": {},
            },
        }
    )
    doc = {"a": {"x": 1, "y": 2}, "l": [{"k": 1, "z": 0}], "free": {"any": 1}, "drop": True}
    assert schema.project(doc) == {"a": {"x": 1}, "l": [{"k": 1}], "free": {"any": 1}}
    same = {"a": {"x": 1}, "free": 2}
    assert schema.project(same) is same  # nothing dropped: no copy, no re-encoding
    with pytest.raises(SchemaValidationError, match="at /a: expected an object, got int"):
        schema.project({"a": 3})
    assert "#/properties/o says type object without a 'properties' table" in refusal(
        {"type": "object", "properties": {"o": {"type": "object"}}}
    )
    assert "# says type array without 'items'" in refusal({"type": "array"})
    untyped = JsonSchema.parse({"properties": {"a": {}}})  # no type: the original keeps all
    assert untyped.project({"a": 1, "b": 2}) == {"a": 1, "b": 2}


def test_mongodb_values_are_validated_as_the_originals_json_shows_them() -> None:
    oid = ObjectId("65a1b2c3d4e5f60718293a4b")
    at = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    doc = {
        "_id": oid,
        "at": at,
        "n": Int64(5),
        "price": Decimal128("1.10"),
        "raw": b"\x00\x01",
        "nan": float("nan"),
        "nested": [{"when": datetime(2024, 1, 1, tzinfo=UTC)}],
    }
    assert json_view(doc) == {
        "_id": "65a1b2c3d4e5f60718293a4b",
        "at": "2024-05-01T12:00:00.250Z",
        "n": 5,
        "price": "1.10",
        "raw": "AAE=",
        "nan": "NaN",
        "nested": [{"when": "2024-01-01T00:00:00Z"}],
    }
    plain = {"a": [1, "x", None, True, 2.5]}
    assert json_view(plain) is plain
    schema = {
        "type": "object",
        "properties": {
            "_id": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
            "n": {"type": "integer"},
        },
    }
    assert problem(schema, {"_id": oid, "n": Int64(1)}) is None
    assert problem(schema, {"_id": 7, "n": Int64(1)}) == "schema 's': at /_id: must be string"


def _run(operator: Any, events: list[Event]) -> tuple[list[Event], list[tuple[str, str]]]:
    rejected: list[tuple[str, str]] = []
    out: list[Event] = []
    reactivex.of(Batch.of(events, batched=False)).pipe(operator(rejected)).subscribe(
        lambda batch: out.extend(batch.events)
    )
    return out, rejected


USER = JsonSchema.parse(
    {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]},
    name="user",
)


def test_convert_validates_json_events_and_projects_every_event() -> None:
    events = [
        Event(b'{"age": 1, "pin": 7}', "json"),
        Event(b'{"age": "x"}', "json"),
        Event(encode({"age": "y", "pin": 1}, "bson"), "bson"),  # BSON: projected, not validated
        Event(b"\x00", "avro", schema=AvroSchema.parse('"int"')),
    ]
    out, rejected = _run(
        lambda bad: ops.convert("json", lambda e, r, s: bad.append((s, r)), schema=USER), events
    )
    assert [e.doc for e in out] == [{"age": 1}, {"age": "y"}]
    assert [e.payload for e in out] == [b'{"age":1}', b'{"age":"y"}']
    assert rejected == [
        ("validate", "schema 'user': at /age: must be integer"),
        ("validate", "schema 'user' is a JSON Schema; an Avro event needs an Avro schema"),
    ]


def test_a_json_schema_cannot_stand_for_an_avro_one() -> None:
    with pytest.raises(
        ConfigError, match="avro output needs an Avro schema; schema 'user' is a JSON Schema"
    ):
        ops.convert("avro", print, schema=USER)
    with pytest.raises(ConfigError, match="avro output of out needs an Avro schema"):
        ops.SinkTarget(None, "avro", USER, "out")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="avro input of a middleware needs an Avro schema"):
        ops.middleware(None, print, input_encoding="avro", input_schema=USER)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="encoding 'bson' is not a schema language"):
        parse_schema("{}", "bson", "b")


def test_a_middleware_is_sent_events_as_they_are() -> None:
    seen: list[Any] = []

    class Record(Middleware):
        def process(self, batch: Batch, reject: Any) -> list[Event]:
            seen.extend(e.doc for e in batch.events)
            return list(batch.events)

    out, rejected = _run(
        lambda bad: ops.middleware(
            Record(), lambda e, r, s: bad.append((s, r)), input_encoding="json", input_schema=USER
        ),
        [Event(b'{"age": "x", "pin": 1}', "json")],
    )
    assert seen == [{"age": "x", "pin": 1}] and rejected == [] and len(out) == 1


def test_bson_view_of_a_real_change_document() -> None:
    raw = bson.encode({"_id": ObjectId(), "when": datetime.now(UTC)})
    schema = {"type": "object", "properties": {"when": {"type": "string"}}, "required": ["_id"]}
    assert problem(schema, bson.decode(raw)) is None
