"""The Rx pipeline: batching (count and time, in virtual time), ack ordering, failures."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import reactivex
from mstream.operators import SinkTarget, batch, convert, deliver
from reactivex.scheduler import EventLoopScheduler
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

from mstream.core import Batch, Event, PositionTracker
from mstream.errors import DeliveryError, RejectedError
from mstream.providers.base import Done, Sink, SyncSink

on_next, on_completed, on_error = (
    ReactiveTest.on_next,
    ReactiveTest.on_completed,
    ReactiveTest.on_error,
)


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        pause.wait(0.005)
    raise AssertionError("condition not reached in time")


def ev(n: int, acks: list[int] | None = None) -> Event:
    ack = (lambda: acks.append(n)) if acks is not None else None
    return Event(b'{"n": %d}' % n, "json", ack=ack)


def test_count_batches_and_time_flush_in_virtual_time() -> None:
    scheduler = TestScheduler()
    events = [ev(i) for i in range(5)]
    source = scheduler.create_hot_observable(
        on_next(210, events[0]),
        on_next(220, [events[1], events[2]]),  # a chunk: fills the batch of 3 with events[0]
        on_next(300, events[3]),  # quiet afterwards: flushed by time at 300 + 50
        on_next(500, events[4]),
        on_completed(520),  # the partial batch is flushed on completion
    )
    results = scheduler.start(
        lambda: source.pipe(batch(3, max_wait=50.0, scheduler=scheduler)),  # virtual ticks
        created=100,
        subscribed=200,
        disposed=10_000,
    )
    emitted = [
        (m.time, [e.doc["n"] for e in m.value.value.events])
        for m in results.messages
        if m.value.kind == "N"
    ]
    assert emitted == [(220, [0, 1, 2]), (350, [3]), (520, [4])]
    assert all(m.value.value.batched for m in results.messages if m.value.kind == "N")


def test_time_flush_resets_per_batch() -> None:
    scheduler = TestScheduler()
    events = [ev(i) for i in range(3)]
    source = scheduler.create_hot_observable(
        on_next(210, events[0]), on_next(240, events[1]), on_next(270, events[2]), on_completed(900)
    )
    results = scheduler.start(lambda: source.pipe(batch(2, max_wait=50.0, scheduler=scheduler)))
    emitted = [(m.time, len(m.value.value)) for m in results.messages if m.value.kind == "N"]
    # [0,1] by count at 240; the timer of the first batch (due 260) must not flush [2]
    assert emitted == [(240, 2), (320, 1)]


class CountingScheduler(TestScheduler):
    """A test scheduler that counts relative schedules (the batch operator's timers)."""

    def __init__(self) -> None:
        super().__init__()
        self.timers = 0

    def schedule_relative(self, duetime: Any, action: Any, state: Any = None) -> Any:
        self.timers += 1
        return super().schedule_relative(duetime, action, state)


def test_partial_batch_begun_under_an_earlier_timer_still_waits_max_wait() -> None:
    scheduler = CountingScheduler()
    events = [ev(i) for i in range(4)]
    source = scheduler.create_hot_observable(
        on_next(210, events[0]),  # arms the one timer, due 260
        on_next(220, events[1]),  # full batch at 220; the timer stays pending
        on_next(230, events[2]),  # partial, due 280: the timer at 260 re-arms for 280
        on_next(400, events[3]),  # no timer pending: arms one due 450
        on_completed(600),
    )
    results = scheduler.start(lambda: source.pipe(batch(2, max_wait=50.0, scheduler=scheduler)))
    messages: list[Any] = results.messages
    emitted = [
        (m.time, [e.doc["n"] for e in m.value.value.events])
        for m in messages
        if m.value.kind == "N"
    ]
    assert emitted == [(220, [0, 1]), (280, [2]), (450, [3])]
    assert messages[-1] == on_completed(600)
    assert scheduler.timers == 3  # at 210 (for 260), 260 (re-armed for 280), 400 (for 450)


def test_many_full_batches_keep_one_pending_timer() -> None:
    scheduler = CountingScheduler()
    source: Subject[Event] = Subject()
    out: list[tuple[float, int]] = []
    source.pipe(batch(10, max_wait=3600.0, scheduler=scheduler)).subscribe(
        lambda b: out.append((scheduler.clock, len(b)))
    )
    for n in range(10_000):
        scheduler.advance_to(n * 0.1)
        for i in range(10):
            source.on_next(ev(n * 10 + i))
    assert len(out) == 10_000 and {size for _, size in out} == {10}
    assert scheduler.timers == 1  # one per full batch before: 10,000 queued for an hour
    for i in range(3):
        source.on_next(ev(i))  # a partial batch begun at 999.9, due 4599.9
    scheduler.advance_to(4599.0)  # the timer fired at 3600 and re-armed
    assert len(out) == 10_000 and scheduler.timers == 2
    scheduler.advance_to(4600.0)
    assert out[-1] == (pytest.approx(4599.9), 3) and scheduler.timers == 2


def test_error_drops_the_partial_batch_and_its_timer_never_emits() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, [ev(0), ev(1), ev(2)]), on_error(230, RuntimeError("source down"))
    )
    results = scheduler.start(lambda: source.pipe(batch(2, max_wait=50.0, scheduler=scheduler)))
    messages: list[Any] = results.messages
    assert [(m.time, m.value.kind) for m in messages] == [(210, "N"), (230, "E")]
    assert [e.doc["n"] for e in messages[0].value.value.events] == [0, 1]


