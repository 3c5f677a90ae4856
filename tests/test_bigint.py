"""Integers wider than 64 bits: exact where the encoding can hold them, refused by name where not.

orjson reads a JSON integer outside -2**63 .. 2**64 - 1 as a float. These tests run real
connectors (file source, file sinks, dead-letter file) and check that JSON to JSON keeps
every digit, and that BSON, Avro ``long`` and Lua scripts dead-letter the event with the
field path and the original digits instead of changing the value. Results are read back
with :func:`json.loads`, which keeps integers exact, so a float anywhere shows up.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bson
import orjson
import pytest
from bson.decimal128 import Decimal128
from hypothesis import given
from hypothesis import strategies as st

from mstream.config import parse_config
from mstream.encodings import AvroSchema, convert, decode, encode, encode_batch
from mstream.encodings.extjson import loads_plain
from mstream.errors import DecodeError, EncodeError, SchemaValidationError
from mstream.runtime import Connector
from mstream.stores import Stores

WIDE = 18446744073709551617  # 2**64 + 1: orjson reads it as 1.8446744073709552e+19
NEGATIVE_WIDE = -9223372036854775809  # -2**63 - 1
UNSIGNED = 9223372036854775808  # 2**63: orjson reads it exactly, but BSON and Avro cannot hold it
INT64_MAX = 9223372036854775807
INT64_MIN = -9223372036854775808

LONG_SCHEMA = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "id", "type": "long"},
        {
            "name": "lines",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Line",
                    "fields": [{"name": "qty", "type": "long"}],
                },
            },
            "default": [],
        },
    ],
}


# -- helpers ------------------------------------------------------------------------------


def config(tmp_path: Path, **connector: Any) -> Any:
    services = connector.pop("services", [])
    raw = {
        "services": [
            {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
            *services,
        ],
        "connectors": [{"name": "job", **connector}],
    }
    return parse_config(raw, "test.toml", {})


def run(cfg: Any) -> Connector:
    connector = Connector(
        cfg.connectors[0], {s.name: s for s in cfg.services}, Stores.in_memory().checkpoints
    )
    connector.start()
    assert connector.wait(60), "connector did not finish"
    assert connector.state == "completed", connector.reason
    return connector


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def lines(path: Path) -> list[Any]:
    """JSON lines, integers exact (json.loads, not orjson)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def step(resource: str, encoding: str = "json", **options: Any) -> dict[str, Any]:
    return {"service_name": "files", "resource": resource, "output_encoding": encoding, **options}


def dead_letter(encoding: str = "json") -> dict[str, Any]:
    return {"service_name": "files", "resource": "dead.jsonl", "output_encoding": encoding}


def base64_lines(path: Path) -> list[bytes]:
    return [base64.b64decode(line) for line in path.read_text().splitlines()]


# -- JSON to JSON: exact ------------------------------------------------------------------


def test_orjson_alone_would_make_floats_of_these_integers() -> None:
    # the premise of this file: if orjson ever reads them exactly, the fallback can go
    assert type(orjson.loads(b"[18446744073709551617]")[0]) is float
    assert type(orjson.loads(b"[-9223372036854775809]")[0]) is float
    assert orjson.loads(b"[18446744073709551615, -9223372036854775808]") == [2**64 - 1, INT64_MIN]


def test_json_to_json_batch_array_keeps_every_digit(tmp_path: Path) -> None:
    # batch_layout "array" re-encodes the decoded documents: the integers must survive both
    source = [
        '{"id": 18446744073709551617}',
        '{"id": -9223372036854775809}',
        '{"order": {"lines": [{"qty": 123456789012345678901234567890}]}}',
        '{"id": 9223372036854775807, "low": -9223372036854775808, "f": 1.5e19}',
    ]
    write_lines(tmp_path / "in.jsonl", source)
    run(
        config(
            tmp_path,
            source=step("in.jsonl"),
            sinks=[step("out.json", batch_layout="array")],
            batch={"kind": "count", "size": 4},
            dead_letter=dead_letter(),
        )
    )
    text = (tmp_path / "out.json").read_text()
    assert text == (
        '[{"id":18446744073709551617},{"id":-9223372036854775809},'
        '{"order":{"lines":[{"qty":123456789012345678901234567890}]}},'
        '{"id":9223372036854775807,"low":-9223372036854775808,"f":1.5e+19}]\n'
    )
    assert lines(tmp_path / "dead.jsonl") == []


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers a POSTed JSON object (or array of objects) with the same plus ``"seen": true``.

    The answer is pretty-printed, so its lines must be joined by the file sink.
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.bodies.append(body)  # type: ignore[attr-defined]
        docs = json.loads(body)
        seen = [{**d, "seen": True} for d in docs] if type(docs) is list else {**docs, "seen": True}
        reply = json.dumps(seen, indent=2).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


