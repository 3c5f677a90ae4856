"""Encodings: every conversion pair, Extended JSON, Avro validation, batches, schema inheritance."""

from __future__ import annotations

import copy
import doctest
import importlib
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import bson
import orjson
import pytest
from bson.binary import Binary
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId

from mstream.encodings import (
    ENCODINGS,
    AvroSchema,
    convert,
    decode,
    decode_batch,
    encode,
    encode_batch,
    resolve_step_schemas,
)
from mstream.errors import ConfigError, DecodeError, EncodeError, SchemaValidationError

OID = ObjectId("65a1b2c3d4e5f60718293a4b")
AT = datetime(2024, 5, 1, 12, 30, 45, 123000, tzinfo=UTC)

RICH_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "_id", "type": {"type": "string", "logicalType": "object-id"}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {
            "name": "price",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 4},
        },
        {"name": "qty", "type": "long"},
        {"name": "small", "type": "int"},
        {"name": "ratio", "type": "double"},
        {"name": "blob", "type": "bytes"},
        {"name": "ok", "type": "boolean"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {
            "name": "customer",
            "type": {
                "type": "record",
                "name": "Customer",
                "fields": [
                    {"name": "name", "type": "string"},
                    {"name": "tags", "type": {"type": "array", "items": "string"}},
                ],
            },
        },
        {
            "name": "lines",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Line",
                    "fields": [
                        {"name": "sku", "type": "string"},
                        {"name": "n", "type": "long"},
                        {
                            "name": "seen",
                            "type": {"type": "long", "logicalType": "timestamp-millis"},
                        },
                    ],
                },
            },
        },
        {"name": "attrs", "type": {"type": "map", "values": "string"}},
    ],
}


def rich_doc() -> dict[str, Any]:
    """A document with every MongoDB type, nested records, arrays and a map."""
    return {
        "_id": OID,
        "at": AT,
        "price": Decimal128("12.3400"),
        "qty": Int64(2**40),
        "small": 7,
        "ratio": 0.25,
        "blob": b"\x00\x01\xff",
        "ok": True,
        "note": None,
        "customer": {"name": "Ada", "tags": ["vip", "eu"]},
        "lines": [
            {"sku": "A-1", "n": Int64(2), "seen": AT + timedelta(seconds=1)},
            {"sku": "B-2", "n": Int64(3), "seen": AT},
        ],
        "attrs": {"source": "web"},
    }


@pytest.fixture(scope="module")
def schema() -> AvroSchema:
    return AvroSchema.parse(RICH_SCHEMA, name="orders")


def assert_mongo_types(doc: dict[str, Any], *, int64: bool = True) -> None:
    """MongoDB types survived; JSON keeps Int64 values but not their width (by design)."""
    assert type(doc["_id"]) is ObjectId
    assert isinstance(doc["at"], datetime) and doc["at"].utcoffset() == timedelta(0)
    assert type(doc["price"]) is Decimal128
    assert type(doc["qty"]) is (Int64 if int64 else int)
    assert isinstance(doc["blob"], bytes)
    assert isinstance(doc["lines"][0]["seen"], datetime)


# ----------------------------------------------------------------------- conversion pairs

PAIRS = [(s, t) for s in ENCODINGS for t in ENCODINGS]


def test_nine_pairs() -> None:
    assert len(PAIRS) == 9


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_convert_every_pair_keeps_values_and_types(
    source: str, target: str, schema: AvroSchema
) -> None:
    doc = rich_doc()
    payload = encode(doc, source, schema)
    converted = convert(payload, source, target, schema)
    out = decode(converted, target, schema)
    assert out == doc
    assert_mongo_types(out, int64=target != "json")
    if source == target:
        assert converted is payload  # passthrough: the very same bytes


