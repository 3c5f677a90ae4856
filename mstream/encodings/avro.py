"""Avro schemas and schemaless Avro payloads (one datum, no container header).

:class:`AvroSchema` parses a schema once and compiles, once, the plans that validate and
coerce documents for the writer and restore MongoDB types after the reader (see
:mod:`mstream.encodings.avro_plans`). Per event, encoding is one pass of the write plan
plus ``fastavro.schemaless_writer``; decoding is ``fastavro.schemaless_reader`` plus the
read plan.

A batch is one Avro datum of type ``{"type": "array", "items": <schema>}``.

Example:
    >>> schema = AvroSchema.parse(
    ...     '{"type": "record", "name": "User", "fields": [{"name": "n", "type": "int"}]}',
    ...     name="u",
    ... )
    >>> schema.decode(schema.encode({"n": 42}))
    {'n': 42}
    >>> schema.validate({"n": "x"})
    Traceback (most recent call last):
    ...
    mstream.errors.SchemaValidationError: schema 'u': field 'n': expected int (32-bit), got str 'x'
"""

from __future__ import annotations

from collections.abc import Iterable
from io import BytesIO
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from mstream.encodings.avro_plans import Mismatch, Plan, compile_plans
from mstream.errors import ConfigError, DecodeError, EncodeError, SchemaValidationError

__all__ = ["AvroSchema"]


