"""``provider = "udf"``: a middleware running a sandboxed Lua or Rhai script on every event.

Service options:

* ``engine`` (required): ``{ kind = "lua" }`` or ``{ kind = "rhai" }``, with the per-call
  limits of that engine (limits are engine-specific, so they live in the engine table):

  * Lua: ``max_instructions`` (VM instructions, default 10 000 000), ``time_ms`` (wall
    clock, default 100) and ``memory_mb`` (heap growth, default 32);
  * Rhai (the original mstream's language; needs the ``mstream_rhai`` extension):
    ``max_operations`` (1 000 000), ``time_ms`` (100), ``max_call_levels`` (64),
    ``max_expr_depth`` (32), ``max_string_size`` (bytes, 16 MiB), ``max_array_size``
    (100 000), ``max_map_size`` (100 000) and ``memory_mb`` (64); see
    :class:`~mstream.udf.RhaiLimits`.

* ``script_path``: the folder holding the scripts (``*.lua`` / ``*.rhai``), and/or
* ``sources``: scripts given inline, as in the original:
  ``sources = [{ filename = "mask.rhai", content = "fn transform(data, attributes) ..." }]``
  (plain file names with the engine's suffix; an inline script wins over a file of the
  same name; nothing is written to disk).

A middleware step's ``resource`` names a script (the ``.lua`` / ``.rhai`` suffix may be
left out). When the connector starts the script is compiled once (a missing script
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

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Protocol

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from mstream.config.model import ServiceConfig, StepConfig
from mstream.core import Batch, Event
from mstream.encodings import encode
from mstream.errors import ConfigError, EventError, ScriptError
from mstream.providers.base import Middleware, ProviderSpec, Reject, StepContext
from mstream.udf import PythonUDF, ScriptLimits, compile_script
from mstream.udf.python_udf import PythonUDFResult
from mstream.udf.rhai_engine import INSTALL_HINT, RhaiLimits, compile_rhai, rhai_available

ENGINE_KINDS = ("lua", "rhai")
#: The file name suffix of each engine's scripts.
SUFFIXES = {"lua": ".lua", "rhai": ".rhai"}
#: Largest inline script accepted in ``sources``.
MAX_SOURCE_BYTES = 1_000_000
_LUA = ScriptLimits()
_RHAI = RhaiLimits()

Limits = ScriptLimits | RhaiLimits


class LuaEngineSchema(Schema):
    """``engine = { kind = "lua", max_instructions?, time_ms?, memory_mb? }``."""

    kind = fields.String(required=True, validate=validate.Equal("lua"))
    max_instructions = fields.Integer(
        load_default=_LUA.max_instructions,
        strict=True,
        validate=validate.Range(min=1000, max=10_000_000_000),
    )
    time_ms = fields.Float(load_default=_LUA.time_ms, validate=validate.Range(min=1, max=600_000))
    memory_mb = fields.Float(
        load_default=_LUA.memory_bytes / 2**20, validate=validate.Range(min=0.25, max=4096)
    )


def _count(default: int, low: int, high: int) -> fields.Integer:
    return fields.Integer(
        load_default=default, strict=True, validate=validate.Range(min=low, max=high)
    )


class RhaiEngineSchema(Schema):
    """``engine = { kind = "rhai", max_operations?, time_ms?, max_call_levels?, ... }``.

    The defaults are those of :class:`~mstream.udf.RhaiLimits`; ``0`` means unlimited for
    ``max_operations``, ``memory_mb`` and the three sizes (the original leaves the sizes
    unlimited).
    """

    kind = fields.String(required=True, validate=validate.Equal("rhai"))
    max_operations = _count(_RHAI.max_operations, 0, 10_000_000_000)
    time_ms = fields.Float(load_default=_RHAI.time_ms, validate=validate.Range(min=1, max=600_000))
    max_call_levels = _count(_RHAI.max_call_levels, 1, 10_000)
    max_expr_depth = _count(_RHAI.max_expr_depth, 1, 10_000)
    max_string_size = _count(_RHAI.max_string_size, 0, 2**31)
    max_array_size = _count(_RHAI.max_array_size, 0, 100_000_000)
    max_map_size = _count(_RHAI.max_map_size, 0, 100_000_000)
    memory_mb = fields.Float(load_default=_RHAI.memory_mb, validate=validate.Range(min=0, max=4096))


_ENGINE_SCHEMAS: dict[str, type[Schema]] = {"lua": LuaEngineSchema, "rhai": RhaiEngineSchema}


class EngineField(fields.Field):
    """The ``engine`` table, validated by the schema of its ``kind``."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValidationError('expected a table such as { kind = "rhai" }')
        kind = value.get("kind")
        schema = _ENGINE_SCHEMAS.get(kind) if isinstance(kind, str) else None
        if schema is None:
            if "kind" not in value:
                raise ValidationError({"kind": ["Missing data for required field."]})
            raise ValidationError(
                {
                    "kind": [
                        f"unsupported engine kind {kind!r} (supported: {', '.join(ENGINE_KINDS)})"
                    ]
                }
            )
        if kind == "rhai" and not rhai_available():
            raise ValidationError({"kind": [INSTALL_HINT]})
        return dict(schema().load(value))


