"""Property tests: round trips through JSON, BSON and Avro keep values and MongoDB types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bson.binary import Binary
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mstream.encodings import (
    ENCODINGS,
    AvroSchema,
    convert,
    decode,
    decode_batch,
    encode,
    encode_batch,
)
from mstream.encodings.dec128 import decimal128_str, from_decimal, to_decimal
from mstream.errors import DecodeError, SchemaValidationError
from tests.test_encodings import RICH_SCHEMA

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

object_ids = st.binary(min_size=12, max_size=12).map(ObjectId)

# BSON and Avro store milliseconds; JSON writes milliseconds too.
millis = st.integers(
    min_value=int(
        (datetime(1, 1, 2, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
    )
    * 1000,
    max_value=int(
        (datetime(9999, 12, 30, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
    )
    * 1000,
)
datetimes = millis.map(lambda ms: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))

decimal128s = st.one_of(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=4, min_value=-(10**15), max_value=10**15
    ),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "-0", "1E+10", "0.000001"]),
).map(lambda d: Decimal128(str(d)))

binaries = st.one_of(
    st.binary(max_size=32),
    st.builds(Binary, st.binary(max_size=16), st.sampled_from([3, 4, 5, 0x80])),
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    INT64,
    INT64.map(Int64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    object_ids,
    datetimes,
    decimal128s,
    binaries,
)

# Keys: no NUL (BSON), no leading "$" (Extended JSON wrappers), no "." needed to avoid.
keys = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=10,
).filter(lambda k: not k.startswith("$"))

values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=25,
)
documents = st.dictionaries(keys, values, max_size=8)


@SETTINGS
@given(values)
def test_json_round_trip(value: Any) -> None:
    assert decode(encode(value, "json"), "json") == value


@SETTINGS
@given(documents)
def test_bson_round_trip(doc: dict[str, Any]) -> None:
    assert decode(encode(doc, "bson"), "bson") == doc


@SETTINGS
@given(documents)
def test_json_bson_json_keeps_everything(doc: dict[str, Any]) -> None:
    as_json = encode(doc, "json")
    as_bson = convert(as_json, "json", "bson")
    assert decode(as_bson, "bson") == doc
    # BSON puts a top-level _id first (as MongoDB does); everything else keeps its order
    assert decode(convert(as_bson, "bson", "json"), "json") == doc


def _types(value: Any) -> Any:
    """The type tree of a value, with Int64 and int merged (JSON keeps values, not widths)."""
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int
    return type(value)


@SETTINGS
@given(documents)
def test_mongo_types_survive_json_and_bson(doc: dict[str, Any]) -> None:
    for encoding in ("json", "bson"):
        assert _types(decode(encode(doc, encoding), encoding)) == _types(doc)


# ----------------------------------------------------------------------------------- Avro

SCHEMA = AvroSchema.parse(RICH_SCHEMA, name="orders")
avro_strings = st.text(max_size=15)
avro_longs = INT64.map(Int64)

lines = st.fixed_dictionaries({"sku": avro_strings, "n": avro_longs, "seen": datetimes})
orders = st.fixed_dictionaries(
    {
        "_id": object_ids,
        "at": datetimes,
        "price": st.decimals(
            allow_nan=False, allow_infinity=False, places=4, min_value=-(10**15), max_value=10**15
        ).map(lambda d: Decimal128(str(d))),
        "qty": avro_longs,
        "small": st.integers(min_value=-(2**31), max_value=2**31 - 1),
        "ratio": st.floats(allow_nan=False, allow_infinity=False),
        "blob": st.binary(max_size=20),
        "ok": st.booleans(),
        "note": st.none() | avro_strings,
        "customer": st.fixed_dictionaries(
            {"name": avro_strings, "tags": st.lists(avro_strings, max_size=4)}
        ),
        "lines": st.lists(lines, max_size=4),
        "attrs": st.dictionaries(keys, avro_strings, max_size=4),  # BSON keys: no NUL
    }
)


def _quantized(doc: dict[str, Any]) -> dict[str, Any]:
    """Avro's decimal(20, 4) always carries 4 places; compare values at that scale."""
    return {**doc, "price": Decimal128(doc["price"].to_decimal().quantize(Decimal("0.0001")))}