@pytest.fixture
def echo_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("batched", [True, False])
def test_json_through_http_middleware_keeps_every_digit(
    tmp_path: Path, echo_server: ThreadingHTTPServer, batched: bool
) -> None:
    # batched: the middleware POSTs the decoded documents as one array and re-encodes each
    # document of the answer; one by one: the sink writes the (pretty) answer on one line
    write_lines(
        tmp_path / "in.jsonl",
        ['{"id": 18446744073709551617, "xs": [-9223372036854775809, 1]}', '{"id": 1}'],
    )
    url = f"http://127.0.0.1:{echo_server.server_address[1]}"
    run(
        config(
            tmp_path,
            services=[{"name": "api", "provider": "http", "host": url}],
            source=step("in.jsonl"),
            middlewares=[{"service_name": "api", "resource": "echo", "output_encoding": "json"}],
            sinks=[step("out.jsonl")],
            batch={"kind": "count", "size": 2} if batched else None,
            dead_letter=dead_letter(),
        )
    )
    sent = [json.loads(b) for b in echo_server.bodies]  # type: ignore[attr-defined]
    docs: list[dict[str, Any]] = [{"id": WIDE, "xs": [NEGATIVE_WIDE, 1]}, {"id": 1}]
    assert sent == ([docs] if batched else docs)
    assert lines(tmp_path / "out.jsonl") == [{**d, "seen": True} for d in docs]


# -- JSON to BSON: int64 only -------------------------------------------------------------


def test_json_to_bson_dead_letters_with_field_path_and_digits(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "in.jsonl",
        [
            '{"id": 18446744073709551617}',
            '{"id": 9223372036854775807, "low": -9223372036854775808}',
            '{"id": 9223372036854775808}',
            '{"a": {"b": [0, -9223372036854775809]}}',
            '{"items": [{"qty": 1}, {"qty": 123456789012345678901234567890}]}',
        ],
    )
    run(
        config(
            tmp_path,
            source=step("in.jsonl"),
            sinks=[step("out.bson.b64", "bson")],
            dead_letter=dead_letter(),
        )
    )
    # the boundaries pass exactly
    assert [bson.decode(raw) for raw in base64_lines(tmp_path / "out.bson.b64")] == [
        {"id": INT64_MAX, "low": INT64_MIN}
    ]
    dead = lines(tmp_path / "dead.jsonl")
    assert [d["stage"] for d in dead] == ["encode"] * 4
    reasons = [d["reason"] for d in dead]
    expected = [
        "field 'id': integer 18446744073709551617 does not fit in 64 bits (BSON int64)",
        "field 'id': integer 9223372036854775808 does not fit in 64 bits (BSON int64)",
        "field 'a.b[1]': integer -9223372036854775809 does not fit in 64 bits (BSON int64)",
        "field 'items[1].qty': integer 123456789012345678901234567890 does not fit in 64 bits"
        " (BSON int64)",
    ]
    assert len(reasons) == len(expected)
    for reason, end in zip(reasons, expected, strict=True):
        assert reason.endswith(end), reason
    # the dead-letter record holds the document as it came, digits and all
    assert [d["payload"] for d in dead] == [
        {"id": WIDE},
        {"id": UNSIGNED},
        {"a": {"b": [0, NEGATIVE_WIDE]}},
        {"items": [{"qty": 1}, {"qty": 123456789012345678901234567890}]},
    ]


