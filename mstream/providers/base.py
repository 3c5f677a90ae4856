"""The provider contract: sources, sinks and middlewares, and how a provider declares them.

A provider (``generator``, ``file``, ``kafka``, ...) is a module exposing ``PROVIDER``, a
:class:`ProviderSpec` that declares its service options (a marshmallow schema, with
secret fields marked) and factories for the roles it supports.

The runtime contract follows Benthos and Quix Streams:

* a :class:`Source` runs on its own thread and calls ``emit(events)`` with each chunk it
  reads; every event carries an ``ack`` that the pipeline calls once every sink has
  finished with it. ``emit`` blocks while the pipeline is busy: that is the backpressure.
* a :class:`Sink` receives whole :class:`~mstream.core.Batch` objects and reports
  completion through ``done(error)``, possibly later from another thread (asynchronous
  producers); synchronous sinks subclass :class:`SyncSink`.
* a :class:`Middleware` turns a batch's events into new events; bad events go to
  ``reject`` (the dead-letter path) and the rest continue.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from marshmallow import Schema

from mstream.core import Batch, ConnectorCounters, Event

if TYPE_CHECKING:
    from mstream.config.model import ServiceConfig, StepConfig
    from mstream.encodings import StepSchema

Emit = Callable[[list[Event] | Batch], None]
"""``emit(chunk)``: hand the pipeline a chunk, as events or as a batch of records."""
Done = Callable[[BaseException | None], None]
Reject = Callable[[Event, str, str], None]
"""``reject(event, reason, stage)``: hand a bad event to the dead-letter path."""


@dataclass
class StepContext:
    """What a provider factory gets besides its configuration.

    Attributes:
        connector: the connector (job) name.
        role: ``source``, ``sink`` or ``middleware``.
        index: the step's index in its list (sinks[i], middlewares[i]).
        counters: the connector's counters (retries are counted by providers).
        stopping: set when the connector is stopping; long waits must watch it.
        resume_position: for sources, the last saved checkpoint position, if any.
        checkpointing: for sources, whether the connector saves checkpoints.
        logger: a logger named after the connector.
    """

    connector: str
    role: str
    index: int = 0
    counters: ConnectorCounters = field(default_factory=ConnectorCounters)
    stopping: threading.Event = field(default_factory=threading.Event)
    resume_position: Any = None
    checkpointing: bool = False
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("mstream"))


class Source(ABC):
    """A source of events, run by the connector on a thread of its own."""

    def open(self) -> None:  # noqa: B027 - optional hook
        """Connect (called on the source thread before :meth:`run`)."""

    @abstractmethod
    def run(self, emit: Emit, stopping: threading.Event) -> None:
        """Read events and ``emit`` them in chunks until the source ends or ``stopping``.

        Return normally when the source is exhausted (a finite file or generator) or when
        ``stopping`` is set; raise :class:`~mstream.errors.DeliveryError` (or any error) when
        the source fails.
        """

    def position(self) -> Any:
        """The position safe to checkpoint now (every earlier event acknowledged), or None."""
        return None

    def commit(self) -> None:  # noqa: B027 - optional hook
        """Commit acknowledged positions upstream (Kafka offsets); called on the source thread
        between chunks and at the end."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (called on the source thread after :meth:`run`)."""


class Sink(ABC):
    """A sink: writes batches and says when each is done."""

    def open(self) -> None:  # noqa: B027 - optional hook
        """Connect; called once before the first write."""

    @abstractmethod
    def write(self, batch: Batch, done: Done) -> None:
        """Write ``batch`` and call ``done(None)`` once it is durable, or ``done(error)``.

        A :class:`~mstream.errors.RejectedError` rejects the batch's events for good (they are
        dead-lettered); any other error fails the connector without acknowledging, so the
        events are delivered again after the restart.
        """

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Wait until everything written so far is done (called on stop and checkpoint)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release connections."""


class SyncSink(Sink):
    """A sink whose writes complete before :meth:`write_batch` returns."""

    def write(self, batch: Batch, done: Done) -> None:
        """Run :meth:`write_batch` and report its outcome to ``done``."""
        try:
            self.write_batch(batch)
        except Exception as exc:
            done(exc)
        else:
            done(None)

    @abstractmethod
    def write_batch(self, batch: Batch) -> None:
        """Write every event of ``batch`` (as one array when ``batch.batched``)."""


class Middleware(ABC):
    """A transformation step between the source and the sinks.

    Attributes:
        filtered: events this step dropped on purpose so far, for steps that see each
            event's outcome (a script returning nothing) and set ``reports_filtered``.
            For other steps (an HTTP service answering a shorter array) the pipeline
            counts the shortfall of each batch instead.
    """

    reports_filtered: bool = False
    filtered: int = 0

    def open(self) -> None:  # noqa: B027 - optional hook
        """Connect / compile; called once before the first batch."""

    @abstractmethod
    def process(self, batch: Batch, reject: Reject) -> list[Event]:
        """Return the transformed events of ``batch`` (fewer, as many, or more).

        Events that cannot be transformed go to ``reject(event, reason, "middleware")``;
        transport failures raise :class:`~mstream.errors.DeliveryError` after retries.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


SourceFactory = Callable[["ServiceConfig", "StepConfig", StepContext], Source]
SinkFactory = Callable[["ServiceConfig", "StepConfig", StepContext], Sink]
MiddlewareFactory = Callable[["ServiceConfig", "StepConfig", StepContext], Middleware]
SchemaLoader = Callable[["ServiceConfig", str], "StepSchema"]


@dataclass(frozen=True)
class ProviderSpec:
    """What a provider declares.

    Attributes:
        name: the ``provider`` value in a service definition.
        service_schema: marshmallow schema of the provider's own service options (besides
            ``name`` and ``provider``); unknown keys are rejected by it.
        secret_fields: option names whose values are masked in responses and logs.
        source / sink / middleware: factories for the roles the provider supports.
        schema_loader: loads the schema (Avro or JSON Schema) named by ``resource``.
        step_options: marshmallow schema of extra keys a step of this provider accepts.
        needs_resource: whether steps must name a ``resource``.
    """

    name: str
    service_schema: type[Schema]
    secret_fields: frozenset[str] = frozenset()
    source: SourceFactory | None = None
    sink: SinkFactory | None = None
    middleware: MiddlewareFactory | None = None
    schema_loader: SchemaLoader | None = None
    step_options: type[Schema] | None = None
    needs_resource: bool = True
    describe: Callable[[Mapping[str, Any]], str] | None = None
    resources: tuple[str, ...] | None = None
    """The only resources a step of this provider may name (checked by validation), if fixed."""
    source_encodings: tuple[str, ...] | None = None
    """The only encodings a source of this provider reads (``input_encoding``), when fixed:
    a generator makes JSON, a change stream BSON; ``None``: any."""
    check_step: Callable[[ServiceConfig, str], list[str]] | None = None
    """Offline checks of a step's resource at validation (a script exists and compiles):
    ``check_step(service, resource)`` returns the problems, without a path."""

    def roles(self) -> list[str]:
        """The roles this provider supports, for error messages."""
        found = [("source", self.source), ("sink", self.sink), ("middleware", self.middleware)]
        return [role for role, factory in found if factory is not None]