@SETTINGS
@given(orders)
def test_avro_round_trip_keeps_mongo_types(doc: dict[str, Any]) -> None:
    out = decode(encode(doc, "avro", SCHEMA), "avro", SCHEMA)
    assert out == _quantized(doc)
    assert type(out["_id"]) is ObjectId and type(out["qty"]) is Int64
    assert all(type(line["n"]) is Int64 for line in out["lines"])


@SETTINGS
@given(orders, st.sampled_from(ENCODINGS), st.sampled_from(ENCODINGS))
def test_any_path_through_avro(doc: dict[str, Any], first: str, second: str) -> None:
    payload = encode(doc, first, SCHEMA)
    hop = convert(payload, first, second, SCHEMA)
    back = convert(hop, second, "avro", SCHEMA)
    assert decode(back, "avro", SCHEMA) == _quantized(doc)


@SETTINGS
@given(st.lists(orders, max_size=4), st.sampled_from(ENCODINGS))
def test_batch_round_trip(docs: list[dict[str, Any]], encoding: str) -> None:
    out = decode_batch(encode_batch(docs, encoding, SCHEMA), encoding, SCHEMA)
    expected = [_quantized(d) for d in docs] if encoding == "avro" else docs
    assert out == expected


@SETTINGS
@given(documents)
def test_avro_rejects_with_schema_errors_only(doc: dict[str, Any]) -> None:
    """An arbitrary document either fits the schema or fails with SchemaValidationError."""
    try:
        SCHEMA.validate(doc)
    except SchemaValidationError as exc:
        assert str(exc).startswith("schema 'orders': ")


@SETTINGS
@given(st.binary(max_size=64), st.sampled_from(ENCODINGS))
def test_garbage_payloads_raise_decode_errors_only(payload: bytes, encoding: str) -> None:
    try:
        decode(payload, encoding, SCHEMA)
    except DecodeError as exc:
        assert str(exc).startswith(f"{encoding}: ")


# ------------------------------------------------------------------------ Decimal128 helpers


@SETTINGS
@given(
    st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False),
        st.builds(
            lambda digits, exp, neg: Decimal(f"{'-' if neg else ''}{digits}E{exp}"),
            st.integers(min_value=0, max_value=10**36),
            st.integers(min_value=-6300, max_value=6300),
            st.booleans(),
        ),
        st.sampled_from([Decimal("NaN"), Decimal("-Infinity"), Decimal("Infinity")]),
    )
)
def test_fast_decimal128_matches_pymongo(value: Decimal) -> None:
    try:
        expected: Any = Decimal128(value)
    except Exception as exc:
        expected = type(exc)
    try:
        got: Any = from_decimal(value)
    except Exception as exc:
        got = type(exc)
    if isinstance(expected, type):
        assert got is expected
        return
    assert got.bid == expected.bid
    assert to_decimal(expected).as_tuple() == expected.to_decimal().as_tuple()
    assert decimal128_str(expected) == str(expected)


# -- the chunk's JSON check ------------------------------------------------------------

json_texts = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
).map(lambda v: __import__("json").dumps(v).encode())


def _loads_all(payloads: list[bytes]) -> bool:
    from mstream.encodings.extjson import loads

    try:
        for payload in payloads:
            loads(payload)
    except DecodeError:
        return False
    return True


@SETTINGS
@given(st.lists(json_texts | st.binary(max_size=12), max_size=6), st.data())
def test_the_chunk_check_vouches_only_for_payloads_loads_reads(
    payloads: list[bytes], data: st.DataObject
) -> None:
    """``all_plain_valid`` true means every payload decodes; cut and glued payloads too."""
    from mstream.encodings.extjson import all_plain_valid

    if payloads and data.draw(st.booleans()):  # split one payload in two at a random byte
        i = data.draw(st.integers(0, len(payloads) - 1))
        cut = data.draw(st.integers(0, len(payloads[i])))
        payloads[i : i + 1] = [payloads[i][:cut], payloads[i][cut:]]
    if all_plain_valid(payloads):
        assert _loads_all(payloads)


