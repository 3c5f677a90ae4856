"""``provider = "file"``: JSON-lines source and sink; the step's ``resource`` is the path.

Each line is one event. With ``json`` encoding the line is the JSON document; with
``bson`` or ``avro`` the line is the base64 of the bytes (so any encoding round-trips
through a file). A source reads JSON lines unless its step sets ``input_encoding``. A file service is also a schema registry: a ``schemas`` entry whose
service is a file service reads the Avro schema (``.avsc`` JSON) at ``resource``.

Service options: ``base_dir`` (resources are resolved inside it and may not leave it),
``follow`` (source: keep reading lines appended after the end, like ``tail -f``),
``poll_interval_ms`` (how often a following source looks for new lines), ``fsync`` (sink:
fsync after every write), ``max_line_bytes`` (source: a longer line is dead-lettered with
its reason and its first KiB, never read into memory whole; default 16 MiB). Every path is
also checked against the file access policy (:mod:`mstream.file_access`). Sink step option ``batch_layout``: ``lines`` (default; a batch is
written as one line per event) or ``array`` (a batch is one line holding the array).

The source's checkpoint is the byte offset after the last line whose every predecessor
was delivered; a restarted connector seeks there.

Example:
    >>> import tempfile, threading, pathlib
    >>> from mstream.config import ServiceConfig, StepConfig
    >>> from mstream.core import Batch, Event
    >>> d = tempfile.mkdtemp()
    >>> svc = ServiceConfig("f", "file", {"base_dir": d})
    >>> sink = PROVIDER.sink(svc, StepConfig("f", "out.jsonl"), StepContext("demo", "sink"))
    >>> sink.open(); sink.write_batch(Batch.of([Event(b'{"a":1}', "json")], batched=False))
    >>> sink.close()
    >>> (pathlib.Path(d) / "out.jsonl").read_text()
    '{"a":1}\\n'
"""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path
from typing import IO, Any

from marshmallow import Schema, fields, validate

from mstream import file_access
from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Batch, Event, PositionTracker
from mstream.encodings import AvroSchema, encode_batch
from mstream.encodings.extjson import dumps as json_dumps
from mstream.encodings.extjson import loads_plain
from mstream.errors import ConfigError, DecodeError, DeliveryError
from mstream.providers.base import Emit, ProviderSpec, Source, StepContext, SyncSink

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
"""A source line longer than this is dead-lettered (its first KiB kept), never read whole."""
_KEPT_OF_OVERSIZED = 1024
_SKIP_CHUNK = 1024 * 1024


class OversizedLine(Event):
    """A line over ``max_line_bytes``: only its start is kept, and it never decodes, so the
    pipeline's first conversion dead-letters it with the reason (even with
    ``verify_payloads = false``: its encoding matches no other)."""

    def __init__(self, start: bytes, length: int, limit: int, offset: int, ack: Any) -> None:
        super().__init__(start, "oversized-line", metadata={"offset": offset}, ack=ack)
        self.reason = (
            f"line of {length:,} bytes or more ending at offset {offset:,} is longer than "
            f"max_line_bytes ({limit:,}); its first {len(start):,} bytes are kept"
        )

    @property
    def doc(self) -> Any:
        """Never decodes: raises the reason."""
        raise DecodeError(self.reason)

    def converted(self, encoding: str, schema: AvroSchema | None = None) -> Event:
        """Never converts: raises the reason."""
        raise DecodeError(self.reason)


class FileServiceSchema(Schema):
    """Options of a ``file`` service."""

    base_dir = fields.String(load_default=None)
    follow = fields.Boolean(load_default=False)
    poll_interval_ms = fields.Integer(
        load_default=200, strict=True, validate=validate.Range(min=1, max=60_000)
    )
    fsync = fields.Boolean(load_default=False)
    chunk_size = fields.Integer(
        load_default=500, strict=True, validate=validate.Range(min=1, max=100_000)
    )
    max_line_bytes = fields.Integer(
        load_default=DEFAULT_MAX_LINE_BYTES,
        strict=True,
        validate=validate.Range(min=16, max=1024 * 1024 * 1024),
    )


class FileStepSchema(Schema):
    """Extra keys of a ``file`` step."""

    batch_layout = fields.String(
        load_default="lines",
        validate=validate.OneOf(["lines", "array"], error="must be lines or array (got {input!r})"),
    )


def resolve_path(service: ServiceConfig, resource: str) -> Path:
    """The file a resource names, kept inside ``base_dir`` when one is set, and allowed by
    the file access policy (:mod:`mstream.file_access`): inside the file roots and never
    one of mstream's own files. Called again right before each open.

    Raises:
        ConfigError: the resource leaves ``base_dir``, the roots, or is protected.
    """
    base = service.options.get("base_dir")
    field = f"service {service.name!r}: resource"
    if not base:
        return file_access.current().check(resource, field)
    root = Path(base).resolve()
    path = (root / resource).resolve()
    if path != root and root not in path.parents:
        raise ConfigError(
            f"service {service.name!r}: resource {resource!r} is outside base_dir {base!r}"
        )
    return file_access.current().check(path, field)