@pytest.mark.parametrize(("source", "target"), [(s, t) for s, t in PAIRS if "avro" not in (s, t)])
def test_convert_without_schema_nested_lists(source: str, target: str) -> None:
    doc = {
        "_id": OID,
        "deep": {"list": [1, "two", [AT, {"d": Decimal128("-0.5")}], None, True, 2.5]},
        "bin": Binary(b"\x10\x20", 5),
        "uuid": Binary(uuid.UUID(int=1).bytes, 4),
        "big": Int64(-(2**62)),
    }
    out = decode(convert(encode(doc, source), source, target), target)
    assert out == doc
    assert type(out["bin"]) is Binary and out["bin"].subtype == 5
    assert out["uuid"].subtype == 4


def test_small_int64_width_is_not_kept_by_relaxed_json() -> None:
    """Documented choice: Int64 is a plain JSON number; the value is kept, not the width."""
    payload = encode({"small": Int64(5), "big": Int64(2**40)}, "json")
    assert payload == b'{"small":5,"big":1099511627776}'
    back = decode(convert(payload, "json", "bson"), "bson")
    assert back == {"small": 5, "big": 2**40}
    assert type(back["small"]) is int and type(back["big"]) is Int64
    forced = decode(convert(b'{"n": {"$numberLong": "5"}}', "json", "bson"), "bson")
    assert type(forced["n"]) is Int64


# ---------------------------------------------------------------------------- JSON specifics


