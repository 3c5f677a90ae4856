"""The recent log, kept in memory for ``GET /logs`` and ``GET /logs/stream``.

:class:`LogBuffer` is a logging handler holding the last ``capacity`` entries
(``[system.logs] buffer_capacity``, 10000). It is installed on the root logger beside the
stderr handler, so it sees the records the secret filter has already masked and capped.
An entry names the job when the line came from a job's logger (``mstream.connector.<job>``)
or says ``job <name>``.

Live followers (the SSE stream) subscribe with a callback; :meth:`LogBuffer.emit` runs on
whichever thread logged, so a follower must only hand the entry on (the API posts it to
the IOLoop with ``add_callback``) and never block.

Example:
    >>> import logging
    >>> buffer = LogBuffer(capacity=2)
    >>> log = logging.getLogger("mstream.connector.orders")
    >>> log.addHandler(buffer); log.setLevel(logging.INFO)
    >>> for n in range(3):
    ...     log.warning("lagging %d", n)
    >>> [(e["job_name"], e["level"], e["message"]) for e in buffer.query()]
    [('orders', 'warn', 'lagging 1'), ('orders', 'warn', 'lagging 2')]
    >>> log.removeHandler(buffer)
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

LEVELS = {"trace": 5, "debug": 10, "info": 20, "warn": 30, "error": 40}
"""The original's level names (``level`` filters keep this level and above)."""

_JOB_LOGGER = "mstream.connector."
_JOB_IN_TEXT = re.compile(r"\b(?:job|connector) ([A-Za-z0-9_.-]{1,100})")

Entry = dict[str, Any]
Follower = Callable[[Entry], None]


def level_name(levelno: int) -> str:
    """``warn`` for WARNING and so on (the original's names)."""
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    if levelno >= logging.INFO:
        return "info"
    return "debug" if levelno >= logging.DEBUG else "trace"


def parse_level(name: str) -> int:
    """The minimum level a ``level`` filter names.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    value = LEVELS.get(name.strip().lower())
    if value is None:
        raise ValueError(f"must be one of {', '.join(LEVELS)} (got {name[:20]!r})")
    return value


class LogBuffer(logging.Handler):
    """The last ``capacity`` log entries, queryable and followable.

    Args:
        capacity: entries kept (oldest dropped first).
    """

    def __init__(self, capacity: int = 10_000) -> None:
        super().__init__(logging.DEBUG)
        self.capacity = capacity
        self._entries: deque[Entry] = deque(maxlen=capacity)
        self._lock = threading.Lock()  # the deque and the followers; never held to call out
        self._followers: set[Follower] = set()
        self._seq = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record as an entry and hand it to every follower."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            return
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        job = None
        if record.name.startswith(_JOB_LOGGER):
            job = record.name[len(_JOB_LOGGER) :]
        else:
            found = _JOB_IN_TEXT.search(message[:200])
            job = found.group(1) if found else None
        with self._lock:
            self._seq += 1
            entry: Entry = {
                "id": self._seq,
                "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                    timespec="milliseconds"
                ),
                "level": level_name(record.levelno),
                "target": record.name,
                "job_name": job,
                "message": message,
                "_created": record.created,
                "_levelno": record.levelno,
            }
            self._entries.append(entry)
            followers = list(self._followers)
        for follower in followers:
            try:
                follower(entry)
            except Exception:  # a follower that fails is dropped, never the log
                self.unfollow(follower)

    def query(
        self,
        *,
        job_name: str | None = None,
        min_level: int = 0,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Entry]:
        """The newest ``limit`` entries matching the filters, oldest first."""
        with self._lock:
            entries = list(self._entries)
        found = [e for e in entries if matches(e, job_name, min_level, since)]
        return [public(e) for e in found[-limit:]] if limit > 0 else []

    def follow(self, follower: Follower) -> None:
        """Call ``follower(entry)`` for every new entry (from the logging thread)."""
        with self._lock:
            self._followers.add(follower)

    def unfollow(self, follower: Follower) -> None:
        """Stop calling ``follower``."""
        with self._lock:
            self._followers.discard(follower)


def matches(entry: Entry, job_name: str | None, min_level: int, since: float | None) -> bool:
    """Whether ``entry`` passes the ``/logs`` filters."""
    if job_name is not None and entry["job_name"] != job_name:
        return False
    if entry["_levelno"] < min_level:
        return False
    return since is None or entry["_created"] > since


def public(entry: Entry) -> Entry:
    """The entry as the API shows it (without the internal sort keys)."""
    return {k: v for k, v in entry.items() if not k.startswith("_")}