def test_bson_dead_letter_sink_keeps_the_original_bytes(tmp_path: Path) -> None:
    # a BSON dead-letter record cannot hold the integer either: the payload is kept as bytes
    line = '{"id": 18446744073709551617}'
    write_lines(tmp_path / "in.jsonl", [line])
    run(
        config(
            tmp_path,
            source=step("in.jsonl"),
            sinks=[step("out.bson.b64", "bson")],
            dead_letter=dead_letter("bson"),
        )
    )
    (record,) = [bson.decode(raw) for raw in base64_lines(tmp_path / "dead.jsonl")]
    assert record["reason"].endswith(
        "field 'id': integer 18446744073709551617 does not fit in 64 bits (BSON int64)"
    )
    assert base64.b64decode(record["payload"]["$base64"]) == line.encode()


def test_encode_bson_names_the_integer_in_a_batch() -> None:
    with pytest.raises(EncodeError, match=r"field 'items\[1\]\.n': integer 18446744073709551617 "):
        encode_batch([{"n": 1}, {"n": WIDE}], "bson")


# -- JSON to Avro: long is int64 ----------------------------------------------------------


def test_json_to_avro_long_dead_letters_with_digits(tmp_path: Path) -> None:
    (tmp_path / "order.avsc").write_text(json.dumps(LONG_SCHEMA))
    write_lines(
        tmp_path / "in.jsonl",
        [
            '{"id": 18446744073709551617}',
            '{"id": 9223372036854775807, "lines": [{"qty": -9223372036854775808}]}',
            '{"id": -9223372036854775809}',
            '{"id": 1, "lines": [{"qty": 2}, {"qty": 9223372036854775808}]}',
        ],
    )
    run(
        config(
            tmp_path,
            schemas=[{"id": "order", "service_name": "files", "resource": "order.avsc"}],
            source=step("in.jsonl"),
            sinks=[step("out.avro.b64", "avro", schema_id="order")],
            dead_letter=dead_letter(),
        )
    )
    schema = AvroSchema.parse(LONG_SCHEMA)
    assert [schema.decode(raw) for raw in base64_lines(tmp_path / "out.avro.b64")] == [
        {"id": INT64_MAX, "lines": [{"qty": INT64_MIN}]}
    ]
    dead = lines(tmp_path / "dead.jsonl")
    assert [d["stage"] for d in dead] == ["validate"] * 3
    expected = [
        "field 'id': integer 18446744073709551617 does not fit in 64 bits (Avro long)",
        "field 'id': integer -9223372036854775809 does not fit in 64 bits (Avro long)",
        "field 'lines[1].qty': integer 9223372036854775808 does not fit in 64 bits (Avro long)",
    ]
    for record, end in zip(dead, expected, strict=True):
        assert record["reason"].endswith(end), record["reason"]
    assert [d["payload"]["id"] for d in dead] == [WIDE, NEGATIVE_WIDE, 1]


def test_avro_reasons_show_every_digit_of_an_integer() -> None:
    schema = AvroSchema.parse(
        {"type": "record", "name": "R", "fields": [{"name": "n", "type": "int"}]}
    )
    digits = "9" * 60
    with pytest.raises(SchemaValidationError) as info:
        schema.validate({"n": int(digits)})
    assert str(info.value) == f"field 'n': expected int (32-bit), got int {digits}"


def test_an_avro_decimal_schema_carries_a_wide_integer_exactly() -> None:
    # the one way to BSON: a schema that declares a decimal (never invented without one)
    schema = AvroSchema.parse(
        {
            "type": "record",
            "name": "R",
            "fields": [
                {
                    "name": "id",
                    "type": {
                        "type": "bytes",
                        "logicalType": "decimal",
                        "precision": 38,
                        "scale": 0,
                    },
                }
            ],
        }
    )
    avro = convert(b'{"id": 18446744073709551617}', "json", "avro", schema)
    assert decode(convert(avro, "avro", "bson", schema), "bson") == {
        "id": Decimal128("18446744073709551617")
    }


# -- Lua scripts: Lua integers are 64 bits -------------------------------------------------


