"""Decode, encode and convert event payloads between JSON, BSON and Avro.

Every function takes the encoding by name (see :data:`mstream.encodings.ENCODINGS`); an
unknown name is a configuration mistake and raises :class:`~mstream.errors.ConfigError`.
Avro always needs an :class:`~mstream.encodings.avro.AvroSchema`.

A decoded document is plain Python (``dict``, ``list``, ``str``, ``int``, ``float``,
``bool``, ``None``) plus MongoDB types from :mod:`bson`: ``ObjectId``, tz-aware UTC
``datetime``, ``Decimal128``, ``Int64``, ``bytes`` / ``Binary``.

Batches are one payload holding an array:

* ``json``: a JSON array of documents;
* ``bson``: the document ``{"items": [...]}`` (BSON has no top-level array);
* ``avro``: an Avro array whose items have the event schema.

Example:
    >>> from bson import ObjectId
    >>> payload = b'{"_id": {"$oid": "65a1b2c3d4e5f60718293a4b"}, "n": 1}'
    >>> decode(convert(payload, "json", "bson"), "bson")
    {'_id': ObjectId('65a1b2c3d4e5f60718293a4b'), 'n': 1}
"""

from __future__ import annotations

from typing import Any

from mstream.encodings.avro import AvroSchema
from mstream.encodings.bsoncodec import decode_bson, encode_bson
from mstream.encodings.extjson import dumps as json_dumps
from mstream.encodings.extjson import loads as json_loads
from mstream.encodings.types import check_encoding
from mstream.errors import DecodeError, EncodeError

__all__ = ["convert", "decode", "decode_batch", "encode", "encode_batch"]

_BATCH_KEY = "items"


def _no_schema(action: type[DecodeError] | type[EncodeError], verb: str) -> Exception:
    return action(f"avro: {verb} Avro needs a schema (set schema_id on the step or the source)")


def decode(payload: bytes, encoding: str, schema: AvroSchema | None = None) -> Any:
    """Decode one payload into a document.

    Args:
        payload: the event bytes.
        encoding: ``json``, ``bson`` or ``avro``.
        schema: the Avro schema (required for ``avro``, ignored otherwise).

    Returns:
        The document.

    Raises:
        DecodeError: the payload is not valid in that encoding, or Avro has no schema.
        ConfigError: unknown encoding name.

    Example:
        >>> decode(b'{"at": {"$date": "2024-05-01T00:00:00Z"}}', "json")
        {'at': datetime.datetime(2024, 5, 1, 0, 0, tzinfo=datetime.timezone.utc)}
        >>> decode(b'{"a"', "json")
        Traceback (most recent call last):
        ...
        mstream.errors.DecodeError: json: invalid JSON: unexpected end of data: ...
    """
    if encoding == "json":
        return json_loads(payload)
    if encoding == "bson":
        return decode_bson(payload)
    if encoding == "avro":
        if schema is None:
            raise _no_schema(DecodeError, "decoding")
        return schema.decode(payload)
    check_encoding(encoding)
    raise AssertionError("unreachable")  # pragma: no cover


def encode(doc: Any, encoding: str, schema: AvroSchema | None = None) -> bytes:
    """Encode a document.

    Args:
        doc: the document (a dict for ``bson``).
        encoding: ``json``, ``bson`` or ``avro``.
        schema: the Avro schema (required for ``avro``; the document is validated and
            coerced to it).

    Returns:
        The payload bytes.

    Raises:
        EncodeError: the document cannot be written in that encoding, or Avro has no schema.
        SchemaValidationError: the document does not match the Avro schema.
        ConfigError: unknown encoding name.

    Example:
        >>> encode({"n": 1}, "json")
        b'{"n":1}'
        >>> encode([1], "bson")
        Traceback (most recent call last):
        ...
        mstream.errors.EncodeError: bson: a document must be an object (dict), got list
    """
    if encoding == "json":
        return json_dumps(doc)
    if encoding == "bson":
        return encode_bson(doc)
    if encoding == "avro":
        if schema is None:
            raise _no_schema(EncodeError, "encoding to")
        return schema.encode(doc)
    check_encoding(encoding)
    raise AssertionError("unreachable")  # pragma: no cover


