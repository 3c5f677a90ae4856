"""``deliver``: write each batch to every sink, acknowledge when all are done."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reactivex import Observable, abc

from mstream.core import Batch, ConnectorCounters, Event
from mstream.encodings import StepSchema
from mstream.errors import DeliveryError, RejectedError
from mstream.providers.base import Reject, Sink

from ._convert import convert_batch, require_avro_schema

_POLL = 0.05
"""Seconds between checks for a failure while waiting for a free in-flight slot."""


@dataclass(frozen=True)
class SinkTarget:
    """A sink with the encoding (and schema) it writes.

    ``position`` is the sink's index in its job (``sinks[i]`` in reasons) when it differs
    from its place in the targets given to :func:`deliver` (a replay to one sink).

    Raises:
        ConfigError: ``avro`` with a JSON Schema.
    """

    sink: Sink
    encoding: str
    schema: StepSchema | None = None
    name: str = "sink"
    position: int | None = None

    def __post_init__(self) -> None:
        require_avro_schema(self.encoding, self.schema, f"output of {self.name}")


class _Completion:
    """Counts sink completions of one batch; the last one acknowledges the batch."""

    __slots__ = ("batch", "failed", "lock", "refused", "remaining")

    def __init__(self, batch: Batch, sinks: int) -> None:
        self.batch = batch
        self.remaining = sinks
        self.failed = False
        self.refused: set[int] = set()  # ids of the batch's events some sink refused
        self.lock = threading.Lock()

    def refuse(self, event_id: int) -> None:
        """Note that a sink refused the batch's event with this id (it is not "out")."""
        with self.lock:
            self.refused.add(event_id)

    def sink_done(self) -> bool:
        """Count one sink as done; ``True`` for the last one of a batch that did not fail."""
        with self.lock:
            self.remaining -= 1
            return self.remaining == 0 and not self.failed

    def mark_failed(self) -> bool:
        """Mark the batch failed; ``True`` only the first time (its slot is released once)."""
        with self.lock:
            first = not self.failed
            self.failed = True
            return first


class _Origins:
    """Which of a batch's events a converted event came from (looked up on a refusal only).

    Example:
        >>> a, b = Event(b"1", "json"), Event(b"2", "json")
        >>> batch = Batch.of([a, b], batched=False)
        >>> sent = batch.with_events([b.converted("bson")])
        >>> _Origins(batch, sent, {id(a)}).of(sent.events[0]) == id(b)
        True
    """

    __slots__ = ("_batch", "_by_id", "_sent", "_unconverted")

    def __init__(self, batch: Batch, sent: Batch, unconverted: set[int]) -> None:
        self._batch, self._sent, self._unconverted = batch, sent, unconverted
        self._by_id: dict[int, int] | None = None

    def of(self, event: Event) -> int:
        """The id of the batch's event that ``event`` was converted from (its own if none)."""
        if self._sent is self._batch:  # nothing converted: events are their own
            return id(event)
        if self._by_id is None:
            kept = [e for e in self._batch.events if id(e) not in self._unconverted]
            self._by_id = {id(c): id(o) for o, c in zip(kept, self._sent.events, strict=False)}
        return self._by_id.get(id(event), id(event))


def _labelled(reject: Reject, label: str) -> Reject:
    """``reject`` with the sink named in the reason."""

    def labelled(event: Event, reason: str, stage: str) -> None:
        reject(event, f"{label}: {reason}", stage)

    return labelled


