"""``provider = "udf"``: a middleware running a sandboxed Lua script on every event.

Service options:

* ``engine = { kind = "lua" }`` (required; ``lua`` is the only kind). The engine table
  also takes the per-call limits: ``max_instructions`` (Lua VM instructions, default
  10 000 000), ``time_ms`` (wall clock, default 100) and ``memory_mb`` (heap growth,
  default 32). Limits are engine-specific, so they live in the engine table.
* ``script_path``: the folder holding the scripts (``*.lua``).

A middleware step's ``resource`` names a script file in that folder (the ``.lua`` suffix
may be left out). When the connector starts the script is compiled once (a missing script
is a :class:`~mstream.errors.ConfigError` naming the folder and the scripts available;
a syntax error names the file and line) and then called for every event as
``transform(data, attributes)``: no result drops the event (counted as filtered), one
result replaces it, several fan out (each with the attributes the script returned,
and the input event's metadata). A script error or a limit hit dead-letters that event with
the script's name, line and message, and the job goes on.

Batches (``batch = { kind = "count", ... }``) are transformed event by event: scripts are
always written for one event, and the batch keeps its results in order.

Results are encoded in the step's ``output_encoding``; for ``avro`` the step hands JSON
documents to the pipeline's conversion after the step, which encodes them with the step's
schema (a script cannot know the schema).

:class:`PythonUDFMiddleware` runs a trusted Python function the same way, for library and
notebook code only: it is not a provider and cannot be named in a config file or through
the REST API.

Example:
    >>> import tempfile, pathlib
    >>> from mstream.config import ServiceConfig, StepConfig
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "double.lua").write_text(
    ...     "function transform(d, a) d.n = d.n * 2 return result(d, a) end")
    >>> svc = ServiceConfig("scripts", "udf", UdfServiceSchema().load(
    ...     {"engine": {"kind": "lua"}, "script_path": str(folder)}))
    >>> m = PROVIDER.middleware(svc, StepConfig("scripts", "double.lua"),
    ...     StepContext("demo", "middleware"))
    >>> m.open()
    >>> [e.doc for e in m.process(Batch.of([Event(b'{"n": 21}', "json")], batched=False), print)]
    [{'n': 42}]
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from marshmallow import Schema, fields, validate

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Batch, Event
from mstream.encodings import encode
from mstream.errors import ConfigError, EventError, ScriptError
from mstream.providers.base import Middleware, ProviderSpec, Reject, StepContext
from mstream.udf import CompiledScript, PythonUDF, ScriptLimits, compile_script
from mstream.udf.library import SCRIPT_SUFFIX
from mstream.udf.python_udf import PythonUDFResult

ENGINE_KINDS = ("lua",)
_DEFAULTS = ScriptLimits()


class EngineSchema(Schema):
    """``engine = { kind = "lua", max_instructions?, time_ms?, memory_mb? }``."""

    kind = fields.String(
        required=True,
        validate=validate.OneOf(
            ENGINE_KINDS,
            error=f"unsupported engine kind {{input!r}} (supported: {', '.join(ENGINE_KINDS)})",
        ),
    )
    max_instructions = fields.Integer(
        load_default=_DEFAULTS.max_instructions,
        strict=True,
        validate=validate.Range(min=1000, max=10_000_000_000),
    )
    time_ms = fields.Float(
        load_default=_DEFAULTS.time_ms, validate=validate.Range(min=1, max=600_000)
    )
    memory_mb = fields.Float(
        load_default=_DEFAULTS.memory_bytes / 2**20, validate=validate.Range(min=0.25, max=4096)
    )


class UdfServiceSchema(Schema):
    """Options of a ``udf`` service (unknown keys are rejected)."""

    engine = fields.Nested(EngineSchema, required=True)
    script_path = fields.String(required=True, validate=validate.Length(min=1))


def limits_of(service: ServiceConfig) -> ScriptLimits:
    """The :class:`~mstream.udf.ScriptLimits` of a ``udf`` service's engine table.

    Example:
        >>> opts = UdfServiceSchema().load({"engine": {"kind": "lua", "time_ms": 50},
        ...     "script_path": "examples/udf"})
        >>> limits_of(ServiceConfig("s", "udf", opts)).time_ms
        50.0
    """
    engine = service.options.get("engine") or {}
    return ScriptLimits(
        max_instructions=engine.get("max_instructions", _DEFAULTS.max_instructions),
        time_ms=engine.get("time_ms", _DEFAULTS.time_ms),
        memory_bytes=int(engine.get("memory_mb", _DEFAULTS.memory_bytes / 2**20) * 2**20),
    )


def compile_resource(folder: str | Path, resource: str, limits: ScriptLimits) -> CompiledScript:
    """Compile the one script ``resource`` names in ``folder``.

    Raises:
        ConfigError: the folder is missing, the script is not there (the message names the
            folder and the scripts available), it cannot be read, or it does not compile.

    Example:
        >>> try:
        ...     compile_resource("examples/udf", "nope.lua", ScriptLimits())
        ... except ConfigError as exc:
        ...     print(str(exc)[:60])
        udf script 'nope.lua' not found in examples/udf (available:
    """
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"udf script_path {str(path)!r} is not a folder")
    available = sorted(p.name for p in path.glob("*" + SCRIPT_SUFFIX) if p.is_file())
    name = resource if resource in available else resource + SCRIPT_SUFFIX
    if not resource or name not in available:
        raise ConfigError(
            f"udf script {resource!r} not found in {path} "
            f"(available: {', '.join(available) or 'none'})"
        )
    try:
        source = (path / name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path / name}: cannot read script: {exc}") from None
    try:
        return compile_script(source, name, limits=limits)
    except ScriptError as exc:
        raise ConfigError(f"{path / str(exc)}") from None


class Transformer(Protocol):
    """Anything with the :meth:`CompiledScript.transform` contract."""

    def transform(
        self, data: Any, attributes: dict[str, str]
    ) -> list[tuple[Any, dict[str, str]]]: ...


class TransformMiddleware(Middleware):
    """Runs a transformer (script or Python UDF) on every event of each batch.

    Args:
        output_encoding: the encoding of the events returned (``avro`` results are
            returned as JSON for the pipeline's conversion to encode with the schema).
    """

    reports_filtered = True

    def __init__(self, output_encoding: str = "json") -> None:
        self.output_encoding = output_encoding
        self._encoding = "json" if output_encoding == "avro" else output_encoding
        self._transformer: Transformer | None = None

    def transformer(self) -> Transformer:
        """The transformer, set up by :meth:`open`."""
        if self._transformer is None:
            self.open()
        assert self._transformer is not None
        return self._transformer

    def process(self, batch: Batch, reject: Reject) -> list[Event]:
        """Transform each event: drop, replace or fan out; failures are dead-lettered."""
        transform = self.transformer().transform
        encoding = self._encoding
        out: list[Event] = []
        append = out.append
        for event in batch.events:
            try:
                results = transform(event.doc, event.attributes)
            except EventError as exc:  # ScriptError, or the event cannot be decoded
                reject(event, str(exc), "middleware" if isinstance(exc, ScriptError) else exc.stage)
                continue
            except Exception as exc:  # an engine fault must cost one event, not the job
                reject(
                    event, f"{self.name}: internal error: {type(exc).__name__}: {exc}", "middleware"
                )
                continue
            encoded: list[Event] = []
            try:
                for data, attributes in results:
                    encoded.append(
                        Event(
                            encode(data, encoding),
                            encoding,
                            attributes=attributes,
                            metadata=event.metadata,
                            doc=data,
                        )
                    )
            except EventError as exc:
                reject(event, f"{self.name}: result cannot be encoded: {exc}", "middleware")
                continue
            if not encoded:
                self.filtered += 1
            for item in encoded:
                append(item)
        return out

    @property
    def name(self) -> str:
        """The transformer's name, for messages."""
        return str(getattr(self._transformer, "name", type(self).__name__))


class ScriptMiddleware(TransformMiddleware):
    """The ``udf`` provider's middleware: one compiled script, compiled in :meth:`open`.

    The script is looked up when the step is built, so a missing script fails the
    connector's start with a :class:`~mstream.errors.ConfigError`.
    """

    def __init__(self, service: ServiceConfig, step: StepConfig, ctx: StepContext) -> None:
        super().__init__(step.output_encoding)
        self.folder = Path(str(service.options["script_path"]))
        self.resource = step.resource
        self.limits = limits_of(service)
        self.ctx = ctx
        if not self.folder.is_dir():
            raise ConfigError(
                f"service {service.name!r}: udf script_path {str(self.folder)!r} is not a folder"
            )

    def open(self) -> None:
        """Compile the script (once)."""
        if self._transformer is None:
            self._transformer = compile_resource(self.folder, self.resource, self.limits)


class PythonUDFMiddleware(TransformMiddleware):
    """A trusted in-process Python function as a middleware, for code and notebooks.

    **Not sandboxed**: the function runs with the rights of the process. It is only
    reachable from Python code (e.g. ``mstream.operators.middleware(...)``), never from a
    config file or the REST API. ``fn(data, attributes)`` returns ``None`` (drop),
    ``(data, attributes)`` or a list of such pairs; an exception dead-letters the event with
    the function's name and line.

    Example:
        >>> import reactivex
        >>> from mstream import operators
        >>> def tag(data, attributes):
        ...     return None if data["n"] < 0 else ({**data, "ok": True}, attributes)
        >>> events = [Event(b'{"n": 1}', "json"), Event(b'{"n": -1}', "json")]
        >>> out = []
        >>> _ = reactivex.of(Batch.of(events, batched=False)).pipe(
        ...     operators.middleware(PythonUDFMiddleware(tag), print)
        ... ).subscribe(lambda b: out.extend(e.doc for e in b.events))
        >>> out
        [{'n': 1, 'ok': True}]
    """

    def __init__(
        self,
        fn: Callable[[Any, dict[str, str]], PythonUDFResult],
        output_encoding: str = "json",
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(output_encoding)
        self._transformer = PythonUDF(fn, name=name)


def _make_middleware(service: ServiceConfig, step: StepConfig, ctx: StepContext) -> Middleware:
    return ScriptMiddleware(service, step, ctx)


PROVIDER = ProviderSpec(
    name="udf",
    service_schema=UdfServiceSchema,
    middleware=_make_middleware,
)
