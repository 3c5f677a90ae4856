"""``provider = "generator"``: a source of synthetic events, at a set rate or a fixed count.

Service options: ``count`` (total events; omitted = endless), ``rate`` (events per second;
omitted = as fast as the pipeline takes them), ``invalid_every`` (every Nth event is broken
JSON, to exercise dead-lettering), ``chunk_size``. The step's ``resource`` picks the event
shape: ``users`` (10 fields), ``orders`` or ``counter`` (``{"n": i}``).

With checkpoints on, the position is the number of events acknowledged, so a restarted
generator with a ``count`` continues where it stopped instead of starting over.

Example:
    >>> import threading
    >>> from mstream.config import ServiceConfig, StepConfig
    >>> src = PROVIDER.source(ServiceConfig("g", "generator", {"count": 3}),
    ...     StepConfig("g", "counter"), StepContext("demo", "source"))
    >>> seen = []
    >>> src.run(lambda chunk: seen.extend(e.doc for e in chunk), threading.Event())
    >>> seen
    [{'n': 0}, {'n': 1}, {'n': 2}]
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
from marshmallow import Schema, fields, validate

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Event, PositionTracker
from mstream.providers.base import Emit, ProviderSpec, Source, StepContext

SHAPES = ("users", "orders", "counter")
_CITIES = ("Lisbon", "Oslo", "Austin", "Kyoto", "Lagos", "Lima", "Perth", "Quebec")
_EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def user_doc(i: int) -> dict[str, Any]:
    """A 10-field user event."""
    return {
        "user_id": i,
        "name": f"user-{i}",
        "email": f"user{i}@example.com",
        "phone": f"+1-555-{i % 10_000:04d}",
        "age": 18 + i % 60,
        "city": _CITIES[i % len(_CITIES)],
        "active": i % 3 != 0,
        "score": round((i * 7919 % 1000) / 10.0, 1),
        "signup_ms": _EPOCH_MS + i * 1000,
        "tags": ["a", "b"] if i % 2 else ["c"],
    }


def order_doc(i: int) -> dict[str, Any]:
    """An order event."""
    return {
        "order_id": f"o-{i}",
        "user_id": i % 1000,
        "amount": round(5 + (i * 31 % 5000) / 100.0, 2),
        "currency": "EUR",
        "items": 1 + i % 5,
        "created_ms": _EPOCH_MS + i * 250,
    }


def counter_doc(i: int) -> dict[str, Any]:
    """``{"n": i}``."""
    return {"n": i}


def make_user(i: int) -> bytes:
    """A 10-field user event as JSON bytes."""
    return orjson.dumps(user_doc(i))


_MAKERS = {"users": user_doc, "orders": order_doc, "counter": counter_doc}


class GeneratorServiceSchema(Schema):
    """Options of a ``generator`` service."""

    count = fields.Integer(
        load_default=None,
        strict=True,
        validate=validate.Range(min=0, error="must be at least 0"),
    )
    rate = fields.Float(
        load_default=None,
        validate=validate.Range(min=0.001, max=10_000_000, error="must be between 0.001 and 1e7"),
    )
    invalid_every = fields.Integer(
        load_default=None, strict=True, validate=validate.Range(min=1, error="must be at least 1")
    )
    chunk_size = fields.Integer(
        load_default=500, strict=True, validate=validate.Range(min=1, max=100_000)
    )


class GeneratorSource(Source):
    """Emits synthetic JSON events in chunks."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        opts = service.options
        self.count: int | None = opts.get("count")
        self.rate: float | None = opts.get("rate")
        self.invalid_every: int | None = opts.get("invalid_every")
        self.chunk_size: int = opts.get("chunk_size", 500)
        shape = step.resource or "users"
        if shape not in _MAKERS:
            from mstream.errors import ConfigError

            raise ConfigError(
                f"generator resource {shape!r} is not a known shape (expected: {', '.join(SHAPES)})"
            )
        self.make = _MAKERS[shape]
        self.resource = shape
        self.start = int(ctx.resume_position or 0) if ctx.checkpointing else 0
        self.tracker = PositionTracker() if ctx.checkpointing else None

    def run(self, emit: Emit, stopping: threading.Event) -> None:
        """Generate events until ``count`` is reached or the connector stops."""
        i = self.start
        end = self.count
        chunk = self.chunk_size
        if self.rate is not None:
            chunk = max(1, min(chunk, int(self.rate / 10) or 1))
        began = time.monotonic()
        made = 0
        make, invalid_every, tracker = self.make, self.invalid_every, self.tracker
        while not stopping.is_set():
            stop_at = i + chunk if end is None else min(i + chunk, end)
            if stop_at <= i:
                return
            events: list[Event] = []
            dumps = orjson.dumps
            for n in range(i, stop_at):
                ack: Any = None
                if tracker is not None:
                    ack = _acker(tracker, tracker.add(n + 1))
                if invalid_every and (n + 1) % invalid_every == 0:
                    events.append(Event(b'{"broken": ', "json", metadata={"seq": n}, ack=ack))
                    continue
                doc = make(n)
                events.append(Event(dumps(doc), "json", metadata={"seq": n}, ack=ack, doc=doc))
            emit(events)
            made += stop_at - i
            i = stop_at
            if self.rate is not None:
                due = began + made / self.rate
                delay = due - time.monotonic()
                if delay > 0 and stopping.wait(delay):
                    return

    def position(self) -> Any:
        """Number of events whose predecessors are all acknowledged."""
        return self.tracker.committed() if self.tracker is not None else None


def _acker(tracker: PositionTracker, seq: int) -> Any:
    return lambda: tracker.ack(seq)


def _make_source(service: ServiceConfig, step: StepConfig, ctx: StepContext) -> Source:
    return GeneratorSource(service, step, ctx)


PROVIDER = ProviderSpec(
    name="generator",
    service_schema=GeneratorServiceSchema,
    source=_make_source,
    needs_resource=False,
    resources=SHAPES,
    source_encodings=("json",),
)
