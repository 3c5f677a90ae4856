"""``provider = "stdout"``: a sink that prints each event as one line.

JSON events are printed as they are; BSON and Avro events are printed as Extended JSON so
a person can read them. Service option ``prefix`` puts a fixed text before each line.

Example:
    >>> from mstream.config import ServiceConfig, StepConfig
    >>> from mstream.core import Batch, Event
    >>> sink = PROVIDER.sink(ServiceConfig("out", "stdout", {"prefix": "> "}),
    ...     StepConfig("out"), StepContext("demo", "sink"))
    >>> sink.write_batch(Batch.of([Event(b'{"a":1}', "json")], batched=False))
    > {"a":1}
"""

from __future__ import annotations

import sys
import threading

from marshmallow import Schema, fields

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Batch
from mstream.encodings import encode
from mstream.providers.base import ProviderSpec, StepContext, SyncSink


class StdoutServiceSchema(Schema):
    """Options of a ``stdout`` service."""

    prefix = fields.String(load_default="")


class StdoutSink(SyncSink):
    """Prints events to standard output, one line each."""

    _lock = threading.Lock()

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        self.prefix: str = service.options.get("prefix", "")

    def write_batch(self, batch: Batch) -> None:
        """Print every event of the batch."""
        lines = []
        for event in batch.events:
            payload = event.payload if event.encoding == "json" else encode(event.doc, "json")
            lines.append(self.prefix + payload.decode("utf-8", "replace"))
        with self._lock:
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()


PROVIDER = ProviderSpec(
    name="stdout",
    service_schema=StdoutServiceSchema,
    sink=lambda service, step, ctx: StdoutSink(service, step, ctx),
    needs_resource=False,
)
