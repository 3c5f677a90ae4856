"""``provider = "mongodb"``: a change-stream source, an insert/replace sink and a schema registry.

Service options:

=============================  ==========  =====================================================
``connection_string``          (required)  ``mongodb://`` or ``mongodb+srv://`` URI; its
                                           password and secret query parameters are masked
                                           in API responses and logs.
``db_name``                    (required)  the database of every step of this service.
``write_mode``                 ``insert``  sink: ``insert`` or ``replace`` (upsert by ``_id``).
``chunk_size``                 500         source: most change events emitted in one chunk.
``max_await_time_ms``          200         source: how long one read waits for new changes
                                           (a stop is honoured within about this long).
``max_retries``                3           sink: retries of a write after a transport error.
``base_backoff_ms``            200         sink: first retry delay, doubled each retry.
=============================  ==========  =====================================================

Source: a change stream (``full_document="updateLookup"``) on the collection named by the
step's ``resource``. Each change becomes one event whose payload is raw BSON: the full
document for ``insert``, ``update`` and ``replace`` and the document key (``{"_id": ...}``)
for ``delete`` (and for an update whose document was deleted before the lookup). The
pipeline converts it to the step's ``output_encoding`` (``json`` gives MongoDB Extended
JSON; ``avro`` needs a ``schema_id``). Attributes: ``operation_type``, ``database``,
``collection``; metadata: those plus ``resume_token``, ``document_key``, ``cluster_time``
(and ``wall_time`` when the server sends it). Events without a document (``drop``,
``rename``, ``dropDatabase``, ...) are logged and skipped; after an ``invalidate`` the stream
is reopened with ``start_after`` so it follows a re-created collection.

The checkpoint is ``{"resume_token": ..., "namespace": "db.collection"}``: the token of the
latest change that, with every earlier one, all sinks acknowledged (a
:class:`~mstream.core.PositionTracker`). While the stream is idle the server's
post-batch resume token is recorded too, so a quiet collection's checkpoint stays fresh. A
restarted connector resumes after the saved token (``resume_after``); without one it starts
at *now*.

Sink: the collection named by ``resource``. Each batch (a chunk, or a ``batch = { kind =
"count" }`` unit) is one unordered bulk write: ``insert_many`` in ``insert`` mode, ``ReplaceOne
(upsert=True)`` by ``_id`` in ``replace`` mode. Bad events are dead-lettered one by one with
the reason and the rest of the batch is written: a payload that is not a document, a
document without ``_id`` in ``replace`` mode, a document the server refuses. In ``insert`` mode
a duplicate ``_id`` whose stored document is *identical* counts as already written (the
redelivery of an event after a restart); a duplicate with different content is
dead-lettered. Documents without ``_id`` get an ``ObjectId`` before the first attempt, so a
retried write does not insert them twice.

Schema registry: a ``schemas`` entry whose service is a MongoDB service names a schema
document (Avro or JSON Schema), in the original's form (``resource = "<id or name>"``,
looked up in the ``schemas`` collection or ``[system.schemas].resource``) or in mstream's
(``resource = "<collection>/<schema_id>"``); see :func:`load_schema`.

Modules: :mod:`~mstream.providers.mongodb.config` (options, name checks, the client),
:mod:`~.positions` (resume tokens as checkpoints), :mod:`~.source` (the change stream),
:mod:`~.sink` (the bulk writes), :mod:`~.schema_registry` (schema documents).

Example:
    >>> from mstream.config import parse_service
    >>> svc = parse_service({"name": "m", "provider": "mongodb",
    ...     "connection_string": "mongodb://u:pw@127.0.0.1:27017", "db_name": "app"})
    >>> svc.options["write_mode"], svc.options["chunk_size"]
    ('insert', 500)
    >>> try:
    ...     parse_service({"name": "m", "provider": "mongodb", "connection_string":
    ...         "mongodb://h", "db_name": "app", "write_mod": "replace"}, "services[0]")
    ... except Exception as exc:
    ...     print(str(exc).split(" (")[0])
    services[0].write_mod: unknown field
"""

from __future__ import annotations

from mstream.providers.base import ProviderSpec
from mstream.providers.mongodb.config import (
    SECRET_FIELDS,
    WRITE_MODES,
    MongoServiceSchema,
    check_collection,
    check_connection_string,
)
from mstream.providers.mongodb.positions import position_to_token, token_to_position
from mstream.providers.mongodb.schema_registry import (
    DEFAULT_SCHEMA_COLLECTION,
    install_schema_collection,
    load_schema,
    schema_collection,
)
from mstream.providers.mongodb.sink import DocumentsRejectedError, MongoSink
from mstream.providers.mongodb.source import ChangeEvent, ChangeStreamSource

__all__ = [
    "DEFAULT_SCHEMA_COLLECTION",
    "PROVIDER",
    "SECRET_FIELDS",
    "WRITE_MODES",
    "ChangeEvent",
    "ChangeStreamSource",
    "DocumentsRejectedError",
    "MongoServiceSchema",
    "MongoSink",
    "check_collection",
    "check_connection_string",
    "install_schema_collection",
    "load_schema",
    "position_to_token",
    "schema_collection",
    "token_to_position",
]


PROVIDER = ProviderSpec(
    name="mongodb",
    service_schema=MongoServiceSchema,
    secret_fields=SECRET_FIELDS,
    source=lambda service, step, ctx: ChangeStreamSource(service, step, ctx),
    sink=lambda service, step, ctx: MongoSink(service, step, ctx),
    schema_loader=load_schema,
    source_encodings=("bson",),
)