def test_json_extended_forms() -> None:
    doc = {
        "_id": OID,
        "at": AT,
        "old": datetime(1960, 1, 1, tzinfo=UTC),
        "price": Decimal128("1.10"),
        "dec": Decimal("2.5"),
        "blob": b"hi",
    }
    out = orjson.loads(encode(doc, "json"))
    assert out == {
        "_id": {"$oid": "65a1b2c3d4e5f60718293a4b"},
        "at": {"$date": "2024-05-01T12:30:45.123Z"},
        "old": {
            "$date": {
                "$numberLong": str(
                    int((doc["old"] - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)
                )
            }
        },
        "price": {"$numberDecimal": "1.10"},
        "dec": {"$numberDecimal": "2.5"},
        "blob": {"$binary": {"base64": "aGk=", "subType": "00"}},
    }
    back = decode(encode(doc, "json"), "json")
    assert back["old"] == doc["old"] and back["dec"] == Decimal128("2.5")


def test_json_dates_are_utc_with_millisecond_precision() -> None:
    plus2 = datetime(2024, 1, 1, 14, 0, 0, 456789, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2024, 1, 1, 12, 0)
    payload = encode({"a": plus2, "b": naive}, "json")
    assert payload == (
        b'{"a":{"$date":"2024-01-01T12:00:00.456Z"},"b":{"$date":"2024-01-01T12:00:00.000Z"}}'
    )
    back = decode(b'{"a": {"$date": "2024-01-01T14:00:00+02:00"}, "b": {"$date": 0}}', "json")
    assert back["a"] == datetime(2024, 1, 1, 12, tzinfo=UTC) and back["a"].tzinfo is UTC
    assert back["b"] == datetime(1970, 1, 1, tzinfo=UTC)


def test_json_reads_canonical_and_legacy_forms() -> None:
    payload = (
        b'{"i": {"$numberInt": "3"}, "l": {"$numberLong": "4"}, "d": {"$numberDouble": "NaN"},'
        b' "b": {"$binary": "aGk=", "$type": "05"},'
        b' "u": {"$uuid": "00000000-0000-0000-0000-000000000001"},'
        b' "ts": {"$timestamp": {"t": 1, "i": 2}}, "dt": {"$date": {"$numberLong": "1000"}}}'
    )
    doc = decode(payload, "json")
    assert doc["i"] == 3 and type(doc["l"]) is Int64 and doc["d"] != doc["d"]
    assert doc["b"] == Binary(b"hi", 5)
    assert doc["u"] == Binary(uuid.UUID(int=1).bytes, 4)
    assert doc["ts"] == bson.Timestamp(1, 2)
    assert doc["dt"] == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_json_plain_and_dollar_keys_that_are_not_wrappers() -> None:
    plain = b'{"a": [1, 2, {"b": "x"}], "c": null}'
    assert decode(plain, "json") == orjson.loads(plain)
    update = decode(b'{"$set": {"n": 1}, "q": {"$oid": "x", "extra": 1}}', "json")
    assert update == {"$set": {"n": 1}, "q": {"$oid": "x", "extra": 1}}


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b'{"a": 1', "invalid JSON"),
        (b"", "invalid JSON"),
        (b'{"_id": {"$oid": "nothex"}}', "$oid"),
        (b'{"at": {"$date": "yesterday"}}', "$date"),
        (b'{"p": {"$numberDecimal": 5}}', "$numberDecimal"),
        (b'{"b": {"$binary": {"base64": "!!", "subType": "00"}}}', "$binary"),
    ],
)
def test_json_bad_payloads(payload: bytes, needle: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(payload, "json")
    assert str(info.value).startswith("json: ")
    assert needle in str(info.value)
    assert info.value.stage == "decode"


def test_json_unencodable_value() -> None:
    with pytest.raises(EncodeError, match="json: cannot encode"):
        encode({"x": object()}, "json")


# ----------------------------------------------------------------------------- BSON specifics


def test_bson_bad_payloads() -> None:
    good = encode({"a": 1, "b": "two"}, "bson")
    for bad in (good[:-3], good + b"\x00", b"\x01\x02", b""):
        with pytest.raises(DecodeError, match="bson: invalid BSON"):
            decode(bad, "bson")


def test_bson_needs_a_document() -> None:
    with pytest.raises(EncodeError, match="must be an object"):
        encode([1, 2], "bson")
    with pytest.raises(EncodeError, match="bson: cannot encode"):
        encode({"x": object()}, "bson")


def test_bson_accepts_decimal_and_uuid() -> None:
    out = decode(encode({"d": Decimal("1.5"), "u": uuid.UUID(int=7)}, "bson"), "bson")
    assert out == {"d": Decimal128("1.5"), "u": Binary(uuid.UUID(int=7).bytes, 4)}


# ----------------------------------------------------------------------------- Avro specifics


def test_avro_needs_a_schema() -> None:
    with pytest.raises(DecodeError, match="needs a schema"):
        decode(b"\x02", "avro")
    with pytest.raises(EncodeError, match="needs a schema"):
        encode({"a": 1}, "avro")
    with pytest.raises(EncodeError, match="needs a schema"):
        convert(b"{}", "json", "avro")


def test_avro_to_avro_validates_with_schema(schema: AvroSchema) -> None:
    payload = encode(rich_doc(), "avro", schema)
    assert convert(payload, "avro", "avro", schema) is payload
    with pytest.raises(DecodeError, match=r"schema 'orders'.*cannot decode"):
        convert(payload[:10], "avro", "avro", schema)
    with pytest.raises(DecodeError, match="trailing bytes"):
        convert(payload + b"\x00\x00", "avro", "avro", schema)
    # without a schema it is a plain passthrough
    assert convert(b"junk", "avro", "avro") == b"junk"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(qty="many"), "field 'qty': expected long, got str 'many'"),
        (lambda d: d.pop("ok"), "field 'ok': expected boolean, got nothing (the field is missing)"),
        (
            lambda d: d["customer"]["tags"].append(3),
            "field 'customer.tags[2]': expected string, got int 3",
        ),
        (
            lambda d: d["lines"][1].update(n=True),
            "field 'lines[1].n': expected long, got bool True",
        ),
        (
            lambda d: d.update(_id="zz"),
            "field '_id': expected ObjectId (24 hex characters), got str 'zz'",
        ),
        (
            lambda d: d.update(small=2**31),
            "field 'small': expected int (32-bit), got int 2147483648",
        ),
        (lambda d: d.update(price=Decimal("1.23456")), "at most 4 decimal places"),
        (lambda d: d.update(note=5), "field 'note': expected null or string, got int 5"),
        (
            lambda d: d.update(customer=[]),
            "field 'customer': expected record shop.Customer (an object)",
        ),
        (lambda d: d["attrs"].update(k=1), "field 'attrs.k': expected string, got int 1"),
        (lambda d: d.update(at="not a date"), "field 'at': expected timestamp-millis"),
    ],
)
def test_avro_validation_messages(schema: AvroSchema, mutate: Any, message: str) -> None:
    doc = rich_doc()
    mutate(doc)
    with pytest.raises(SchemaValidationError) as info:
        schema.validate(doc)
    assert str(info.value).startswith("schema 'orders': ")
    assert message in str(info.value)
    assert info.value.stage == "validate"
    with pytest.raises(SchemaValidationError):
        encode(doc, "avro", schema)
    with pytest.raises(SchemaValidationError):
        convert(encode(doc, "json"), "json", "avro", schema)


