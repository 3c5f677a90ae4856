"""Reusable Rx operators of the connector pipeline (installed as ``mstream.operators``).

Every operator is a function returning ``Callable[[Observable], Observable]`` for use with
``Observable.pipe``. Right after the source, :func:`batch` turns events into
:class:`~mstream.core.Batch` units; every later operator works per batch. Bad events are
handed to a ``reject(event, reason, stage)`` callback (the dead-letter path) and the batch
goes on; failures of a whole step (a transport error) go to ``on_error``.

=============== =========================================================================
``batch``       group events into batches by count, flushing partial batches after a time
``convert``     convert events to an encoding (decode / encode, schema validation)
``validate``    validate events against a schema (Avro or JSON Schema), any encoding
``middleware``  pass batches through a middleware (HTTP service, script, Python function)
``deliver``     write to every sink; acknowledge when all sinks are done
``filter``      drop events for good, acknowledging them (unlike stock ``filter``)
=============== =========================================================================

Example:
    >>> import reactivex
    >>> from mstream.core import Event
    >>> from mstream.providers.base import SyncSink
    >>> class Print(SyncSink):
    ...     def write_batch(self, b): print([e.doc for e in b.events])
    >>> events = [Event(b'{"n": %d}' % i, "json") for i in range(3)]
    >>> _ = reactivex.of(events).pipe(
    ...     batch(size=2),
    ...     convert("bson", reject=print),
    ...     deliver([SinkTarget(Print(), "json")], reject=print),
    ... ).subscribe()
    [{'n': 0}, {'n': 1}]
    [{'n': 2}]
"""

from ._batch import batch
from ._batchwise import map_each
from ._convert import convert, convert_batch, convert_events, validate
from ._deliver import SinkTarget, deliver
from ._filter import filter
from ._middleware import middleware

__all__ = [
    "SinkTarget",
    "batch",
    "convert",
    "convert_batch",
    "convert_events",
    "deliver",
    "filter",
    "map_each",
    "middleware",
    "validate",
]