def convert(payload: bytes, source: str, target: str, schema: AvroSchema | None = None) -> bytes:
    """Convert a payload from one encoding to another.

    Same encoding on both sides is a passthrough (the bytes are returned as they are),
    except Avro to Avro with a schema, which decodes the payload to validate it first.

    Args:
        payload: the event bytes in ``source`` encoding.
        source: the encoding of ``payload``.
        target: the wanted encoding.
        schema: the Avro schema, needed when either side is ``avro``.

    Returns:
        The payload in ``target`` encoding.

    Raises:
        DecodeError: the payload is not valid ``source``.
        EncodeError: the document cannot be written as ``target``.
        SchemaValidationError: the document does not match the Avro schema.
        ConfigError: unknown encoding name.

    Example:
        >>> convert(b'{"n": 1}', "json", "json")
        b'{"n": 1}'
    """
    if source == target:
        if source == "avro" and schema is not None:
            schema.decode(payload)
        elif source not in ("json", "bson", "avro"):
            check_encoding(source)
        return payload
    return encode(decode(payload, source, schema), target, schema)


def encode_batch(docs: list[Any], encoding: str, schema: AvroSchema | None = None) -> bytes:
    """Encode several documents as one payload holding an array.

    Args:
        docs: the documents.
        encoding: ``json`` (a JSON array), ``bson`` (``{"items": [...]}``) or ``avro`` (an
            Avro array of the schema).
        schema: the item schema for ``avro``; each item is validated.

    Returns:
        The batch payload.

    Raises:
        EncodeError: a document cannot be written, or Avro has no schema.
        SchemaValidationError: an item does not match the schema (the message gives its index).
        ConfigError: unknown encoding name.

    Example:
        >>> encode_batch([{"n": 1}, {"n": 2}], "json")
        b'[{"n":1},{"n":2}]'
    """
    if not isinstance(docs, list | tuple):
        raise EncodeError(
            f"{encoding}: a batch must be a list of documents, got {type(docs).__name__}"
        )
    if encoding == "json":
        return json_dumps(docs)
    if encoding == "bson":
        return encode_bson({_BATCH_KEY: docs})
    if encoding == "avro":
        if schema is None:
            raise _no_schema(EncodeError, "encoding to")
        return schema.encode_many(list(docs))
    check_encoding(encoding)
    raise AssertionError("unreachable")  # pragma: no cover


def decode_batch(payload: bytes, encoding: str, schema: AvroSchema | None = None) -> list[Any]:
    """Decode a payload written by :func:`encode_batch`.

    Args:
        payload: the batch bytes.
        encoding: ``json``, ``bson`` or ``avro``.
        schema: the item schema for ``avro``.

    Returns:
        The documents.

    Raises:
        DecodeError: the payload is invalid or is not a batch.
        ConfigError: unknown encoding name.

    Example:
        >>> decode_batch(encode_batch([{"n": 1}], "bson"), "bson")
        [{'n': 1}]
    """
    if encoding == "json":
        docs = json_loads(payload)
        if type(docs) is not list:
            raise DecodeError(f"json: a batch must be a JSON array, got {type(docs).__name__}")
        return docs
    if encoding == "bson":
        doc = decode_bson(payload)
        items = doc.get(_BATCH_KEY)
        if len(doc) != 1 or type(items) is not list:
            raise DecodeError(
                f'bson: a batch must be the document {{"{_BATCH_KEY}": [...]}}, '
                f"got keys {sorted(doc)}"
            )
        return items
    if encoding == "avro":
        if schema is None:
            raise _no_schema(DecodeError, "decoding")
        return schema.decode_many(payload)
    check_encoding(encoding)
    raise AssertionError("unreachable")  # pragma: no cover
