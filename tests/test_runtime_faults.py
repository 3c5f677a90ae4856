"""Fault injection: failures on a sink's own callback thread fail the pipeline, never hang it."""

from __future__ import annotations

import threading
from typing import Any

import reactivex

from mstream.core import Batch, Event
from mstream.errors import DeliveryError, RejectedError
from mstream.providers.base import Sink
from operators import SinkTarget, deliver


class ThreadedRejectingSink(Sink):
    """Rejects every batch from another thread, as a Kafka or Pub/Sub callback would."""

    def write(self, batch: Batch, done: Any) -> None:
        threading.Thread(target=done, args=(RejectedError("bad"),)).start()


def test_dead_letter_failure_in_a_sink_callback_fails_the_pipeline() -> None:
    def reject(event: Event, reason: str, stage: str) -> None:
        raise DeliveryError("dead-letter sink down")

    acked: list[int] = []
    events = [Event(b"1", "json", ack=lambda: acked.append(1)) for _ in range(5)]
    errors: list[BaseException] = []
    ended = threading.Event()

    def on_error(error: BaseException) -> None:
        errors.append(error)
        ended.set()

    def run() -> None:
        reactivex.from_iterable([Batch.of([e], batched=False) for e in events]).pipe(
            deliver([SinkTarget(ThreadedRejectingSink(), "json")], reject, max_in_flight=1)
        ).subscribe(on_error=on_error, on_completed=ended.set)

    source = threading.Thread(target=run)
    source.start()
    assert ended.wait(10), "the pipeline hung"
    source.join(10)
    assert not source.is_alive(), "the source thread is stuck waiting for a slot"
    assert errors and "dead-letter sink down" in str(errors[0])
    assert acked == []  # nothing acknowledged: delivered again after a restart
