"""The dead-letter path: bad events are counted, logged with their reason, and written.

A dead-letter record is a JSON document::

    {"connector": "orders", "stage": "decode", "reason": "...", "time": 1767225600.0,
     "encoding": "json", "payload": <the document, or {"$base64": "..."} if undecodable>,
     "attributes": {...}, "metadata": {...}}

Without a dead-letter sink the event is logged (reason, stage, a payload excerpt) and
counted; it is never dropped silently.

Logging is rate-limited per connector run: the first bad event logs its WARNING at once,
the ones that follow within ``summary_interval`` (5 s) are counted, and one summary line
reports them, e.g. ``orders-to-avro: 40 events dead-lettered in the last 5 s, last reason:
decode: invalid JSON``. The summary is logged by the first bad event after the interval, by
:meth:`DeadLetterRouter.tick` (the connector calls it twice a second) or by
:meth:`DeadLetterRouter.flush_summary` (at the end of a run). Counters count every event.

Integers keep all their digits in the record (an event refused for an integer wider than
64 bits shows that integer as it came). A ``bson`` dead-letter sink cannot store such an
integer either, so its record carries the original payload bytes as ``{"$base64": ...}``.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from mstream.core import Batch, ConnectorCounters, Event
from mstream.encodings import encode
from mstream.encodings.extjson import loads_plain
from mstream.errors import DeliveryError, EventError, MstreamError
from mstream.providers.base import Sink
from mstream.stores.dead_letters import DeadLetterStore


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"$base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


_SINK_STEP = re.compile(r"^(sinks\[\d+\])")


def step_of(stage: str, reason: str) -> str:
    """The step a record resumes from when its caller did not say: a sink's from the
    reason's ``sinks[i]`` prefix (whatever the stage), the source's conversion otherwise.

    Example:
        >>> step_of("sink", "sinks[1] (mongo): duplicate key"), step_of("decode", "bad")
        ('sinks[1]', 'source')
        >>> step_of("validate", "sinks[0] (kafka): field 'id': expected long")
        'sinks[0]'

    """
    # a sink's reasons start with its step, also for a conversion it refused (stage
    # ``validate`` / ``encode``): such a replay goes to that sink only
    found = _SINK_STEP.match(reason)
    return found.group(1) if found else "source"


def _original(event: Event) -> dict[str, str]:
    return {"$base64": base64.b64encode(event.payload).decode("ascii")}


def dead_letter_record(connector: str, event: Event, reason: str, stage: str) -> dict[str, Any]:
    """The JSON-ready record written for a rejected event.

    Example:
        >>> r = dead_letter_record("c", Event(b"{bad", "json"), "invalid JSON", "decode")
        >>> r["payload"], r["stage"]
        ({'$base64': 'e2JhZA=='}, 'decode')
        >>> dead_letter_record("c", Event(b'{"id": 18446744073709551617}', "json"), "", "")[
        ...     "payload"]
        {'id': 18446744073709551617}
    """
    try:
        payload: Any = loads_plain(encode(event.doc, "json"))
    except EventError:
        payload = _original(event)
    return {
        "connector": connector,
        "stage": stage,
        "reason": reason,
        "time": time.time(),
        "encoding": event.encoding,
        "payload": payload,
        "attributes": _jsonable(event.attributes),
        "metadata": _jsonable(event.metadata),
    }


class DeadLetterRouter:
    """Receives ``reject(event, reason, stage)`` calls from every pipeline step.

    Args:
        connector: the connector name (in records and logs).
        counters: the connector's counters.
        sink: the dead-letter sink, or ``None`` to log only.
        encoding: the encoding the sink writes (``json`` or ``bson``).
        logger: where rejections are logged.
        timeout: seconds to wait for the dead-letter sink (and for another thread's
            write to it); beyond that the event is not safely stored and the call raises.
        summary_interval: seconds during which bad events after a logged one are counted
            into one summary line instead of logged one by one.
        clock: monotonic seconds (injected in tests).
        store: where every rejected event is also kept for listing, replay or discard
            (:mod:`mstream.stores.dead_letters`), with the bytes and ``step`` a replay
            resumes from.

    Example:
        >>> import sys
        >>> log = logging.getLogger("doctest.dead_letter")
        >>> log.propagate = False
        >>> handler = logging.StreamHandler(sys.stdout)
        >>> log.addHandler(handler)
        >>> now = [0.0]
        >>> reject = DeadLetterRouter("orders", ConnectorCounters(), None, logger=log,
        ...                           clock=lambda: now[0])
        >>> for n in range(3):
        ...     reject(Event(b"{bad", "json"), "invalid JSON", "decode")
        connector orders: rejected event decode (invalid JSON); payload starts b'{bad'
        >>> reject.counters.errors
        3
        >>> now[0] = 2.0
        >>> reject.flush_summary()
        orders: 2 events rejected in the last 2 s, last reason: decode: invalid JSON
        >>> log.removeHandler(handler)
        >>> log.propagate = True
    """

    def __init__(
        self,
        connector: str,
        counters: ConnectorCounters,
        sink: Sink | None,
        encoding: str = "json",
        logger: logging.Logger | None = None,
        timeout: float = 60.0,
        summary_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        store: DeadLetterStore | None = None,
    ) -> None:
        self.connector = connector
        self.store = store
        self.counters = counters
        self.sink = sink
        self.encoding = encoding
        self.logger = logger or logging.getLogger("mstream.dead_letter")
        self.timeout = timeout
        self.summary_interval = summary_interval
        self.clock = clock
        self._lock = threading.Lock()  # one write to the dead-letter sink at a time
        self._log_lock = threading.Lock()  # the summary state below; never held to log
        self._window_start: float | None = None  # when the last logged line's interval began
        self._counted = 0  # bad events since then, not yet logged
        self._last_reason = ""

    def at(self, step: str) -> Callable[[Event, str, str], None]:
        """This router for the pipeline step ``step`` (kept with each record, so a replay
        resumes there): ``source``, ``middlewares[i]``, ``middlewares[i].output``."""
        return lambda event, reason, stage: self(event, reason, stage, step=step)

    def __call__(self, event: Event, reason: str, stage: str, step: str | None = None) -> None:
        """Dead-letter one event; blocks until the dead-letter sink has written it.

        Raises:
            DeliveryError: the dead-letter sink or store failed, raised, or did not finish
                within ``timeout`` (the job fails, nothing is acked).
        """
        record = dead_letter_record(self.connector, event, reason, stage)
        self.counters.record_error(f"{stage}: {reason}", dead_lettered=self.sink is not None)
        self._log(event, reason, stage)
        if self.store is not None:
            kept = {
                **record,
                "step": step or step_of(stage, reason),
                "original": base64.b64encode(event.payload).decode("ascii"),
            }
            try:
                self.store.add(self.connector, kept)
            except MstreamError as exc:
                raise DeliveryError(f"dead letter not kept: {exc}") from None
        if self.sink is None:
            return
        try:
            payload = encode(record, self.encoding)
        except EventError:  # a value this encoding cannot hold: keep the original bytes
            record["payload"] = _original(event)
            payload = encode(record, self.encoding)
        dl_event = Event(payload, self.encoding, attributes=dict(event.attributes), doc=record)
        finished = threading.Event()
        failure: list[BaseException] = []

        def done(error: BaseException | None) -> None:
            if error is not None:
                failure.append(error)
            finished.set()

        if not self._lock.acquire(timeout=self.timeout):
            raise DeliveryError(f"dead-letter sink busy for more than {self.timeout:g}s")
        try:
            self.sink.write(Batch([dl_event], [], batched=False), done)
            if not finished.wait(self.timeout):
                raise DeliveryError(f"dead-letter sink did not finish within {self.timeout:g}s")
        except DeliveryError:
            raise
        except Exception as exc:
            raise DeliveryError(f"dead-letter sink failed: {exc}") from exc
        finally:
            self._lock.release()
        if failure:
            raise DeliveryError(f"dead-letter sink failed: {failure[0]}")

    def flush_summary(self) -> None:
        """Log the summary of the bad events counted and not yet logged, if any.

        Call it when the run ends (so the last summary is not lost) and, if you like,
        periodically; the next bad event after it is logged at once.
        """
        now = self.clock()
        with self._log_lock:
            summary = self._take_summary(now)
            self._window_start = None
        if summary is not None:
            self.logger.warning("%s", summary)

    def tick(self) -> None:
        """Log the pending summary once its interval has passed; call it periodically (the
        connector does, twice a second) so a flood's last summary is not held back until the
        next bad event."""
        now = self.clock()
        with self._log_lock:
            start = self._window_start
            if start is None or not self._counted or now - start < self.summary_interval:
                return
            summary = self._take_summary(now)
            self._window_start = None
        if summary is not None:
            self.logger.warning("%s", summary)

    def _log(self, event: Event, reason: str, stage: str) -> None:
        """Log a bad event at once, or count it into the summary of the current interval."""
        now = self.clock()
        with self._log_lock:
            if self._window_start is not None and now - self._window_start < self.summary_interval:
                self._counted += 1
                self._last_reason = f"{stage}: {reason}"
                return
            summary = self._take_summary(now)
            self._window_start = now
            if summary is not None:  # a flood goes on: this event opens the next summary
                self._counted = 1
                self._last_reason = f"{stage}: {reason}"
        if summary is not None:
            self.logger.warning("%s", summary)
            return
        self.logger.warning(
            "connector %s: %s event %s (%s)%s",
            self.connector,
            self._verb,
            stage,
            reason,
            "" if self.sink is not None else f"; payload starts {event.payload[:80]!r}",
        )

    def _take_summary(self, now: float) -> str | None:
        """The summary line of the counted events, resetting the count (lock held)."""
        if not self._counted or self._window_start is None:
            return None
        count, self._counted = self._counted, 0
        seconds = max(now - self._window_start, 1.0)
        return (
            f"{self.connector}: {count} event{'' if count == 1 else 's'} {self._verb} "
            f"in the last {seconds:.0f} s, last reason: {self._last_reason}"
        )

    @property
    def _verb(self) -> str:
        return "dead-lettered" if self.sink is not None else "rejected"
