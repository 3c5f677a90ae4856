"""De-duplication of repeated log lines from client libraries.

A broker that is down makes a client library log the same warning many times a second.
:class:`RepeatFilter` lets the first line through, counts the identical ones that follow
within a window, and when the window has passed logs one line instead::

    WARNING kafka.conn: connect to broker:9092 failed (repeated 1234 times in the last 60 s)

Lines are identical when logger, level and the formatted message (template with its
arguments) are. The summary is logged when the next record reaches the filter after the
window (any record, a client library's or mstream's own), or by :meth:`RepeatFilter.flush`.

Example:
    >>> import sys
    >>> now = [0.0]
    >>> repeats = RepeatFilter(window=60.0, clock=lambda: now[0])
    >>> log = logging.getLogger("kafka.doctest")
    >>> log.propagate = False
    >>> handler = logging.StreamHandler(sys.stdout)
    >>> handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    >>> handler.addFilter(repeats)
    >>> log.addHandler(handler)
    >>> for _ in range(5):
    ...     log.warning("broker %s down", "b1")
    kafka.doctest: broker b1 down
    >>> now[0] = 61.0
    >>> log.warning("broker %s down", "b1")
    kafka.doctest: broker b1 down (repeated 4 times in the last 60 s)
    kafka.doctest: broker b1 down
    >>> log.removeHandler(handler)
    >>> log.propagate = True
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: Loggers of the client libraries whose repeated lines are de-duplicated (and children).
CLIENT_LOGGERS = ("kafka", "google", "grpc", "urllib3", "pymongo")

#: Longer messages are never de-duplicated, so tracking them costs bounded memory.
MAX_TRACKED_CHARS = 2048

_SUMMARY_MARK = "mstream_repeat_summary"

_Key = tuple[str, int, str]


@dataclass
class _Seen:
    """One tracked line: when its window began, where it was logged, repeats since."""

    started: float
    pathname: str
    lineno: int
    func: str | None
    repeats: int = 0


class RepeatFilter(logging.Filter):
    """A handler filter that suppresses repeats of client-library lines within a window.

    Thread-safe; the lock is never held while a summary line is logged. At most
    ``max_keys`` distinct lines are tracked: beyond that the oldest is forgotten (its
    summary logged first if it had repeats).

    Args:
        window: seconds during which repeats of a line are counted, not logged.
        max_keys: the most distinct lines tracked at once.
        loggers: names of the de-duplicated loggers; their children are included.
        clock: monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        window: float = 60.0,
        max_keys: int = 1000,
        loggers: Iterable[str] = CLIENT_LOGGERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.window = window
        self.max_keys = max_keys
        self.loggers = tuple(loggers)
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[_Key, _Seen] = OrderedDict()  # oldest window first

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is logged: ``False`` for a repeat within its window.

        Logs the summaries of the windows that have passed before answering.
        """
        if getattr(record, _SUMMARY_MARK, False):
            return True
        key = self._key(record)
        now = self.clock()
        with self._lock:
            ended = self._pop_ended(now)
            logged = True
            if key is not None:
                seen = self._seen.get(key)
                if seen is not None:
                    seen.repeats += 1
                    logged = False
                else:
                    self._seen[key] = _Seen(now, record.pathname, record.lineno, record.funcName)
                    while len(self._seen) > self.max_keys:
                        ended.append(self._seen.popitem(last=False))
        self._log_summaries(ended)
        return logged

    def flush(self) -> None:
        """Log the summary of every line repeated so far and forget them (at exit).

        Example:
            >>> repeats = RepeatFilter()
            >>> def down() -> logging.LogRecord:
            ...     return logging.makeLogRecord({"name": "kafka", "msg": "down", "levelno": 30})
            >>> repeats.filter(down()), repeats.filter(down())
            (True, False)
            >>> repeats.flush()  # logs "down (repeated 1 time in the last 60 s)" to kafka
            >>> repeats.filter(down())
            True
        """
        with self._lock:
            ended = list(self._seen.items())
            self._seen.clear()
        self._log_summaries(ended)

    def _key(self, record: logging.LogRecord) -> _Key | None:
        """The identity of a client-library line, or ``None`` if it is not de-duplicated."""
        name = record.name
        if not any(name == p or name.startswith(p + ".") for p in self.loggers):
            return None
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            return None
        if len(message) > MAX_TRACKED_CHARS:
            return None
        return (name, record.levelno, message)

    def _pop_ended(self, now: float) -> list[tuple[_Key, _Seen]]:
        """Remove the lines whose window has passed (called with the lock held)."""
        ended = []
        while self._seen:
            key, seen = next(iter(self._seen.items()))
            if now - seen.started < self.window:
                break
            del self._seen[key]
            ended.append((key, seen))
        return ended

    def _log_summaries(self, ended: list[tuple[_Key, _Seen]]) -> None:
        """Log one summary line per ended line that had repeats (without the lock)."""
        for (name, level, message), seen in ended:
            if not seen.repeats:
                continue
            summary = logging.LogRecord(
                name,
                level,
                seen.pathname,
                seen.lineno,
                "%s (repeated %d time%s in the last %g s)",
                (message, seen.repeats, "" if seen.repeats == 1 else "s", self.window),
                None,
                seen.func,
            )
            setattr(summary, _SUMMARY_MARK, True)
            logging.getLogger(name).handle(summary)


__all__ = ["CLIENT_LOGGERS", "MAX_TRACKED_CHARS", "RepeatFilter"]
