"""Replaying kept dead letters through a job's pipeline, from the step each one failed at.

A kept record (:mod:`mstream.stores.dead_letters`) holds the event's bytes as they were
at the failed step and that ``step``:

* ``source`` (undecodable or invalid after the source): the source's conversion, every
  middleware, every sink;
* ``middlewares[i]``: middleware ``i`` onwards and every sink;
* ``middlewares[i].output``: the conversion after middleware ``i`` onwards;
* ``sinks[i]``: only sink ``i`` (the other sinks already have the event).

The replay opens its own instances of those steps (the job may be running; a fixed script
or service is picked up), adds what it delivered to the job's ``events_out``, and delivers
with the usual guarantee: a record is deleted only once the run that carried it has
completed - every event delivered to its sinks (acknowledged after the sinks' flush) or
rejected again, in which case it is kept anew with the new reason. When the run fails (a
transport error), only the records already acknowledged are deleted; the others stay.

An *edit* replaces a record's event by a corrected document (JSON), sent from the same
step.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import reactivex

from mstream import operators as ops
from mstream.core import Batch, ConnectorCounters, Event
from mstream.encodings import encode
from mstream.errors import MstreamError
from mstream.providers.base import Middleware, Sink
from mstream.runtime.connector import Connector
from mstream.runtime.dead_letter import DeadLetterRouter
from mstream.runtime.steps import build_steps

REPLAY_TIMEOUT = 120.0
"""Seconds a replay run may take before it is abandoned (its records stay kept)."""


@dataclass
class ReplayOutcome:
    """What a replay did.

    Attributes:
        replayed: records sent.
        delivered: events that reached their sinks.
        rejected_again: events rejected again (kept anew, with the new reason).
        deleted: record ids removed from the kept dead letters.
        error: the transport error that ended the run early, if any.
    """

    replayed: int = 0
    delivered: int = 0
    rejected_again: int = 0
    deleted: list[int] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "replayed": self.replayed,
            "delivered": self.delivered,
            "rejected_again": self.rejected_again,
            "deleted": len(self.deleted),
            "error": self.error,
        }


def replay(
    connector: Connector,
    records: list[dict[str, Any]],
    edits: Mapping[int, Any] | None = None,
) -> ReplayOutcome:
    """Send ``records`` of ``connector``'s job through its pipeline (blocking).

    Raises:
        ConfigError: a record names a step the job no longer has.
    """
    outcome = ReplayOutcome()
    by_step: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_step.setdefault(str(record.get("step") or "source"), []).append(record)
    for step, group in by_step.items():
        _replay_step(connector, step, group, edits or {}, outcome)
        if outcome.error is not None:
            break
    return outcome


def _event(record: Mapping[str, Any], edits: Mapping[int, Any]) -> tuple[Event, list[Any]]:
    acked: list[Any] = []
    rid = record["id"]
    attributes = {str(k): str(v) for k, v in (record.get("attributes") or {}).items()}
    metadata = dict(record.get("metadata") or {})
    if rid in edits:
        payload, encoding = encode(edits[rid], "json"), "json"
    else:
        payload = base64.b64decode(str(record.get("original", "")))
        encoding = str(record.get("encoding") or "json")
    event = Event(
        payload,
        encoding,
        attributes=attributes,
        metadata=metadata,
        ack=lambda: acked.append(rid),
    )
    return event, acked


def _replay_step(
    connector: Connector,
    step: str,
    records: list[dict[str, Any]],
    edits: Mapping[int, Any],
    outcome: ReplayOutcome,
) -> None:
    counters = ConnectorCounters()
    store = connector.dead_letters
    reject = DeadLetterRouter(connector.name, counters, None, logger=connector.logger, store=store)
    schemas = connector._load_schemas()
    opened: list[Sink | Middleware] = []
    try:
        pipeline, targets = build_steps(
            connector, schemas, reject, opened, counters, resume=step, verify=True
        )
        pipeline.append(ops.deliver(targets, reject, counters=counters))
        events, acks = [], []
        for record in records:
            event, acked = _event(record, edits)
            events.append(event)
            acks.append(acked)
        finished = threading.Event()
        failure: list[BaseException] = []

        def on_error(error: BaseException) -> None:
            failure.append(error)
            finished.set()

        reactivex.of(Batch.of(events, batched=False)).pipe(*pipeline).subscribe(
            on_error=on_error, on_completed=finished.set
        )
        if not finished.wait(REPLAY_TIMEOUT):
            failure.append(TimeoutError(f"replay did not finish within {REPLAY_TIMEOUT:.0f}s"))
        if not failure:
            for target in targets:
                target.sink.flush()
        if failure:
            outcome.error = str(failure[0]) or type(failure[0]).__name__
            done = [r["id"] for r, acked in zip(records, acks, strict=True) if acked]
        else:
            done = [r["id"] for r in records]
        # every event carried to the end was either delivered or rejected again (and kept)
        outcome.replayed += len(records)
        outcome.rejected_again += counters.errors
        delivered = max(0, len(done) - counters.errors)
        outcome.delivered += delivered
        if delivered:
            connector.counters.record_out(delivered)  # the job's counters show the replay
        if store is not None and done:
            store.delete(connector.name, done)
        outcome.deleted += done
    except MstreamError as exc:
        outcome.error = str(exc)
    finally:
        for item in reversed(opened):
            try:
                item.close()
            except Exception:
                connector.logger.warning("replay: closing a step failed", exc_info=True)
