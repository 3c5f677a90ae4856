"""``convert`` and ``validate``: per-batch encoding conversion and schema validation."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable

from mstream.core import Batch, Event
from mstream.encodings import AvroSchema
from mstream.errors import EventError
from mstream.providers.base import Reject

from ._batchwise import map_each


def convert_events(
    events: list[Event],
    encoding: str,
    schema: AvroSchema | None,
    reject: Reject,
    *,
    verify: bool = False,
) -> list[Event]:
    """Convert each event to ``encoding`` (validating Avro); bad events go to ``reject``.

    With ``verify``, events already in ``encoding`` are decoded too (once; the document is
    cached), so an undecodable payload is caught here rather than passed on.

    Example:
        >>> out = convert_events([Event(b'{"a": 1}', "json")], "bson", None, print)
        >>> out[0].encoding, out[0].doc
        ('bson', {'a': 1})
        >>> bad = []
        >>> convert_events([Event(b'{', "json")], "json", None, lambda e, r, s: bad.append(s),
        ...     verify=True), bad
        ([], ['decode'])
    """
    if encoding != "avro" and all(e.encoding == encoding for e in events):
        if not verify:
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


def convert(
    encoding: str,
    reject: Reject,
    schema: AvroSchema | None = None,
    input_schema: AvroSchema | None = None,
    verify: bool = False,
) -> Callable[[Observable[Batch]], Observable[Batch]]:
    """Convert every event of each batch to ``encoding``.

    Events that fail to decode, validate or encode are handed to ``reject`` (the
    dead-letter path) and the rest of the batch goes on.

    Args:
        encoding: the target encoding (``json``, ``bson``, ``avro``).
        reject: ``reject(event, reason, stage)`` for bad events.
        schema: the schema in force after this step (required for Avro output).
        input_schema: the schema to read Avro input with, for events that carry none.
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

    def step(batch: Batch) -> Batch:
        events = batch.events
        if input_schema is not None:
            for event in events:
                if event.schema is None and event.encoding == "avro":
                    event.schema = input_schema
        converted = convert_events(events, encoding, schema, reject, verify=verify)
        return batch if converted is events else batch.with_events(converted)

    return map_each(step)


def validate(
    schema: AvroSchema, reject: Reject
) -> Callable[[Observable[Batch]], Observable[Batch]]:
    """Validate every event's document against ``schema``, whatever its encoding.

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