class FileSource(Source):
    """Reads a JSON-lines file in chunks, from the checkpointed byte offset."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        self.path = resolve_path(service, step.resource)
        self.encoding = step.input_encoding or "json"
        self.follow: bool = service.options.get("follow", False)
        self.poll = service.options.get("poll_interval_ms", 200) / 1000.0
        self.chunk_size: int = service.options.get("chunk_size", 500)
        self.start = 0
        if ctx.checkpointing and isinstance(ctx.resume_position, dict):
            self.start = int(ctx.resume_position.get("offset", 0))
        self.tracker = PositionTracker()
        self.checkpointing = ctx.checkpointing
        self.resource = step.resource
        self.service = service
        self.max_line_bytes: int = service.options.get("max_line_bytes", DEFAULT_MAX_LINE_BYTES)

    def run(self, emit: Emit, stopping: threading.Event) -> None:
        """Emit the file's lines (then wait for more when following)."""
        try:
            self.path = resolve_path(self.service, self.resource)  # again, at open time
            handle = self.path.open("rb")
        except OSError as exc:
            raise DeliveryError(f"cannot open {self.resource!r}: {exc.strerror}") from None
        with handle:
            handle.seek(self.start)
            offset = self.start
            binary = self.encoding != "json"
            tracker = self.tracker if self.checkpointing else None
            while not stopping.is_set():
                events: list[Event] = []
                at_end = False
                while len(events) < self.chunk_size:
                    raw = handle.readline(self.max_line_bytes + 1)
                    if not raw:
                        at_end = True
                        break
                    if len(raw) > self.max_line_bytes and not raw.endswith(b"\n"):
                        length, complete = self._skip_rest(handle, len(raw))
                        if self.follow and not complete:
                            handle.seek(offset)  # still being written: read it again later
                            at_end = True
                            break
                        offset += length
                        ack = _acker(tracker, tracker.add({"offset": offset})) if tracker else None
                        events.append(
                            OversizedLine(
                                raw[:_KEPT_OF_OVERSIZED], length, self.max_line_bytes, offset, ack
                            )
                        )
                        continue
                    if self.follow and not raw.endswith(b"\n"):
                        handle.seek(offset)  # a line still being written: read it again later
                        at_end = True
                        break
                    offset += len(raw)
                    line = raw.strip()
                    if not line:
                        continue
                    payload = base64.b64decode(line) if binary else line
                    ack = None
                    if tracker is not None:
                        ack = _acker(tracker, tracker.add({"offset": offset}))
                    events.append(
                        Event(payload, self.encoding, metadata={"offset": offset}, ack=ack)
                    )
                if events:
                    emit(events)
                elif at_end:
                    if not self.follow:
                        return
                    stopping.wait(self.poll)

    @staticmethod
    def _skip_rest(handle: IO[bytes], read: int) -> tuple[int, bool]:
        """Skip the rest of an oversized line in bounded chunks.

        Returns:
            The line's length in bytes (with its newline) and whether it ended.
        """
        length = read
        while True:
            chunk = handle.readline(_SKIP_CHUNK)
            length += len(chunk)
            if not chunk:
                return length, False
            if chunk.endswith(b"\n"):
                return length, True

    def position(self) -> Any:
        """``{"offset": n}``: the byte offset after the last fully delivered line."""
        return self.tracker.committed() if self.checkpointing else None


def _acker(tracker: PositionTracker, seq: int) -> Any:
    return lambda: tracker.ack(seq)


class FileSink(SyncSink):
    """Appends events to a JSON-lines file, one write and flush per batch."""

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        self.path = resolve_path(service, step.resource)
        self.encoding = step.output_encoding
        self.fsync: bool = service.options.get("fsync", False)
        self.layout: str = step.options.get("batch_layout", "lines")
        self.resource = step.resource
        self.service = service
        self._handle: IO[bytes] | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        """Open the file for appending (creating folders as needed)."""
        self.path = resolve_path(self.service, self.resource)  # again, at open time
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("ab")
        except OSError as exc:
            raise DeliveryError(
                f"cannot open {self.resource!r} for writing: {exc.strerror}"
            ) from None

    def _line(self, payload: bytes) -> bytes:
        if self.encoding != "json":
            return base64.b64encode(payload)
        if b"\n" in payload:  # pretty-printed JSON from a source: keep one event per line
            return json_dumps(loads_plain(payload))
        return payload

    def write_batch(self, batch: Batch) -> None:
        """Write the batch: one line per event, or one array line (``batch_layout = "array"``)."""
        if batch.batched and self.layout == "array":
            schema: AvroSchema | None = batch.events[0].schema if batch.events else None
            data = (
                self._line(encode_batch([e.doc for e in batch.events], self.encoding, schema))
                + b"\n"
            )
        else:
            data = b"\n".join([self._line(e.payload) for e in batch.events]) + b"\n"
        with self._lock:
            handle = self._handle
            if handle is None:
                raise DeliveryError(f"file sink {self.resource!r} is not open")
            try:
                handle.write(data)
                handle.flush()
                if self.fsync:
                    os.fsync(handle.fileno())
            except OSError as exc:
                raise DeliveryError(f"cannot write {self.resource!r}: {exc.strerror}") from None

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


def load_schema(service: ServiceConfig, resource: str) -> AvroSchema:
    """Read an Avro schema (JSON) from a file.

    Raises:
        ConfigError: the file is missing or not a valid Avro schema.
    """
    path = resolve_path(service, resource)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"schema file {resource!r} of service {service.name!r}: {exc.strerror}"
        ) from None
    return AvroSchema.parse(text, name=resource)


PROVIDER = ProviderSpec(
    name="file",
    service_schema=FileServiceSchema,
    source=lambda service, step, ctx: FileSource(service, step, ctx),
    sink=lambda service, step, ctx: FileSink(service, step, ctx),
    schema_loader=load_schema,
    step_options=FileStepSchema,
)