def test_the_chunk_check_refuses_what_only_looks_valid() -> None:
    from mstream.encodings.extjson import all_plain_valid

    assert all_plain_valid([b'{"a": 1}', b"[2]", b'"x"'])
    assert not all_plain_valid([b'{"a": 1', b'"b": 2}', b"3,4"])  # three values, not theirs
    assert not all_plain_valid([b"1e999"])  # orjson: infinity
    assert not all_plain_valid([b'"\xed\xa0\x80"'])  # a surrogate in UTF-8
    assert not all_plain_valid([b" 1"])  # whitespace: left to loads
    assert _loads_all([b" 1", b"1e300"])


_FIELD_VALUES = st.one_of(
    st.text(max_size=3),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.binary(max_size=3),
    object_ids,
    st.lists(st.one_of(st.text(max_size=2), st.integers(-3, 3), st.floats(-1, 1)), max_size=3),
)
_FITTING: dict[str, Any] = {  # values of each type, at and past its bounds
    "string": st.text(max_size=3),
    "long": st.integers(-(2**63) - 2, 2**63 + 1),
    "int": st.integers(-(2**31) - 2, 2**31 + 1),
    "double": st.floats(allow_nan=False) | st.integers(-3, 3),
    "boolean": st.booleans(),
    "bytes": st.binary(max_size=3),
}
_WRITE_TYPES: list[Any] = [
    *_FITTING,
    ["null", "string"],
    *({"type": "array", "items": t} for t in ("string", "double", "long")),
]


def _value_for(schema: Any) -> Any:
    """Mostly a value of the schema's type (so whole records pass), sometimes anything."""
    if isinstance(schema, dict):
        fitting = st.lists(_FITTING[schema["items"]] | _FIELD_VALUES, max_size=3)
    else:
        fitting = _FITTING[schema] if isinstance(schema, str) else st.none() | st.text(max_size=2)
    return st.one_of(fitting, fitting, fitting, _FIELD_VALUES)


@settings(SETTINGS, max_examples=400)
@given(st.lists(st.sampled_from(_WRITE_TYPES), max_size=5), st.data())
def test_the_record_type_check_agrees_with_the_field_walk(
    types: list[Any], data: st.DataObject
) -> None:
    """A record's write plan checks simple fields together by type; what it accepts, what it
    returns and every error message are those of the field-by-field walk."""
    from mstream.encodings.avro_plans import (
        Mismatch,
        _accepts_null,
        _coerce_fields,
        _describe,
        _record,
        compile_plans,
    )

    fields = [
        (f"f{i}", compile_plans(t)[0], _accepts_null(t, {}), _describe(t))
        for i, t in enumerate(types)
    ]
    doc = {
        f[0]: data.draw(_value_for(t))
        for f, t in zip(fields, types, strict=True)
        if data.draw(st.integers(0, 9))  # sometimes missing
    }

    def outcome(plan: Any) -> Any:
        try:
            return ("ok", plan(doc))
        except Mismatch as exc:
            return ("error", str(exc))

    assert outcome(_record("R", fields)) == outcome(lambda d: _coerce_fields(d, fields))


@settings(SETTINGS, max_examples=300)
@given(st.sampled_from(list(_FITTING)), st.data())
def test_the_array_type_check_agrees_with_the_item_walk(item: str, data: st.DataObject) -> None:
    """An array of a simple type is checked by its items' types; the outcome is the walk's."""
    from mstream.encodings.avro_plans import Mismatch, _array, compile_plans

    plan = compile_plans(item)[0]
    value = data.draw(_value_for({"type": "array", "items": item}))

    def outcome(array_plan: Any) -> Any:
        try:
            return ("ok", array_plan(value))
        except Mismatch as exc:
            return ("error", str(exc))

    walk = _array(lambda x: plan(x))  # an unknown plan: every item is walked
    assert outcome(_array(plan)) == outcome(walk)
