"""Event encodings: JSON (MongoDB Extended JSON), BSON and Avro, and conversions between them.

Modules:
    types: the encoding names.
    extjson: JSON with Extended JSON wrappers for MongoDB types (orjson based).
    bigint: integers wider than 64 bits (exact in JSON, refused by name elsewhere).
    bsoncodec: BSON documents.
    avro_plans: per-schema compiled validation / coercion plans for Avro.
    avro: :class:`AvroSchema` and schemaless Avro payloads.
    json_schema: :class:`JsonSchema` (``encoding = "json"`` schema entries).
    codec: :func:`decode`, :func:`encode`, :func:`convert` and the batch functions.
    schemas: :data:`StepSchema`, :func:`parse_schema` and schema inheritance across the
        steps of a connector.

Example:
    >>> from bson import ObjectId
    >>> schema = AvroSchema.parse({"type": "record", "name": "Event", "fields": [
    ...     {"name": "_id", "type": {"type": "string", "logicalType": "object-id"}},
    ...     {"name": "n", "type": "long"}]})
    >>> payload = encode({"_id": ObjectId("65a1b2c3d4e5f60718293a4b"), "n": 1}, "json")
    >>> avro = convert(payload, "json", "avro", schema)
    >>> convert(avro, "avro", "json", schema)
    b'{"_id":{"$oid":"65a1b2c3d4e5f60718293a4b"},"n":1}'
"""

from mstream.encodings.avro import AvroSchema
from mstream.encodings.avro_plans import OBJECT_ID
from mstream.encodings.codec import convert, decode, decode_batch, encode, encode_batch
from mstream.encodings.json_schema import JsonSchema
from mstream.encodings.schemas import (
    StepSchema,
    parse_schema,
    resolve_step_schemas,
)
from mstream.encodings.types import ENCODINGS, Encoding, check_encoding

__all__ = [
    "ENCODINGS",
    "OBJECT_ID",
    "AvroSchema",
    "Encoding",
    "JsonSchema",
    "StepSchema",
    "check_encoding",
    "convert",
    "decode",
    "decode_batch",
    "encode",
    "encode_batch",
    "parse_schema",
    "resolve_step_schemas",
]