def deliver(
    targets: Sequence[SinkTarget],
    reject: Reject,
    *,
    max_in_flight: int = 32,
    counters: ConnectorCounters | None = None,
    abandon: threading.Event | None = None,
    drain_timeout: float = 120.0,
) -> Callable[[Observable[Batch]], Observable[Batch]]:
    """Write each batch to every sink; emit it once all sinks are done and it is acknowledged.

    Each sink gets the batch converted to its own encoding (events that fail conversion are
    dead-lettered through ``reject``). A batch's source acknowledgements run exactly once,
    after the last sink reported success. A sink error that is a
    :class:`~mstream.errors.RejectedError` dead-letters that sink's events and counts as
    done; any other sink error goes to ``on_error`` and the batch is never acknowledged, so
    it is delivered again after a restart (at-least-once).

    At most ``max_in_flight`` batches wait for asynchronous sinks; the source thread
    blocks beyond that (backpressure, not an unbounded queue). Completion waits for every
    in-flight batch, unless a sink failed or ``abandon`` is set (a stop without draining);
    sinks that have not finished after ``drain_timeout`` seconds fail the pipeline (the
    batches stay unacknowledged) rather than hang it.

    Example:
        >>> import reactivex
        >>> from mstream.core import Event
        >>> from mstream.providers.base import SyncSink
        >>> class Collect(SyncSink):
        ...     def __init__(self): self.seen = []
        ...     def write_batch(self, batch): self.seen += [e.doc for e in batch.events]
        >>> a, b, acked = Collect(), Collect(), []
        >>> ev = Event(b'{"n": 1}', "json", ack=lambda: acked.append(a.seen + b.seen))
        >>> _ = reactivex.of(Batch.of([ev], batched=False)).pipe(
        ...     deliver([SinkTarget(a, "json"), SinkTarget(b, "bson")], print)).subscribe()
        >>> acked
        [[{'n': 1}, {'n': 1}]]
    """

    def operator(source: Observable[Batch]) -> Observable[Batch]:
        def subscribe(
            observer: abc.ObserverBase[Batch], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            slots = threading.BoundedSemaphore(max_in_flight)
            sink_rejects = [
                _labelled(reject, f"sinks[{i if t.position is None else t.position}] ({t.name})")
                for i, t in enumerate(targets)
            ]
            emit_lock = threading.Lock()
            state = {"failed": False, "completed": False}

            def fail(error: BaseException) -> None:
                with emit_lock:
                    if state["failed"]:
                        return
                    state["failed"] = True
                observer.on_error(
                    error if isinstance(error, Exception) else RuntimeError(str(error))
                )

            def finish(completion: _Completion) -> None:
                batch = completion.batch
                try:
                    batch.ack_all()
                except Exception as exc:  # an ack callback failed: the position is unsafe
                    fail(exc)
                    return
                finally:
                    slots.release()
                if counters is not None:  # delivered to every sink: not refused by any
                    counters.record_out(len(batch) - len(completion.refused))
                with emit_lock:
                    if not state["failed"]:
                        observer.on_next(batch)

            def make_done(
                completion: _Completion, sent: Batch, label_reject: Reject, origin: _Origins
            ) -> Callable[[BaseException | None], None]:
                def done(error: BaseException | None) -> None:
                    # Runs on the sink's own thread (a Kafka or Pub/Sub callback), where an
                    # escaping exception would be swallowed and the slot never released:
                    # any failure here, the dead-letter path included, fails the pipeline.
                    try:
                        settle(error)
                    except Exception as exc:
                        if completion.mark_failed():
                            slots.release()
                        fail(exc)

                def settle(error: BaseException | None) -> None:
                    if error is not None:
                        if isinstance(error, RejectedError):
                            # ``rejected``: (event, reason) pairs when only some events failed
                            pairs = getattr(error, "rejected", None)
                            if pairs is None:
                                pairs = [(event, str(error)) for event in sent.events]
                            for event, reason in pairs:
                                completion.refuse(origin.of(event))
                                label_reject(event, reason, "sink")
                        else:
                            if completion.mark_failed():
                                slots.release()
                            fail(error)
                            return
                    if completion.sink_done():
                        finish(completion)

                return done

            def on_next(batch: Batch) -> None:
                # Backpressure that sees a failure: the source thread wakes and stops
                # reading instead of waiting forever for a slot that is never released.
                while not state["failed"] and not slots.acquire(timeout=_POLL):
                    pass
                if state["failed"]:
                    raise DeliveryError("the pipeline failed; the source stops reading")
                completion = _Completion(batch, len(targets))
                if not len(batch):
                    completion.remaining = 0
                    finish(completion)
                    return
                for target, target_reject in zip(targets, sink_rejects, strict=True):
                    try:
                        unconverted: set[int] = set()

                        def refuse_conversion(
                            event: Event,
                            reason: str,
                            stage: str,
                            to: Reject = target_reject,
                            seen: set[int] = unconverted,
                        ) -> None:
                            seen.add(id(event))
                            completion.refuse(id(event))
                            to(event, reason, stage)

                        sent = convert_batch(
                            batch, target.encoding, target.schema, refuse_conversion
                        )
                        origin = _Origins(batch, sent, unconverted)
                        done = make_done(completion, sent, target_reject, origin)
                        if len(sent):
                            target.sink.write(sent, done)
                        else:
                            done(None)
                    except Exception as exc:
                        if completion.mark_failed():
                            slots.release()
                        fail(exc)
                        return

            def on_completed() -> None:
                held = 0
                deadline = time.monotonic() + drain_timeout
                while held < max_in_flight:  # wait for every in-flight batch
                    if state["failed"] or (abandon is not None and abandon.is_set()):
                        break
                    if time.monotonic() > deadline:
                        fail(
                            DeliveryError(
                                f"sinks did not finish in-flight writes within {drain_timeout:g}s"
                            )
                        )
                        break
                    if slots.acquire(timeout=_POLL):
                        held += 1
                for _ in range(held):
                    slots.release()
                with emit_lock:
                    if state["failed"]:
                        return
                    state["completed"] = True
                observer.on_completed()

            return source.subscribe(on_next, fail, on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return operator