class AvroSchema:
    """A parsed Avro schema with its compiled per-schema plans.

    Build one with :meth:`parse`; it is immutable and safe to share between threads.

    Attributes:
        name: the name it was registered under (used in error messages), may be empty.
        raw: the schema as a JSON-like dict (or list / str for a non-record schema).
        parsed: the schema as returned by ``fastavro.parse_schema``.
        fingerprint: the CRC-64-AVRO fingerprint of the parsing canonical form, 16 hex
            characters (the fingerprint Avro single-object encoding uses).

    Example:
        >>> s = AvroSchema.parse({"type": "record", "name": "A", "fields": []})
        >>> s.fingerprint
        '2aa77cd46205caab'
    """

    __slots__ = (
        "_batch_parsed",
        "_batch_read",
        "_batch_write",
        "_prefix",
        "_read",
        "_write",
        "fingerprint",
        "name",
        "parsed",
        "raw",
    )

    def __init__(self, raw: Any, parsed: Any, *, name: str = "") -> None:
        """Wrap an already parsed schema; prefer :meth:`parse`.

        Args:
            raw: the schema before parsing.
            parsed: ``fastavro.parse_schema(raw)``.
            name: the name used in error messages.

        Raises:
            ConfigError: the schema uses a construct that cannot be compiled.
        """
        self.name = name
        self.raw = raw
        self.parsed = parsed
        self._prefix = f"schema '{name}': " if name else ""
        try:
            self.fingerprint: str = fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")
            self._write, self._read = compile_plans(parsed)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self._describe()}: unsupported Avro schema: {exc}") from exc
        self._batch_parsed: Any = None
        self._batch_write: Plan | None = None
        self._batch_read: Plan | None = None

    def _describe(self) -> str:
        return f"Avro schema '{self.name}'" if self.name else "Avro schema"

    @classmethod
    def parse(cls, source: str | bytes | dict[str, Any], *, name: str = "") -> AvroSchema:
        """Parse a schema from JSON text or a dict.

        Args:
            source: the schema as JSON text (``str`` / ``bytes``) or an already loaded dict.
            name: where the schema comes from (a schema id, a file), used in messages.

        Returns:
            The parsed schema.

        Raises:
            ConfigError: the text is not JSON or not a valid Avro schema; the message names
                ``name``.

        Example:
            >>> AvroSchema.parse('{"type": "recrod", "name": "A"}', name="a.avsc")
            Traceback (most recent call last):
            ...
            mstream.errors.ConfigError: Avro schema 'a.avsc' is invalid: unknown type 'recrod'
        """
        label = f"Avro schema '{name}'" if name else "Avro schema"
        raw: Any = source
        if isinstance(source, str | bytes):
            try:
                raw = orjson.loads(source)
            except orjson.JSONDecodeError as exc:
                raise ConfigError(f"{label} is not valid JSON: {exc}") from exc
        try:
            parsed = parse_schema(raw)
        except Exception as exc:  # fastavro raises SchemaParseError, UnknownType, KeyError...
            detail = str(exc) or type(exc).__name__
            if isinstance(exc, KeyError):
                detail = f"{exc.args[0]!r} is required"
            raise ConfigError(f"{label} is invalid: {_describe_parse_error(exc, detail)}") from exc
        return cls(raw, parsed, name=name)

    def __repr__(self) -> str:
        return f"AvroSchema(name={self.name!r}, fingerprint={self.fingerprint!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AvroSchema) and other.fingerprint == self.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    # ------------------------------------------------------------------ validation

    def _fail(self, exc: Mismatch) -> SchemaValidationError:
        where = exc.where()
        subject = f"field '{where}'" if where else "document"
        return SchemaValidationError(f"{self._prefix}{subject}: {exc.problem()}")

    def coerce(self, doc: Any) -> Any:
        """Validate ``doc`` and return it ready for the Avro writer.

        MongoDB types are converted as the schema says (ObjectId to its hex string, Int64
        to int, Decimal128 to Decimal, ...). ``doc`` itself is never modified.

        Args:
            doc: the document.

        Returns:
            ``doc`` if nothing needed converting, else a shallow-copied converted document.

        Raises:
            SchemaValidationError: the document does not match; the message names the field
                and what was expected.

        Example:
            >>> from bson import ObjectId
            >>> s = AvroSchema.parse({"type": "record", "name": "A",
            ...                       "fields": [{"name": "id", "type": "string"}]})
            >>> s.coerce({"id": ObjectId("65a1b2c3d4e5f60718293a4b")})
            {'id': '65a1b2c3d4e5f60718293a4b'}
        """
        try:
            return self._write(doc)
        except Mismatch as exc:
            raise self._fail(exc) from None

    def validate(self, doc: Any) -> None:
        """Check that ``doc`` matches the schema.

        Args:
            doc: the document.

        Raises:
            SchemaValidationError: it does not; the message names the failing field (a
                path such as ``items[2].price``) and what was expected.

        Example:
            >>> s = AvroSchema.parse({"type": "record", "name": "A",
            ...                       "fields": [{"name": "n", "type": "long"}]})
            >>> s.validate({"n": 1})
            >>> s.validate({"n": "1"})
            Traceback (most recent call last):
            ...
            mstream.errors.SchemaValidationError: field 'n': expected long, got str '1'
        """
        self.coerce(doc)

    # ------------------------------------------------------------------ one datum

    def encode(self, doc: Any) -> bytes:
        """Validate, coerce and write one document as schemaless Avro.

        Args:
            doc: the document.

        Returns:
            The Avro bytes.

        Raises:
            SchemaValidationError: the document does not match the schema.
            EncodeError: the Avro writer failed.

        Example:
            >>> s = AvroSchema.parse('"long"')
            >>> s.encode(3)
            b'\\x06'
        """
        return self.encode_each((doc,))[0]

    def encode_each(self, docs: Iterable[Any]) -> list[bytes]:
        """:meth:`encode` for each document, one writer buffer for all.

        Raises:
            SchemaValidationError: a document does not match the schema (the first such).
            EncodeError: the Avro writer failed.

        Example:
            >>> AvroSchema.parse('"long"').encode_each([1, 2])
            [b'\\x02', b'\\x04']
        """
        coerce, parsed = self.coerce, self.parsed
        buf = BytesIO()
        out: list[bytes] = []
        append = out.append
        for doc in docs:
            datum = coerce(doc)
            buf.seek(0)
            buf.truncate()
            try:
                schemaless_writer(buf, parsed, datum)
            except Exception as exc:  # the write plan validated already: a safety net
                raise EncodeError(f"avro: {self._prefix}cannot encode document: {exc}") from exc
            append(buf.getvalue())
        return out

    def decode(self, payload: bytes) -> Any:
        """Read one schemaless Avro datum and restore MongoDB types.

        Args:
            payload: exactly one datum written with this schema.

        Returns:
            The document.

        Raises:
            DecodeError: the bytes are truncated, malformed or longer than one datum.

        Example:
            >>> doc = AvroSchema.parse('"long"').decode(b'\\x06')
            >>> doc, type(doc).__name__
            (3, 'Int64')
        """
        doc = self._read_datum(payload, self.parsed)
        read = self._read
        return read(doc) if read is not None else doc

    def _read_datum(self, payload: bytes, parsed: Any) -> Any:
        buf = BytesIO(payload)
        try:
            doc = schemaless_reader(buf, parsed, None)
        except Exception as exc:  # EOFError, UnicodeDecodeError, IndexError, ...
            detail = str(exc) or "unexpected end of data"
            raise DecodeError(
                f"avro: {self._prefix}cannot decode {len(payload)} bytes: "
                f"{type(exc).__name__}: {detail}"
            ) from exc
        end = buf.tell()
        if end != len(payload):
            raise DecodeError(
                f"avro: {self._prefix}{len(payload) - end} trailing bytes after the datum "
                f"(payload does not match the schema)"
            )
        return doc

    # ------------------------------------------------------------------ batches

    def _batch(self) -> tuple[Any, Plan, Plan | None]:
        if self._batch_parsed is None:
            array = {"type": "array", "items": self.raw}
            try:
                parsed = parse_schema(array)
                write, read = compile_plans(parsed)
            except Exception as exc:
                raise ConfigError(f"{self._describe()}: cannot build batch schema: {exc}") from exc
            self._batch_write, self._batch_read = write, read
            self._batch_parsed = parsed
        assert self._batch_write is not None
        return self._batch_parsed, self._batch_write, self._batch_read

    def encode_many(self, docs: list[Any]) -> bytes:
        """Write documents as one Avro array datum whose items have this schema.

        Args:
            docs: the documents.

        Returns:
            The Avro bytes.

        Raises:
            SchemaValidationError: one document does not match; the message names its index.
            EncodeError: the Avro writer failed.

        Example:
            >>> s = AvroSchema.parse('"int"')
            >>> s.decode_many(s.encode_many([1, 2]))
            [1, 2]
        """
        parsed, write, _ = self._batch()
        try:
            datum = write(docs)
        except Mismatch as exc:
            raise self._fail(exc) from None
        buf = BytesIO()
        try:
            schemaless_writer(buf, parsed, datum)
        except Exception as exc:
            raise EncodeError(f"avro: {self._prefix}cannot encode batch: {exc}") from exc
        return buf.getvalue()

    def decode_many(self, payload: bytes) -> list[Any]:
        """Read an Avro array datum written by :meth:`encode_many`.

        Args:
            payload: the Avro bytes.

        Returns:
            The documents.

        Raises:
            DecodeError: the bytes are not such an array.
        """
        parsed, _, read = self._batch()
        docs = self._read_datum(payload, parsed)
        return read(docs) if read is not None else docs


def _describe_parse_error(exc: Exception, detail: str) -> str:
    if type(exc).__name__ == "UnknownType":
        unknown = getattr(exc, "name", None)
        if isinstance(unknown, dict):
            unknown = unknown.get("type")
        return f"unknown type {unknown!r}"
    return detail