class SourceSchema(Schema):
    """One inline script: ``{ filename = "x.rhai", content = "fn transform(...) ..." }``."""

    filename = fields.String(required=True, validate=validate.Length(min=1, max=255))
    content = fields.String(required=True, validate=validate.Length(max=MAX_SOURCE_BYTES))


class UdfServiceSchema(Schema):
    """Options of a ``udf`` service (unknown keys are rejected).

    ``script_path`` (a folder), ``sources`` (inline scripts) or both; a source's file name
    is one plain name with the engine's suffix.
    """

    engine = EngineField(required=True)
    script_path = fields.String(validate=validate.Length(min=1))
    sources = fields.List(fields.Nested(SourceSchema))

    @validates_schema
    def _check_scripts(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "script_path" not in data and "sources" not in data:
            raise ValidationError(
                "missing required field (or give the scripts inline in `sources`)",
                "script_path",
            )
        suffix = SUFFIXES[data["engine"]["kind"]]
        problems: dict[int, dict[str, list[str]]] = {}
        seen: set[str] = set()
        for i, source in enumerate(data.get("sources", [])):
            problem = _filename_problem(source["filename"], suffix, seen)
            if problem:
                problems[i] = {"filename": [problem]}
            seen.add(source["filename"])
        if problems:
            raise ValidationError({"sources": problems})


def _filename_problem(name: str, suffix: str, seen: set[str]) -> str | None:
    plain = PurePosixPath(name).name == name == PureWindowsPath(name).name
    if not plain or name in (".", "..") or name.startswith("."):
        return f"invalid script filename {name!r}: one plain file name, no folders"
    if not name.endswith(suffix) or name == suffix:
        return f"invalid script filename {name!r}: must end with {suffix}"
    if name in seen:
        return f"duplicate script filename {name!r}"
    return None


def engine_kind(service: ServiceConfig) -> str:
    """The ``engine.kind`` of a ``udf`` service (``"lua"`` or ``"rhai"``)."""
    return str((service.options.get("engine") or {}).get("kind", "lua"))


def limits_of(service: ServiceConfig) -> Limits:
    """The per-call limits of a ``udf`` service's engine table.

    :class:`~mstream.udf.ScriptLimits` for Lua, :class:`~mstream.udf.RhaiLimits` for Rhai.

    Example:
        >>> opts = UdfServiceSchema().load({"engine": {"kind": "lua", "time_ms": 50},
        ...     "script_path": "examples/udf"})
        >>> limits_of(ServiceConfig("s", "udf", opts)).time_ms
        50.0
    """
    engine = dict(service.options.get("engine") or {})
    if engine.pop("kind", "lua") == "rhai":
        return RhaiLimits(**engine)
    return ScriptLimits(
        max_instructions=engine.get("max_instructions", _LUA.max_instructions),
        time_ms=engine.get("time_ms", _LUA.time_ms),
        memory_bytes=int(engine.get("memory_mb", _LUA.memory_bytes / 2**20) * 2**20),
    )


def compile_resource(
    folder: str | Path | None,
    resource: str,
    limits: Limits,
    *,
    kind: str = "lua",
    sources: Sequence[Mapping[str, str]] = (),
) -> Transformer:
    """Compile the one script ``resource`` names, from ``sources`` or the ``folder``.

    ``resource`` is a file name (the engine's suffix may be left out). An inline source
    wins over a file of the same name (the original writes its sources into the folder).

    Raises:
        ConfigError: no such script (the message names where it looked and the scripts
            available), the folder is missing while there are no sources, the file cannot
            be read, it does not compile, or the Rhai extension is missing.

    Example:
        >>> try:
        ...     compile_resource("examples/udf", "nope.lua", ScriptLimits())
        ... except ConfigError as exc:
        ...     print(str(exc)[:60])
        udf script 'nope.lua' not found in examples/udf (available:
        >>> compile_resource(None, "one", ScriptLimits(), sources=[{"filename": "one.lua",
        ...     "content": "function transform(d, a) return result(d + 1) end"}]).transform(1, {})
        [(2, {})]
    """
    suffix = SUFFIXES[kind]
    inline = {s["filename"]: s["content"] for s in sources}
    path = Path(folder) if folder is not None else None
    on_disk: list[str] = []
    if path is not None:
        if path.is_dir():
            on_disk = [p.name for p in path.glob("*" + suffix) if p.is_file()]
        elif not inline:
            raise ConfigError(f"udf script_path {str(path)!r} is not a folder")
    available = sorted({*on_disk, *inline})
    name = resource if resource in available else resource + suffix
    if not resource or name not in available:
        where = " and ".join(
            part
            for part in (str(path) if path is not None else "", "sources" if inline else "")
            if part
        )
        raise ConfigError(
            f"udf script {resource!r} not found in {where} "
            f"(available: {', '.join(available) or 'none'})"
        )
    if name in inline:
        source, shown = inline[name], "sources: "
    else:
        assert path is not None
        try:
            source = (path / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path / name}: cannot read script: {exc}") from None
        shown = f"{path}/"
    try:
        if kind == "rhai":
            assert isinstance(limits, RhaiLimits)
            return compile_rhai(source, name, limits=limits)
        assert isinstance(limits, ScriptLimits)
        return compile_script(source, name, limits=limits)
    except ScriptError as exc:
        raise ConfigError(f"{shown}{exc}") from None


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
        script_path = service.options.get("script_path")
        self.folder = Path(str(script_path)) if script_path else None
        self.sources: list[dict[str, str]] = list(service.options.get("sources") or [])
        self.kind = engine_kind(service)
        self.resource = step.resource
        self.limits = limits_of(service)
        self.ctx = ctx
        if self.folder is not None and not self.sources and not self.folder.is_dir():
            raise ConfigError(
                f"service {service.name!r}: udf script_path {str(self.folder)!r} is not a folder"
            )

    def open(self) -> None:
        """Compile the script (once)."""
        if self._transformer is None:
            self._transformer = compile_resource(
                self.folder, self.resource, self.limits, kind=self.kind, sources=self.sources
            )


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


def _check_step(service: ServiceConfig, resource: str) -> list[str]:
    """The script a step names exists and compiles (offline validation)."""
    folder = service.options.get("script_path")
    try:
        compile_resource(
            folder,
            resource,
            limits_of(service),
            kind=engine_kind(service),
            sources=list(service.options.get("sources") or []),
        )
    except ConfigError as exc:
        return list(exc.problems)
    return []


PROVIDER = ProviderSpec(
    name="udf",
    service_schema=UdfServiceSchema,
    middleware=_make_middleware,
    check_step=_check_step,
)
