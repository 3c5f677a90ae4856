"""``convert`` and ``validate``: per-batch encoding conversion and schema validation."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable

from mstream.core import Batch, Event, Records
from mstream.encodings import AvroSchema, JsonSchema, StepSchema, decode, encode
from mstream.encodings.extjson import all_plain_valid, loads_each
from mstream.errors import ConfigError, EventError, SchemaValidationError
from mstream.providers.base import Reject

from ._batchwise import map_each


def apply_json_schema(events: list[Event], schema: JsonSchema, reject: Reject) -> list[Event]:
    """What the original does with a JSON Schema at a step: validate, then project.

    An event that reaches the step as JSON is validated; every event is then projected to
    the schema's properties (see :mod:`mstream.encodings.json_schema`). An invalid event, an
    Avro event (it needs an Avro schema) or one the projection cannot follow goes to
    ``reject`` (stage ``validate``) with the path and the message.

    Returns ``events`` itself when no event was rejected or changed.

    Example:
        >>> s = JsonSchema.parse({"type": "object", "required": ["age"],
        ...     "properties": {"age": {"type": "integer"}}}, name="user")
        >>> bad = []
        >>> out = apply_json_schema([Event(b'{"age": 1, "pin": 7}', "json"),
        ...     Event(b'{"age": "x"}', "json")], s, lambda e, r, st: bad.append((st, r)))
        >>> [e.payload for e in out], bad
        ([b'{"age":1}'], [('validate', "schema 'user': at /age: must be integer")])
    """
    out: list[Event] = []
    changed = False
    for event in events:
        try:
            if event.encoding == "avro":
                raise SchemaValidationError(
                    f"schema {schema.name!r} is a JSON Schema; an Avro event needs an Avro schema"
                )
            doc = event.doc
            if event.encoding == "json":
                schema.validate(doc)
            projected = schema.project(doc)
            if projected is not doc:
                event = event.replace(payload=encode(projected, event.encoding), doc=projected)
                changed = True
        except EventError as exc:
            reject(event, str(exc), exc.stage)
            changed = True
        else:
            out.append(event)
    return out if changed else events


def convert_events(
    events: list[Event],
    encoding: str,
    schema: StepSchema | None,
    reject: Reject,
    *,
    verify: bool = False,
) -> list[Event]:
    """Convert each event to ``encoding`` (validating Avro); bad events go to ``reject``.

    With a :class:`~mstream.encodings.JsonSchema`, :func:`apply_json_schema` runs first.
    With ``verify``, events already in ``encoding`` are decoded too, so an undecodable
    payload is caught here rather than passed on: JSON is checked over the whole list at
    once (:func:`~mstream.encodings.extjson.all_plain_valid`, nothing kept); only when that
    check cannot vouch for every payload is each event decoded (and its document cached).

    Example:
        >>> out = convert_events([Event(b'{"a": 1}', "json")], "bson", None, print)
        >>> out[0].encoding, out[0].doc
        ('bson', {'a': 1})
        >>> bad = []
        >>> convert_events([Event(b'{', "json")], "json", None, lambda e, r, s: bad.append(s),
        ...     verify=True), bad
        ([], ['decode'])
    """
    if isinstance(schema, JsonSchema):
        events = apply_json_schema(events, schema, reject)
        schema = None
    if encoding != "avro" and all(e.encoding == encoding for e in events):
        if not verify or (
            encoding == "json" and all_plain_valid([e.payload for e in events if not e.decoded])
        ):
            return events
        out = []
        for event in events:
            try:
                event.doc  # noqa: B018 - decoding is the check
            except EventError as exc:
                reject(event, str(exc), exc.stage)
            else:
                out.append(event)
        return events if len(out) == len(events) else out
    out = []
    append = out.append
    for event in events:
        try:
            append(event.converted(encoding, schema))
        except EventError as exc:
            reject(event, str(exc), exc.stage)
    return out


def convert_batch(
    batch: Batch,
    encoding: str,
    schema: StepSchema | None,
    reject: Reject,
    *,
    verify: bool = False,
) -> Batch:
    """:func:`convert_events` on a batch: ``batch`` itself when nothing changed.

    A batch of a source's records (:attr:`~mstream.core.Batch.records`) already in
    ``encoding`` is checked on its payloads alone, so no event is made for it.

    Example:
        >>> b = Batch.of([Event(b'{"a": 1}', "json")], batched=False)
        >>> convert_batch(b, "json", None, print, verify=True) is b
        True
    """
    records = batch.records
    if records is not None and not isinstance(schema, JsonSchema):
        if records.encoding == encoding:
            if encoding != "avro" and (
                not verify or (encoding == "json" and all_plain_valid(records.payloads))
            ):
                return batch
        elif records.encoding != "avro":
            recoded = _recoded(records, encoding, schema)
            if recoded is not None:
                return Batch.of_records(recoded, batch.acks)
    events = batch.events
    converted = convert_events(events, encoding, schema, reject, verify=verify)
    return batch if converted is events else batch.with_events(converted)


def _recoded(records: Records, encoding: str, schema: StepSchema | None) -> Records | None:
    """The records' payloads converted to ``encoding`` as columns, as each event's
    :meth:`~mstream.core.Event.converted` would; None if any payload fails (the events
    are then made and converted one by one, so the bad ones are dead-lettered with their
    reasons) or the records cannot be recoded."""
    avro = schema if isinstance(schema, AvroSchema) else None
    source = records.encoding
    try:
        if source == "json":
            docs = loads_each(records.payloads)
        else:
            docs = [decode(p, source) for p in records.payloads]
        if avro is not None and encoding == "avro":
            payloads = avro.encode_each(docs)
        else:
            payloads = [encode(doc, encoding, avro) for doc in docs]
    except EventError:
        return None
    return records.recoded(payloads, encoding, avro)


def convert(
    encoding: str,
    reject: Reject,
    schema: StepSchema | None = None,
    input_schema: StepSchema | None = None,
    verify: bool = False,
) -> Callable[[Observable[Batch]], Observable[Batch]]:
    """Convert every event of each batch to ``encoding``.

    Events that fail to decode, validate or encode are handed to ``reject`` (the
    dead-letter path) and the rest of the batch goes on.

    Args:
        encoding: the target encoding (``json``, ``bson``, ``avro``).
        reject: ``reject(event, reason, stage)`` for bad events.
        schema: the schema in force after this step (an Avro schema for Avro output; a
            JSON Schema validates and projects, see :func:`apply_json_schema`).
        input_schema: the Avro schema to read Avro input with, for events that carry none.

    Raises:
        ConfigError: Avro output with a JSON Schema.
        verify: decode events even when already in ``encoding`` (used right after the
            source, so undecodable input is dead-lettered there).

    Example:
        >>> import reactivex
        >>> b = Batch.of([Event(b'{"a": 1}', "json"), Event(b'{bad', "json")], batched=False)
        >>> bad = []
        >>> out = []
        >>> _ = reactivex.of(b).pipe(convert("bson", lambda e, r, s: bad.append(s))).subscribe(
        ...     lambda x: out.append(len(x)))
        >>> out, bad
        ([1], ['decode'])
    """

    require_avro_schema(encoding, schema, "output")
    reader = input_schema if isinstance(input_schema, AvroSchema) else None

    def step(batch: Batch) -> Batch:
        if reader is not None:
            for event in batch.events:
                if event.schema is None and event.encoding == "avro":
                    event.schema = reader
        return convert_batch(batch, encoding, schema, reject, verify=verify)

    return map_each(step)


def require_avro_schema(encoding: str | None, schema: StepSchema | None, what: str) -> None:
    """Refuse, when the pipeline is built, Avro that would have only a JSON Schema.

    Raises:
        ConfigError: ``encoding`` is ``avro`` and ``schema`` a JSON Schema.

    Example:
        >>> require_avro_schema("avro", JsonSchema.parse("{}", name="j"), "output")
        Traceback (most recent call last):
        ...
        mstream.errors.ConfigError: avro output needs an Avro schema; schema 'j' is a JSON Schema (set schema_id to an Avro schema on this step)
    """
    if encoding == "avro" and isinstance(schema, JsonSchema):
        raise ConfigError(
            f"avro {what} needs an Avro schema; schema {schema.name!r} is a JSON Schema "
            "(set schema_id to an Avro schema on this step)"
        )


def validate(
    schema: StepSchema, reject: Reject
) -> Callable[[Observable[Batch]], Observable[Batch]]:
    """Validate every event's document against ``schema`` (Avro or JSON Schema), whatever
    its encoding.

    Example:
        >>> import reactivex
        >>> s = AvroSchema.parse({"type": "record", "name": "U",
        ...     "fields": [{"name": "age", "type": "int"}]})
        >>> b = Batch.of([Event(b'{"age": 3}', "json"), Event(b'{"age": "x"}', "json")],
        ...     batched=False)
        >>> out = []
        >>> _ = reactivex.of(b).pipe(validate(s, lambda e, r, st: None)).subscribe(
        ...     lambda x: out.append(len(x)))
        >>> out
        [1]
    """

    def step(batch: Batch) -> Batch:
        good: list[Event] = []
        for event in batch.events:
            try:
                schema.validate(event.doc)
            except EventError as exc:
                reject(event, str(exc), "validate")
            else:
                good.append(event)
        return batch if len(good) == len(batch.events) else batch.with_events(good)

    return map_each(step)