def test_disposal_cancels_the_pending_timer() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(210, ev(0)), on_completed(900))
    results = scheduler.start(
        lambda: source.pipe(batch(2, max_wait=50.0, scheduler=scheduler)), disposed=230
    )
    assert results.messages == []


def test_timer_and_source_never_emit_at_once_on_a_real_timer_thread() -> None:
    timer = EventLoopScheduler()
    inside = threading.Lock()
    overlaps: list[int] = []
    out: list[int] = []

    def receive(b: Batch) -> None:
        if not inside.acquire(blocking=False):
            overlaps.append(len(b))
            return
        try:
            out.extend(e.doc["n"] for e in b.events)
        finally:
            inside.release()

    try:
        events = [ev(n) for n in range(20_000)]
        reactivex.from_iterable(events).pipe(batch(7, max_wait=0.0001, scheduler=timer)).subscribe(
            receive
        )
    finally:
        timer.dispose()
    assert overlaps == [] and out == list(range(20_000))


def test_unbatched_chunks_stay_independent_events() -> None:
    out: list[Batch] = []
    reactivex.of([ev(0), ev(1)], ev(2)).pipe(batch(None)).subscribe(out.append)
    assert [(len(b), b.batched) for b in out] == [(2, False), (1, False)]


class SlowSink(Sink):
    """Completes writes only when the test says so (an asynchronous sink)."""

    def __init__(self) -> None:
        self.pending: list[tuple[Batch, Done]] = []

    def write(self, batch: Batch, done: Done) -> None:
        self.pending.append((batch, done))


class ListSink(SyncSink):
    def __init__(self) -> None:
        self.docs: list[Any] = []

    def write_batch(self, batch: Batch) -> None:
        self.docs.extend(e.doc for e in batch.events)


def test_ack_only_after_every_sink_and_out_of_order_checkpoint() -> None:
    acks: list[int] = []
    tracker = PositionTracker()
    events = []
    for i in range(4):
        seq = tracker.add(i)
        events.append(
            Event(b"%d" % i, "json", ack=(lambda s=seq, n=i: (acks.append(n), tracker.ack(s))))
        )
    slow, fast = SlowSink(), ListSink()
    delivered: list[Batch] = []
    completed = threading.Event()

    def run() -> None:  # completion waits for the slow sink: run it as a source thread would
        reactivex.of(*[[e] for e in events]).pipe(
            batch(None), deliver([SinkTarget(fast, "json"), SinkTarget(slow, "json")], reject=print)
        ).subscribe(delivered.append, on_completed=completed.set)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: len(slow.pending) == 4)
    # the fast sink has everything, the slow one nothing: nothing is acknowledged
    assert acks == [] and tracker.committed() is None and not completed.is_set()
    # the slow sink finishes out of order: 2, 0, then 3, 1
    order = [2, 0, 3, 1]
    committed = []
    for i in order:
        slow.pending[i][1](None)
        committed.append(tracker.committed())
    assert acks == order
    assert committed == [None, 0, 0, 3]
    assert completed.wait(5) and len(delivered) == 4
    thread.join(5)


def test_sink_failure_is_not_acknowledged_and_errors_the_pipeline() -> None:
    acks: list[int] = []
    errors: list[Exception] = []

    class Failing(SyncSink):
        def write_batch(self, batch: Batch) -> None:
            if batch.events[0].doc["n"] == 1:
                raise DeliveryError("connection refused")

    reactivex.of(*[[ev(i, acks)] for i in range(3)]).pipe(
        batch(None), deliver([SinkTarget(Failing(), "json")], reject=print)
    ).subscribe(on_error=errors.append)
    assert acks == [0]
    assert [str(e) for e in errors] == ["connection refused"]


def test_rejected_by_sink_goes_to_dead_letter_and_is_acknowledged() -> None:
    acks: list[int] = []
    rejected: list[tuple[int, str, str]] = []

    class Picky(SyncSink):
        def write_batch(self, batch: Batch) -> None:
            if batch.events[0].doc["n"] == 1:
                raise RejectedError("HTTP 400: bad field")

    reactivex.of(*[[ev(i, acks)] for i in range(3)]).pipe(
        batch(None),
        deliver(
            [SinkTarget(Picky(), "json")],
            reject=lambda e, r, s: rejected.append((e.doc["n"], r, s)),
        ),
    ).subscribe()
    assert acks == [0, 1, 2]
    assert rejected == [(1, "sinks[0] (sink): HTTP 400: bad field", "sink")]


