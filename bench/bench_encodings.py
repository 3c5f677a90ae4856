"""Micro-benchmark of the encodings on a typical 10-field event.

Prints microseconds per event for the mstream conversions next to plain orjson and plain
fastavro, so the overhead of Extended JSON handling and schema coercion is visible.

Run:
    .venv/bin/python bench/bench_encodings.py [--number N]
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import orjson
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId
from fastavro import parse_schema, schemaless_reader, schemaless_writer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mstream.encodings import AvroSchema, convert, decode, encode

SCHEMA = {
    "type": "record",
    "name": "Event",
    "fields": [
        {"name": "_id", "type": {"type": "string", "logicalType": "object-id"}},
        {"name": "user", "type": "string"},
        {"name": "kind", "type": "string"},
        {"name": "count", "type": "long"},
        {"name": "score", "type": "double"},
        {"name": "active", "type": "boolean"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {
            "name": "amount",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2},
        },
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "meta", "type": {"type": "map", "values": "string"}},
    ],
}

MONGO_EVENT: dict[str, Any] = {
    "_id": ObjectId("65a1b2c3d4e5f60718293a4b"),
    "user": "alice@example.com",
    "kind": "purchase",
    "count": Int64(12345678901),
    "score": 0.875,
    "active": True,
    "at": datetime(2024, 5, 1, 12, 30, 45, 123000, tzinfo=UTC),
    "amount": Decimal128("129.99"),
    "tags": ["web", "eu", "promo"],
    "meta": {"campaign": "spring", "ab": "b"},
}

# The same event as plain JSON (no MongoDB types), for the orjson baseline.
PLAIN_EVENT: dict[str, Any] = {
    **MONGO_EVENT,
    "_id": str(MONGO_EVENT["_id"]),
    "count": int(MONGO_EVENT["count"]),
    "at": "2024-05-01T12:30:45.123Z",
    "amount": "129.99",
}


def _per_event(fn: Callable[[], Any], number: int) -> float:
    best = min(timeit.repeat(fn, number=number, repeat=5))
    return best / number * 1e6


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20_000, help="events per timing run")
    number = parser.parse_args().number

    schema = AvroSchema.parse(SCHEMA, name="bench")
    fast_schema = parse_schema(SCHEMA)

    plain_json = orjson.dumps(PLAIN_EVENT)
    ext_json = encode(MONGO_EVENT, "json")
    avro_payload = encode(MONGO_EVENT, "avro", schema)
    fastavro_datum = schemaless_reader(BytesIO(avro_payload), fast_schema, None)
    plain_ext = orjson.loads(ext_json)  # same shape as ext_json, wrappers left as dicts

    def fastavro_write() -> bytes:
        buf = BytesIO()
        schemaless_writer(buf, fast_schema, fastavro_datum)
        return buf.getvalue()

    rows: list[tuple[str, Callable[[], Any]]] = [
        ("orjson loads+dumps (plain event)", lambda: orjson.dumps(orjson.loads(plain_json))),
        ("orjson loads+dumps (ext-JSON text)", lambda: orjson.dumps(orjson.loads(ext_json))),
        ("mstream json->json passthrough", lambda: convert(ext_json, "json", "json")),
        ("mstream json decode+encode (plain)", lambda: encode(decode(plain_json, "json"), "json")),
        ("mstream json decode+encode (ext)", lambda: encode(decode(ext_json, "json"), "json")),
        ("mstream json decode (ext)", lambda: decode(ext_json, "json")),
        ("mstream json encode (Mongo types)", lambda: encode(MONGO_EVENT, "json")),
        ("fastavro schemaless write", fastavro_write),
        (
            "fastavro schemaless read",
            lambda: schemaless_reader(BytesIO(avro_payload), fast_schema, None),
        ),
        ("mstream avro encode (validate+coerce)", lambda: encode(MONGO_EVENT, "avro", schema)),
        ("mstream avro decode", lambda: decode(avro_payload, "avro", schema)),
        ("mstream json->avro", lambda: convert(ext_json, "json", "avro", schema)),
        ("mstream avro->json", lambda: convert(avro_payload, "avro", "json", schema)),
        ("mstream avro->avro (validating)", lambda: convert(avro_payload, "avro", "avro", schema)),
        ("mstream json->bson", lambda: convert(ext_json, "json", "bson")),
        ("mstream bson->json", lambda: convert(encode(MONGO_EVENT, "bson"), "bson", "json")),
    ]
    del plain_ext

    print(f"typical 10-field event: {len(ext_json)} bytes ext-JSON, {len(avro_payload)} bytes Avro")
    print(f"{'operation':42} {'us/event':>9}")
    print("-" * 52)
    baseline = 0.0
    for label, fn in rows:
        us = _per_event(fn, number)
        if not baseline:
            baseline = us
        print(f"{label:42} {us:9.2f}   ({us / baseline:4.1f}x plain orjson)")


if __name__ == "__main__":
    main()