def test_avro_document_not_a_record(schema: AvroSchema) -> None:
    with pytest.raises(SchemaValidationError, match=r"document: expected record shop\.Order"):
        schema.validate([1])


def test_avro_coercion_does_not_touch_the_input(schema: AvroSchema) -> None:
    doc = rich_doc()
    before = copy.deepcopy(doc)
    coerced = schema.coerce(doc)
    assert doc == before and type(doc["_id"]) is ObjectId
    assert coerced["_id"] == str(OID) and isinstance(coerced["price"], Decimal)
    plain = {"name": "x", "tags": []}
    customer = AvroSchema.parse(RICH_SCHEMA["fields"][9]["type"])
    assert customer.coerce(plain) is plain  # nothing to convert: no copy


def test_avro_coerces_loose_inputs() -> None:
    loose = AvroSchema.parse(
        {
            "type": "record",
            "name": "L",
            "fields": [
                {"name": "s", "type": "string"},
                {"name": "n", "type": "long"},
                {"name": "f", "type": "double"},
                {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {
                    "name": "d",
                    "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2},
                },
            ],
        }
    )
    doc = {"s": OID, "n": 3.0, "f": Decimal128("0.5"), "t": "2024-05-01T12:30:45.123Z", "d": "1.5"}
    out = loose.decode(loose.encode(doc))
    assert out == {"s": str(OID), "n": 3, "f": 0.5, "t": AT, "d": Decimal128("1.50")}
    with pytest.raises(SchemaValidationError, match="at most 6 digits"):
        loose.validate({**doc, "d": Decimal("12345.6")})


def test_avro_object_id_without_marker_stays_a_string() -> None:
    plain = AvroSchema.parse(
        {"type": "record", "name": "P", "fields": [{"name": "_id", "type": "string"}]}
    )
    payload = convert(encode({"_id": OID}, "json"), "json", "avro", plain)
    assert decode(payload, "avro", plain) == {"_id": str(OID)}
    assert convert(payload, "avro", "json", plain) == b'{"_id":"65a1b2c3d4e5f60718293a4b"}'


def test_avro_unions_and_recursive_schema() -> None:
    tree = AvroSchema.parse(
        {
            "type": "record",
            "name": "Node",
            "fields": [
                {"name": "id", "type": ["null", {"type": "string", "logicalType": "object-id"}]},
                {"name": "v", "type": ["null", "long", "string", "double"]},
                {"name": "kids", "type": {"type": "array", "items": "Node"}, "default": []},
            ],
        }
    )
    doc = {
        "id": OID,
        "v": Int64(9),
        "kids": [{"id": None, "v": "x", "kids": [{"id": OID, "v": 1.5, "kids": []}]}],
    }
    out = tree.decode(tree.encode(doc))
    assert out == doc
    assert type(out["v"]) is Int64 and type(out["kids"][0]["kids"][0]["id"]) is ObjectId
    with pytest.raises(SchemaValidationError, match=r"field 'kids\[0\].kids\[0\].v'"):
        tree.validate({"id": None, "v": 1, "kids": [{"kids": [{"v": [1]}]}]})


def test_avro_schema_parse_errors_name_the_schema() -> None:
    with pytest.raises(ConfigError, match=r"Avro schema 'users\.avsc' is not valid JSON"):
        AvroSchema.parse("{nope", name="users.avsc")
    with pytest.raises(
        ConfigError, match=r"Avro schema 'users\.avsc' is invalid: unknown type 'strng'"
    ):
        AvroSchema.parse(
            {"type": "record", "name": "U", "fields": [{"name": "a", "type": "strng"}]},
            name="users.avsc",
        )
    with pytest.raises(ConfigError, match="Avro schema 'x' is invalid"):
        AvroSchema.parse(b'{"type": "enum", "name": "E"}', name="x")


def test_avro_schema_identity() -> None:
    a = AvroSchema.parse(RICH_SCHEMA, name="a")
    b = AvroSchema.parse(orjson.dumps(RICH_SCHEMA).decode(), name="b")
    c = AvroSchema.parse({"type": "record", "name": "Other", "fields": []})
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    assert a == b and hash(a) == hash(b) and a != c
    assert a.raw == RICH_SCHEMA and a.parsed["name"] == "shop.Order"


def test_unknown_encoding_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown encoding 'xml'"):
        decode(b"{}", "xml")
    with pytest.raises(ConfigError, match="unknown encoding 'xml'"):
        encode({}, "xml")
    with pytest.raises(ConfigError, match="unknown encoding 'xml'"):
        convert(b"{}", "xml", "xml")


# ---------------------------------------------------------------------------------- batches


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_batch_round_trip(encoding: str, schema: AvroSchema) -> None:
    docs = [rich_doc(), {**rich_doc(), "_id": ObjectId("65a1b2c3d4e5f60718293a4c"), "note": "x"}]
    payload = encode_batch(docs, encoding, schema)
    out = decode_batch(payload, encoding, schema)
    assert out == docs
    for doc in out:
        assert_mongo_types(doc, int64=encoding != "json")
    assert decode_batch(encode_batch([], encoding, schema), encoding, schema) == []


def test_batch_layouts(schema: AvroSchema) -> None:
    assert encode_batch([{"n": 1}, {"n": 2}], "json") == b'[{"n":1},{"n":2}]'
    assert decode(encode_batch([{"n": 1}], "bson"), "bson") == {"items": [{"n": 1}]}
    array = AvroSchema.parse({"type": "array", "items": RICH_SCHEMA})
    assert array.decode(encode_batch([rich_doc()], "avro", schema)) == [rich_doc()]


def test_batch_errors(schema: AvroSchema) -> None:
    with pytest.raises(DecodeError, match="must be a JSON array"):
        decode_batch(b'{"n": 1}', "json")
    with pytest.raises(DecodeError, match=re.escape('must be the document {"items"')):
        decode_batch(encode({"n": 1}, "bson"), "bson")
    bad = rich_doc()
    bad["qty"] = "x"
    with pytest.raises(SchemaValidationError, match=r"field '\[1\].qty': expected long"):
        encode_batch([rich_doc(), bad], "avro", schema)
    with pytest.raises(EncodeError, match="needs a schema"):
        encode_batch([{}], "avro")
    with pytest.raises(DecodeError, match="needs a schema"):
        decode_batch(b"\x00", "avro")
    with pytest.raises(DecodeError):
        decode_batch(encode(rich_doc(), "avro", schema), "avro", schema)


# ------------------------------------------------------------------------ schema inheritance


@pytest.mark.parametrize(
    ("declared", "effective"),
    [
        ([], []),
        ([None, None, None], [None, None, None]),
        (["s1", None, None], ["s1", "s1", "s1"]),
        (["s1", None, "s2", None], ["s1", "s1", "s2", "s2"]),
        ([None, "s2", None], [None, "s2", "s2"]),
        (["s1", "s1", None, "s3"], ["s1", "s1", "s1", "s3"]),
    ],
)
def test_resolve_step_schemas(declared: list[str | None], effective: list[str | None]) -> None:
    assert resolve_step_schemas(declared) == effective


# ---------------------------------------------------------------------------------- doctests

MODULES = [
    "mstream.encodings",
    "mstream.encodings.types",
    "mstream.encodings.extjson",
    "mstream.encodings.bsoncodec",
    "mstream.encodings.dec128",
    "mstream.encodings.avro_plans",
    "mstream.encodings.avro",
    "mstream.encodings.codec",
    "mstream.encodings.schemas",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