def test_bad_events_rejected_rest_of_batch_continues() -> None:
    rejected: list[str] = []
    sink = ListSink()
    events = [ev(0), Event(b"{nope", "json"), ev(2)]
    reactivex.of(events).pipe(
        batch(10),
        convert("bson", reject=lambda e, r, s: rejected.append(s)),
        deliver([SinkTarget(sink, "json")], reject=print),
    ).subscribe()
    assert sink.docs == [{"n": 0}, {"n": 2}]
    assert rejected == ["decode"]


def test_backpressure_bounds_in_flight_batches() -> None:
    slow = SlowSink()
    started = threading.Event()
    finished = threading.Event()

    def produce() -> None:
        started.set()
        reactivex.of(*[[ev(i)] for i in range(5)]).pipe(
            batch(None), deliver([SinkTarget(slow, "json")], reject=print, max_in_flight=2)
        ).subscribe(on_completed=finished.set)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    started.wait(5)
    # the producer is blocked after 2 in-flight batches until one completes
    wait_until(lambda: len(slow.pending) == 2)
    assert not finished.wait(0.2)
    assert len(slow.pending) == 2
    for released in range(5):
        wait_until(lambda n=released: len(slow.pending) > n)
        slow.pending[released][1](None)
    assert finished.wait(5)
    thread.join(5)


def test_events_out_counts_only_what_every_sink_took() -> None:
    import reactivex

    from mstream.core import ConnectorCounters
    from mstream.errors import EventsRejectedError
    from mstream.providers.base import Sink
    from operators import SinkTarget, deliver

    class RefuseOdd(Sink):
        def write(self, batch: Batch, done: Any) -> None:
            odd = [(e, "odd") for e in batch.events if e.doc["n"] % 2]
            done(EventsRejectedError(odd) if odd else None)

    class TakeAll(Sink):
        def write(self, batch: Batch, done: Any) -> None:
            done(None)

    counters = ConnectorCounters()
    events = [Event(b'{"n": %d}' % i, "json") for i in range(6)]
    rejected: list[str] = []
    reactivex.of(Batch.of(events, batched=False)).pipe(
        deliver(
            [SinkTarget(TakeAll(), "json"), SinkTarget(RefuseOdd(), "bson")],
            lambda e, reason, stage: rejected.append(reason),
            counters=counters,
        )
    ).subscribe()
    assert counters.events_out == 3 and len(rejected) == 3  # the odd ones reached one sink only


def test_a_shared_ack_is_settled_once_per_run_and_once_in_all() -> None:
    """A source chunk's events share one ack: a batch settles their run in one call, an event
    acknowledged on its own (a filter before batching) counts once, and the ack fires once."""
    from mstream.core import SharedAck

    fired: list[str] = []
    chunk_ack = SharedAck(5, lambda: fired.append("chunk"))
    other: list[int] = []
    events = [Event(b"{}", "json", ack=chunk_ack) for _ in range(5)]
    events[0].ack()  # type: ignore[misc]  # dropped by a filter before batching
    first = Batch.of([*events[1:3], ev(9, other)], batched=False)
    second = Batch.of(events[3:], batched=False)
    first.ack_all()
    assert fired == [] and other == [9]
    second.ack_all()
    assert fired == ["chunk"]


def test_json_verification_per_chunk_rejects_exactly_what_per_event_decoding_does() -> None:
    """The chunk-wide check vouches only for plain JSON; anything else is decoded per event."""
    from mstream.operators import convert_events

    def run(payloads: list[bytes]) -> tuple[list[Event], list[Event], list[str]]:
        events = [Event(p, "json") for p in payloads]
        bad: list[str] = []
        out = convert_events(events, "json", None, lambda e, r, s: bad.append(s), verify=True)
        return events, out, bad

    events, out, bad = run([b'{"a": 1}', b"[1, 2]", b'"s"'])
    assert out is events and bad == []
    assert not any(e.decoded for e in events)  # nothing kept: a passthrough never needs it
    events, out, bad = run([b'{"a": 1}', b'{"a": ', b"[]"])
    assert [e.payload for e in out] == [b'{"a": 1}', b"[]"] and bad == ["decode"]
    # an Extended JSON wrapper is checked (and converted) by the full decoder
    events, out, bad = run([b'{"at": {"$date": 0}}', b'{"oid": {"$oid": "zz"}}'])
    assert [e.payload for e in out] == [b'{"at": {"$date": 0}}'] and bad == ["decode"]
    assert out[0].decoded
    # an integer wider than 64 bits is read exactly, not as orjson's float
    events, out, bad = run([b'{"n": 18446744073709551617}'])
    assert out == events and events[0].doc == {"n": 18446744073709551617}
    # a document already at hand is not read again
    given = Event(b"not json", "json", doc={"a": 1})
    assert convert_events([given], "json", None, print, verify=True) == [given]


def test_freeze_startup_heap_freezes_once_per_process() -> None:
    """Run in a child process: freezing the test process's own heap would outlive the test."""
    import subprocess
    import sys

    code = (
        "import gc\n"
        "from mstream.core.heap import freeze_startup_heap\n"
        "assert freeze_startup_heap() is True and gc.get_freeze_count() > 0\n"
        "assert freeze_startup_heap() is False\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
