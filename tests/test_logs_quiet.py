"""Quiet logs: client-library repeats de-duplicated, dead-letter warnings rate-limited.

Both run on an injected clock, so no test sleeps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mstream import logs
from mstream.core import Batch, ConnectorCounters, Event
from mstream.log_dedupe import MAX_TRACKED_CHARS, RepeatFilter
from mstream.providers.base import SyncSink
from mstream.runtime.dead_letter import DeadLetterRouter


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ListHandler(logging.Handler):
    """Keeps the formatted messages it is given."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def repeats(clock: Clock) -> RepeatFilter:
    return RepeatFilter(window=60.0, max_keys=1000, clock=clock)


@contextmanager
def attach(name: str, repeats: RepeatFilter) -> Iterator[ListHandler]:
    """A non-propagating logger ``name`` whose only handler has the filter."""
    log = logging.getLogger(name)
    handler = ListHandler()
    handler.addFilter(repeats)
    log.addHandler(handler)
    log.propagate, log.level = False, logging.DEBUG
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.propagate, log.level = True, logging.NOTSET


@pytest.fixture
def kafka_out(repeats: RepeatFilter) -> Iterator[ListHandler]:
    with attach("kafka.quiet_test", repeats) as out:
        yield out


def test_first_line_passes_repeats_are_counted_and_summarised_after_the_window(
    clock: Clock, kafka_out: ListHandler
) -> None:
    log = logging.getLogger("kafka.quiet_test")
    for _ in range(41):
        log.warning("connect to %s failed", "broker:9092")
        clock.now += 1.0  # 41 lines over 41 s: all within the window of the first
    assert kafka_out.lines == ["connect to broker:9092 failed"]
    clock.now = 60.0
    log.warning("connect to %s failed", "broker:9092")
    assert kafka_out.lines == [
        "connect to broker:9092 failed",
        "connect to broker:9092 failed (repeated 40 times in the last 60 s)",
        "connect to broker:9092 failed",  # a new window begins with a line shown
    ]


def test_lines_differing_in_args_level_or_logger_are_not_merged(
    repeats: RepeatFilter, kafka_out: ListHandler
) -> None:
    log = logging.getLogger("kafka.quiet_test")
    log.warning("connect to %s failed", "b1")
    log.warning("connect to %s failed", "b2")
    log.error("connect to %s failed", "b1")
    with attach("pymongo.quiet_test", repeats) as other:
        logging.getLogger("pymongo.quiet_test").warning("connect to %s failed", "b1")
        assert other.lines == ["connect to b1 failed"]
    log.warning("connect to %s failed", "b1")  # the only repeat
    assert kafka_out.lines == [
        "connect to b1 failed",
        "connect to b2 failed",
        "connect to b1 failed",
    ]


def test_mstream_and_look_alike_loggers_are_never_deduplicated(repeats: RepeatFilter) -> None:
    for name in ("mstream.connector.orders", "kafkaesque", "googleapis_like"):
        with attach(name, repeats) as out:
            for _ in range(3):
                logging.getLogger(name).warning("same line")
            assert out.lines == ["same line"] * 3, name


def test_a_summary_is_logged_by_any_later_record_and_by_flush(
    clock: Clock, repeats: RepeatFilter, kafka_out: ListHandler
) -> None:
    log = logging.getLogger("kafka.quiet_test")
    log.warning("down")
    log.warning("down")
    clock.now = 61.0
    with attach("mstream.quiet_test", repeats) as mine:
        logging.getLogger("mstream.quiet_test").info("progress")  # mstream's own line
        assert mine.lines == ["progress"]
    assert kafka_out.lines == ["down", "down (repeated 1 time in the last 60 s)"]
    log.warning("down")
    log.warning("down")
    repeats.flush()  # before the window ends (at exit)
    repeats.flush()  # nothing left
    assert kafka_out.lines[2:] == ["down", "down (repeated 1 time in the last 60 s)"]


def test_tracked_lines_are_capped_and_the_oldest_evicted_with_its_summary(
    clock: Clock, kafka_out: ListHandler
) -> None:
    small = RepeatFilter(window=60.0, max_keys=3, clock=clock)
    kafka_out.filters = [small]
    log = logging.getLogger("kafka.quiet_test")
    log.warning("line 0")
    log.warning("line 0")
    for n in range(1, 4):  # the fourth distinct line evicts line 0
        log.warning("line %d", n)
    assert kafka_out.lines == [
        "line 0",
        "line 1",
        "line 2",
        "line 0 (repeated 1 time in the last 60 s)",
        "line 3",
    ]
    for n in range(1, 4):
        log.warning("line %d", n)  # still tracked: suppressed
    log.warning("line 0")  # forgotten: shown again (and evicts line 1)
    assert kafka_out.lines[5:] == ["line 1 (repeated 1 time in the last 60 s)", "line 0"]


def test_a_message_too_long_to_track_is_always_logged(kafka_out: ListHandler) -> None:
    long = "x" * (MAX_TRACKED_CHARS + 1)
    for _ in range(2):
        logging.getLogger("kafka.quiet_test").warning(long)
    assert kafka_out.lines == [long, long]


def test_concurrent_repeats_pass_once_and_are_all_counted(
    clock: Clock, kafka_out: ListHandler
) -> None:
    log = logging.getLogger("kafka.quiet_test")
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        for _ in range(500):
            log.warning("down")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clock.now = 60.0
    log.warning("down")
    assert kafka_out.lines == ["down", "down (repeated 3999 times in the last 60 s)", "down"]


