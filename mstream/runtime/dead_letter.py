"""The dead-letter path: bad events are counted, logged with their reason, and written.

A dead-letter record is a JSON document::

    {"connector": "orders", "stage": "decode", "reason": "...", "time": 1767225600.0,
     "encoding": "json", "payload": <the document, or {"$base64": "..."} if undecodable>,
     "attributes": {...}, "metadata": {...}}

Without a dead-letter sink the event is logged (reason, stage, a payload excerpt) and
counted; it is never dropped silently.

Integers keep all their digits in the record (an event refused for an integer wider than
64 bits shows that integer as it came). A ``bson`` dead-letter sink cannot store such an
integer either, so its record carries the original payload bytes as ``{"$base64": ...}``.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from typing import Any

from mstream.core import Batch, ConnectorCounters, Event
from mstream.encodings import encode
from mstream.encodings.extjson import loads_plain
from mstream.errors import DeliveryError, EventError
from mstream.providers.base import Sink


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
    """

    def __init__(
        self,
        connector: str,
        counters: ConnectorCounters,
        sink: Sink | None,
        encoding: str = "json",
        logger: logging.Logger | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.connector = connector
        self.counters = counters
        self.sink = sink
        self.encoding = encoding
        self.logger = logger or logging.getLogger("mstream.dead_letter")
        self.timeout = timeout
        self._lock = threading.Lock()
        self._logged = 0

    def __call__(self, event: Event, reason: str, stage: str) -> None:
        """Dead-letter one event; blocks until the dead-letter sink has written it.

        Raises:
            DeliveryError: the dead-letter sink failed, raised, or did not finish within
                ``timeout`` (the job fails, nothing is acked).
        """
        record = dead_letter_record(self.connector, event, reason, stage)
        self.counters.record_error(f"{stage}: {reason}", dead_lettered=self.sink is not None)
        if self._logged < 100 or self._logged % 1000 == 0:
            excerpt = event.payload[:80]
            self.logger.warning(
                "connector %s: %s event %s (%s)%s",
                self.connector,
                "dead-lettered" if self.sink is not None else "rejected",
                stage,
                reason,
                "" if self.sink is not None else f"; payload starts {excerpt!r}",
            )
        self._logged += 1
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