@pytest.mark.udf
def test_lua_script_dead_letters_a_wide_integer_and_passes_the_boundaries(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "keep.lua").write_text(
        "function transform(data, attributes)\n"
        "  data.kind = math.type(data.id)\n"
        "  return result(data, attributes)\n"
        "end\n"
    )
    write_lines(
        tmp_path / "in.jsonl",
        [
            '{"id": 9223372036854775807}',
            '{"id": -9223372036854775808}',
            '{"id": 18446744073709551617}',
            '{"id": 1, "deep": {"xs": [2, -9223372036854775809]}}',
        ],
    )
    run(
        config(
            tmp_path,
            services=[
                {
                    "name": "scripts",
                    "provider": "udf",
                    "engine": {"kind": "lua"},
                    "script_path": str(scripts),
                }
            ],
            source=step("in.jsonl"),
            middlewares=[
                {"service_name": "scripts", "resource": "keep.lua", "output_encoding": "json"}
            ],
            sinks=[step("out.jsonl")],
            dead_letter=dead_letter(),
        )
    )
    assert lines(tmp_path / "out.jsonl") == [
        {"id": INT64_MAX, "kind": "integer"},
        {"id": INT64_MIN, "kind": "integer"},
    ]
    dead = lines(tmp_path / "dead.jsonl")
    assert [d["stage"] for d in dead] == ["middleware", "middleware"]
    expected = [
        "field 'id': integer 18446744073709551617 does not fit in 64 bits (Lua integer)",
        "field 'deep.xs[1]': integer -9223372036854775809 does not fit in 64 bits (Lua integer)",
    ]
    for record, end in zip(dead, expected, strict=True):
        assert record["reason"].endswith(end), record["reason"]
    assert dead[0]["payload"] == {"id": WIDE}


# -- the codec ----------------------------------------------------------------------------


@given(st.integers(min_value=-(10**60), max_value=10**60))
def test_any_json_integer_round_trips_exactly(n: int) -> None:
    payload = json.dumps({"n": n, "xs": [n]}).encode()
    doc = decode(payload, "json")
    assert doc == {"n": n, "xs": [n]} and type(doc["n"]) is int
    assert json.loads(encode(doc, "json")) == {"n": n, "xs": [n]}


@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_bson_holds_an_integer_exactly_or_names_it(n: int) -> None:
    doc = decode(json.dumps({"n": n}).encode(), "json")
    if INT64_MIN <= n <= INT64_MAX:
        assert decode(encode(doc, "bson"), "bson") == {"n": n}
    else:
        with pytest.raises(EncodeError) as info:
            encode(doc, "bson")
        assert str(info.value) == (
            f"bson: field 'n': integer {n} does not fit in 64 bits (BSON int64)"
        )


@pytest.mark.parametrize(
    "payload",
    [
        b'{"card": "12345678901234567890123", "n": 1.5}',  # a long digit run in a string
        b'{"x": 12345678901234567890.5, "y": 1e300}',  # floats stay floats
        b'{"date": "2024-01-02", "phone": "+1-555-0100-2000-3000-40"}',
        b"  -18446744073709551617  ",
        b'{"$date": "2024-01-02T03:04:05Z", "n": [-0, 0.0]}',
    ],
)
def test_the_exact_reread_gives_what_orjson_gives_otherwise(payload: bytes) -> None:
    expected = json.loads(payload)
    got = loads_plain(payload)
    assert got == expected and repr(got) == repr(expected)
    if b"18446744073709551617" not in payload:
        assert repr(orjson.loads(payload)) == repr(got)


def test_number_wrappers_outside_their_width_are_invalid() -> None:
    with pytest.raises(DecodeError, match="18446744073709551617 does not fit in 64 bits"):
        decode(b'{"n": {"$numberLong": "18446744073709551617"}}', "json")
    with pytest.raises(DecodeError, match="2147483648 does not fit in 32 bits"):
        decode(b'{"n": {"$numberInt": "2147483648"}}', "json")
    assert decode(b'{"n": {"$numberLong": "-9223372036854775808"}}', "json") == {"n": INT64_MIN}


def test_integers_orjson_cannot_parse_are_refused_not_changed() -> None:
    # 309 digits and more: orjson reports the number as an infinite double (left as it is)
    with pytest.raises(DecodeError, match="number is infinity"):
        decode(b'{"n": ' + b"9" * 309 + b"}", "json")
    # json reads about 1000 levels where orjson reads 1024
    deep = b"[" * 1000 + b"18446744073709551617" + b"]" * 1000
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode(deep, "json")