def test_no_lock_is_held_while_a_summary_is_logged(
    clock: Clock, repeats: RepeatFilter, kafka_out: ListHandler
) -> None:
    """A handler that logs from another thread while the summary is emitted must not block."""
    log = logging.getLogger("kafka.quiet_test")
    finished: list[bool] = []

    def emit_and_log_elsewhere(record: logging.LogRecord) -> None:
        kafka_out.lines.append(record.getMessage())
        if "repeated" in record.getMessage():
            line = logging.makeLogRecord({"name": "kafka", "msg": "other", "levelno": 30})
            other = threading.Thread(target=lambda: finished.append(repeats.filter(line)))
            other.start()
            other.join(timeout=10)  # a held filter lock would keep it blocked

    kafka_out.emit = emit_and_log_elsewhere  # type: ignore[method-assign]
    log.warning("down")
    log.warning("down")
    clock.now = 60.0
    repeats.filter(logging.makeLogRecord({"name": "mstream", "msg": "tick", "levelno": 20}))
    assert finished == [True]
    assert kafka_out.lines == ["down", "down (repeated 1 time in the last 60 s)"]


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """Restore the root logger (pytest's own handlers) after setup_logging replaced them."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in logs.QUIET_LOGGERS}
    try:
        yield root
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)


def test_setup_logging_quiets_and_deduplicates_client_libraries(
    root_logging: logging.Logger,
) -> None:
    logs.setup_logging("debug")
    [handler] = root_logging.handlers
    assert logs.client_repeats in handler.filters
    for name in ("kafka", "google", "grpc", "urllib3", "pymongo", "tornado.access"):
        assert logging.getLogger(name).level == logging.WARNING, name
    assert root_logging.level == logging.DEBUG
    logs.setup_logging("info")  # again: the new handler gets the same single filter
    [handler] = root_logging.handlers
    assert handler.filters.count(logs.client_repeats) == 1


# --- dead-letter warnings --------------------------------------------------------------


class Stored(SyncSink):
    """A dead-letter sink that keeps what it is given."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def write_batch(self, batch: Batch) -> None:
        self.batches.append(batch)


@pytest.fixture
def dl_out() -> ListHandler:
    return ListHandler()


@contextmanager
def router(
    clock: Clock, out: ListHandler, sink: Stored | None = None
) -> Iterator[DeadLetterRouter]:
    log = logging.getLogger("mstream.connector.quiet_test")
    log.addHandler(out)
    log.propagate = False
    try:
        yield DeadLetterRouter("orders-to-avro", ConnectorCounters(), sink, logger=log, clock=clock)
    finally:
        log.removeHandler(out)
        log.propagate = True


def bad(n: int) -> Event:
    return Event(b"{bad %d" % n, "json")


def test_first_dead_letter_is_logged_at_once_the_rest_summarised_per_interval(
    clock: Clock, dl_out: ListHandler
) -> None:
    sink = Stored()
    with router(clock, dl_out, sink) as reject:
        reject(bad(0), "invalid JSON", "decode")
        assert dl_out.lines == [
            "connector orders-to-avro: dead-lettered event decode (invalid JSON)"
        ]
        for n in range(1, 41):
            clock.now = n * 0.1  # 40 more within the 5 s after the first
            reject(bad(n), "invalid JSON" if n < 40 else "HTTP 400: bad field", "sink")
        assert len(dl_out.lines) == 1
        clock.now = 5.0
        reject(bad(41), "invalid JSON", "decode")  # after the interval: the summary
        assert dl_out.lines[1:] == [
            "orders-to-avro: 40 events dead-lettered in the last 5 s, "
            "last reason: sink: HTTP 400: bad field"
        ]
        clock.now = 9.0
        reject.flush_summary()  # the run ends: event 41 is reported, no further event needed
        assert dl_out.lines[2:] == [
            "orders-to-avro: 1 event dead-lettered in the last 4 s, last reason: decode: invalid JSON"
        ]
        reject.flush_summary()
        assert len(dl_out.lines) == 3
        # counters and the dead-letter sink see every event, logged or not
        assert reject.counters.dead_lettered == reject.counters.errors == 42
        assert len(sink.batches) == 42


def test_after_a_quiet_interval_the_next_bad_event_is_logged_at_once(
    clock: Clock, dl_out: ListHandler
) -> None:
    with router(clock, dl_out) as reject:
        reject(bad(0), "invalid JSON", "decode")
        clock.now = 7.0  # nothing counted in the interval of the first
        reject(bad(1), "too large", "source")
        assert dl_out.lines == [
            "connector orders-to-avro: rejected event decode (invalid JSON); payload starts b'{bad 0'",
            "connector orders-to-avro: rejected event source (too large); payload starts b'{bad 1'",
        ]
        reject.flush_summary()  # nothing counted: nothing to say
        assert len(dl_out.lines) == 2
        assert (reject.counters.errors, reject.counters.dead_lettered) == (2, 0)


def test_after_flush_summary_the_next_bad_event_is_logged_at_once(
    clock: Clock, dl_out: ListHandler
) -> None:
    with router(clock, dl_out) as reject:
        reject(bad(0), "invalid JSON", "decode")
        reject(bad(1), "invalid JSON", "decode")
        reject.flush_summary()  # within the first second: shown as 1 s
        reject(bad(2), "invalid JSON", "decode")
        assert dl_out.lines[1] == (
            "orders-to-avro: 1 event rejected in the last 1 s, last reason: decode: invalid JSON"
        )
        assert dl_out.lines[2].startswith("connector orders-to-avro: rejected event decode")
        assert len(dl_out.lines) == 3
