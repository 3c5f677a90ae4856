"""``middleware``: pass each batch through a transformation step."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable

from mstream.core import Batch, ConnectorCounters, Event
from mstream.encodings import AvroSchema, StepSchema
from mstream.providers.base import Middleware, Reject

from ._batchwise import map_each
from ._convert import convert_events, require_avro_schema


def middleware(
    step: Middleware,
    reject: Reject,
    *,
    input_encoding: str | None = None,
    input_schema: StepSchema | None = None,
    counters: ConnectorCounters | None = None,
) -> Callable[[Observable[Batch]], Observable[Batch]]:
    """Send each batch through ``step`` (an HTTP service, a script, a Python function).

    Events are first converted to the step's ``input_encoding``; what the step returns
    replaces the batch's events (fewer when it filters, more when it fans out). The batch
    keeps its source acknowledgements, so filtered events are acknowledged with it.
    Transport failures of the step go to ``on_error``. ``input_schema`` reads Avro input;
    a JSON Schema in force is not applied to what the step is sent (as in the original, it
    applies to what each step outputs).

    Raises:
        ConfigError: ``input_encoding`` is ``avro`` and ``input_schema`` a JSON Schema.

    Example:
        >>> import reactivex
        >>> from mstream.core import Event
        >>> class Upper(Middleware):
        ...     def process(self, batch, reject):
        ...         return [e.replace(payload=e.payload.upper()) for e in batch.events]
        >>> out = []
        >>> _ = reactivex.of(Batch.of([Event(b'"a"', "json")], batched=False)).pipe(
        ...     middleware(Upper(), print)).subscribe(lambda b: out.append(b.events[0].doc))
        >>> out
        ['A']
    """

    require_avro_schema(input_encoding, input_schema, "input of a middleware")
    # a JSON Schema applies to what a step outputs, not to what a middleware is sent
    reader = input_schema if isinstance(input_schema, AvroSchema) else None

    def run(batch: Batch) -> Batch:
        events = batch.events
        if input_encoding is not None:
            events = convert_events(events, input_encoding, reader, reject)
        rejected = 0

        def counting_reject(event: Event, reason: str, stage: str) -> None:
            nonlocal rejected
            rejected += 1
            reject(event, reason, stage)

        filtered_before = step.filtered
        out = step.process(batch.with_events(events), counting_reject)
        if step.reports_filtered:  # it knows each event's outcome, fan-out included
            dropped = step.filtered - filtered_before
        else:  # only the batch's shortfall is known
            dropped = len(events) - rejected - len(out)
        if counters is not None and dropped > 0:
            counters.record_filtered(dropped)
        return batch.with_events(out)

    return map_each(run)
