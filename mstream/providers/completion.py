"""When an asynchronous sink is done with a batch: one outcome from many message callbacks.

An asynchronous sink (the Kafka producers, the Pub/Sub publisher) turns a batch into
messages whose results arrive later, on the client's threads. :class:`Completion` counts
them and calls the batch's ``done`` exactly once:

* with the first transport error (the batch is not acknowledged; the connector restarts);
* or, once every message is settled, with None — or with an
  :class:`~mstream.errors.EventsRejectedError` naming exactly the events refused for good
  one by one (too large, say), so the deliver operator dead-letters those and
  acknowledges the rest.

Example:
    >>> from mstream.core import Batch, Event
    >>> outcomes = []
    >>> c = Completion(2, outcomes.append, "sink 'out'")
    >>> c.ok(); c.reject(Event(b"{}", "json"), "too large")
    >>> type(outcomes[0]).__name__, str(outcomes[0])
    ('EventsRejectedError', 'too large')
    >>> c = Completion(2, outcomes.append, "sink 'out'")
    >>> c.fail(OSError("connection reset")); c.ok(); c.ok()
    >>> str(outcomes[1]), len(outcomes)
    ("sink 'out': OSError: connection reset", 2)
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from mstream.core import Batch, Event
from mstream.errors import DeliveryError, EventsRejectedError, RejectedError
from mstream.providers.base import Done

M = TypeVar("M")

Classify = Callable[[BaseException], BaseException]
"""Turns a client's error into an mstream error: a RejectedError when the message can
never be accepted as it is, else a DeliveryError."""


class Completion:
    """Calls ``done`` once: with the first error, or after ``n`` messages are settled.

    A message is settled when the server acknowledged it (:meth:`ok`) or when it was
    refused for good on its own (:meth:`reject`). Successes are counted with ``next`` on
    an ``itertools.count`` (atomic in CPython), so only the last one takes the lock.

    Args:
        n: how many messages to wait for.
        done: the batch's completion callback.
        what: the sink, for messages (``"kafka sink 'out'"``).
        classify: turns a client error into an mstream error (default: a DeliveryError
            naming ``what`` and the error).
        rejected: events already refused before sending, as ``(event, reason)`` pairs.
    """

    __slots__ = ("classify", "counter", "done", "finished", "lock", "n", "rejected", "what")

    def __init__(
        self,
        n: int,
        done: Done,
        what: str,
        classify: Classify | None = None,
        rejected: list[tuple[Event, str]] | None = None,
    ) -> None:
        self.n = n
        self.counter = itertools.count(1)
        self.done = done
        self.finished = False
        self.lock = threading.Lock()
        self.what = what
        self.classify = classify
        self.rejected: list[tuple[Event, str]] = rejected if rejected is not None else []

    def ok(self, *_: Any) -> None:
        """One message acknowledged (usable as a client callback: arguments are ignored)."""
        if next(self.counter) == self.n:
            self._finish(EventsRejectedError(self.rejected) if self.rejected else None)

    def ok_many(self, count: int) -> None:
        """``count`` messages acknowledged at once.

        Example:
            >>> outcomes = []
            >>> c = Completion(3, outcomes.append, "sink")
            >>> c.ok_many(2); outcomes
            []
            >>> c.ok_many(1); outcomes
            [None]
        """
        if count and self.n in itertools.islice(self.counter, count):
            self._finish(EventsRejectedError(self.rejected) if self.rejected else None)

    def reject(self, event: Event, reason: str) -> None:
        """The message of ``event`` is refused for good: it alone is dead-lettered."""
        with self.lock:
            self.rejected.append((event, reason))
        self.ok()

    def fail(self, error: BaseException) -> None:
        """The batch failed (the first error wins; later outcomes are ignored)."""
        self._finish(self._mstream_error(error))

    def fail_event(self, event: Event, error: BaseException) -> None:
        """The message of ``event`` failed: refused for good rejects it alone, else all fail."""
        error = self._mstream_error(error)
        if isinstance(error, RejectedError):
            self.reject(event, str(error))
        else:
            self._finish(error)

    def finish_if_empty(self) -> bool:
        """Report at once when there is no message to wait for; True if it did."""
        if self.n:
            return False
        self._finish(EventsRejectedError(self.rejected) if self.rejected else None)
        return True

    def _mstream_error(self, error: BaseException) -> BaseException:
        if isinstance(error, DeliveryError | RejectedError):
            return error
        if self.classify is not None:
            return self.classify(error)
        return DeliveryError(f"{self.what}: {type(error).__name__}: {error}")

    def _finish(self, outcome: BaseException | None) -> None:
        with self.lock:
            if self.finished:
                return
            self.finished = True
        self.done(outcome)


def messages_of(
    client: Any, build: Callable[[Batch], list[M]], batch: Batch, done: Done, what: str
) -> list[M] | None:
    """The messages ``batch`` becomes, or None after telling ``done`` why there are none.

    A sink whose client is not open fails the batch (a DeliveryError: the connector
    restarts); a batch that cannot be encoded is refused for good (a RejectedError: its
    events are dead-lettered).

    Example:
        >>> outcomes = []
        >>> messages_of(None, list, Batch.of([], batched=False), outcomes.append, "sink")
        >>> str(outcomes[0])
        'sink is not open'
    """
    if client is None:
        done(DeliveryError(f"{what} is not open"))
        return None
    try:
        return build(batch)
    except Exception as exc:
        done(RejectedError(f"{what}: cannot encode the batch: {exc}"))
        return None
