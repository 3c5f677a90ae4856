"""Marshmallow schemas for ``[[services]]``, ``[[connectors]]`` and ``[system]``.

The same schemas validate the config file and the REST API's request bodies. Errors are
flattened into one line per problem, each naming the path and what was expected.

Example:
    >>> from mstream.config.model import ServiceConfig
    >>> services = {"gen": ServiceConfig("gen", "generator"), "out": ServiceConfig("out", "stdout")}
    >>> c = parse_connector({"name": "demo",
    ...     "source": {"service_name": "gen", "resource": "users", "output_encoding": "json"},
    ...     "sinks": [{"service_name": "out", "output_encoding": "json"}]}, services)
    >>> c.name, len(c.sinks)
    ('demo', 1)
    >>> try:
    ...     parse_connector({"name": "x", "source": {"service_name": "nope",
    ...         "output_encoding": "xml"}, "sinks": []}, services)
    ... except ConfigError as exc:
    ...     print(exc)
    source.output_encoding: must be one of: json, bson, avro (got 'xml')
    sinks: must have at least 1 item
    source.service_name: no service named 'nope' (services: gen, out)
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from mstream.config.compat import UNKNOWN_KEY_HINT
from mstream.config.model import (
    BatchConfig,
    ClusterConfig,
    ConnectorConfig,
    DeadLetterConfig,
    LogsConfig,
    SchemaRef,
    ServiceConfig,
    StepConfig,
    StoreRef,
    SystemConfig,
)
from mstream.errors import ConfigError

ENCODINGS = ("json", "bson", "avro")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
STARTUP_STATES = ("force_from_file", "seed_from_file", "keep")

_name = fields.String(
    required=True,
    validate=validate.Regexp(
        NAME_PATTERN, error="must be 1-100 letters, digits, '_', '.' or '-' (got {input!r})"
    ),
)


def _encoding(required: bool = False) -> fields.String:
    check = validate.OneOf(ENCODINGS, error="must be one of: json, bson, avro (got {input!r})")
    if required:
        return fields.String(required=True, validate=check)
    return fields.String(load_default=None, validate=check)


class StrictSchema(Schema):
    """A schema that rejects unknown keys and names the keys it knows."""

    class Meta:
        unknown = RAISE


class ServiceHeadSchema(Schema):
    """``name`` and ``provider``; the rest is checked by the provider's own schema."""

    class Meta:
        unknown = "include"

    name = _name
    provider = fields.String(required=True)


class StepSchema(Schema):
    """A pipeline step; keys besides these are checked by the provider's step options."""

    class Meta:
        unknown = "include"

    service_name = fields.String(required=True, validate=validate.Length(min=1))
    resource = fields.String(load_default="")
    input_encoding = _encoding()
    output_encoding = _encoding(required=True)
    schema_id = fields.String(load_default=None)


class SchemaRefSchema(StrictSchema):
    """``{ id, service_name, resource }``."""

    id = fields.String(required=True, validate=validate.Length(min=1))
    service_name = fields.String(required=True)
    resource = fields.String(required=True)


class BatchSchema(StrictSchema):
    """``{ kind = "count", size = N, max_wait_ms = T }``."""

    kind = fields.String(
        load_default="count",
        validate=validate.OneOf(["count"], error="must be 'count' (got {input!r})"),
    )
    size = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1, max=100_000, error="must be between 1 and 100000"),
    )
    max_wait_ms = fields.Integer(
        load_default=1000,
        strict=True,
        validate=validate.Range(min=1, max=3_600_000, error="must be between 1 and 3600000"),
    )


class CheckpointSchema(StrictSchema):
    """``{ enabled = true, interval_ms = 1000 }``."""

    enabled = fields.Boolean(load_default=False)
    interval_ms = fields.Integer(
        load_default=1000,
        strict=True,
        validate=validate.Range(min=10, max=600_000, error="must be between 10 and 600000"),
    )


class DeadLetterSchema(StrictSchema):
    """``{ service_name, resource, output_encoding = "json" }``."""

    service_name = fields.String(required=True)
    resource = fields.String(load_default="")
    output_encoding = fields.String(
        load_default="json",
        validate=validate.OneOf(["json", "bson"], error="must be json or bson (got {input!r})"),
    )


class ConnectorSchema(StrictSchema):
    """A ``[[connectors]]`` entry."""

    name = _name
    enabled = fields.Boolean(load_default=True)
    source = fields.Nested(StepSchema, required=True)
    middlewares = fields.List(fields.Nested(StepSchema), load_default=list)
    sinks = fields.List(
        fields.Nested(StepSchema),
        required=True,
        validate=validate.Length(min=1, error="must have at least 1 item"),
    )
    schemas = fields.List(fields.Nested(SchemaRefSchema), load_default=list)
    batch = fields.Nested(BatchSchema, load_default=None)
    checkpoint = fields.Nested(CheckpointSchema, load_default=None)
    dead_letter = fields.Nested(DeadLetterSchema, load_default=None)
    verify_payloads = fields.Boolean(load_default=True)
    replicas = fields.Integer(
        load_default=1,
        strict=True,
        validate=validate.Range(min=1, max=64, error="must be between 1 and 64"),
    )


class StoreRefSchema(StrictSchema):
    """``{ service_name, resource }`` of a system store."""

    service_name = fields.String(required=True)
    resource = fields.String(required=True)


class JobLifecycleSchema(StrictSchema):
    """``[system.job_lifecycle]``."""

    service_name = fields.String(load_default=None)
    resource = fields.String(load_default=None)
    startup_state = fields.String(
        load_default="seed_from_file",
        validate=validate.OneOf(
            STARTUP_STATES,
            error="must be one of: force_from_file, seed_from_file, keep (got {input!r})",
        ),
    )


class LogsSchema(StrictSchema):
    """``[system.logs]``: the log buffer behind ``GET /logs`` (defaults here, one place)."""

    buffer_capacity = fields.Integer(
        load_default=10000,
        strict=True,
        validate=validate.Range(min=0, error="must be at least 0"),
    )
    stream_preload_count = fields.Integer(
        load_default=100,
        strict=True,
        validate=validate.Range(min=0, error="must be at least 0"),
    )


INSTANCE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"
INSTANCE_ID_ERROR = "must be 1-100 letters, digits, '_', '.', ':' or '-' (got {input!r})"


class ClusterSchema(StrictSchema):
    """``[system.cluster]``: leases of several instances sharing MongoDB state stores."""

    lease_ttl_ms = fields.Integer(
        load_default=10_000,
        strict=True,
        validate=validate.Range(min=1000, max=600_000, error="must be between 1000 and 600000"),
    )
    heartbeat_interval_ms = fields.Integer(
        load_default=2000,
        strict=True,
        validate=validate.Range(min=100, max=60_000, error="must be between 100 and 60000"),
    )

    @validates_schema
    def _renewed_in_time(self, data: dict[str, Any], **_: Any) -> None:
        if data["heartbeat_interval_ms"] * 2 > data["lease_ttl_ms"]:
            raise ValidationError(
                "must be at most half of lease_ttl_ms (a lease is renewed at every heartbeat)",
                "heartbeat_interval_ms",
            )


class SystemSchema(StrictSchema):
    """The ``[system]`` table.

    ``schemas``, ``test_suites``, ``workspaces``, ``logs`` and ``generate_encryption_key``
    are the original's keys (see :mod:`mstream.config.compat`): ``schemas.resource`` is
    the collection of the original's schema documents, ``logs`` sizes the log buffer; the
    rest is accepted and logged as differing.
    """

    encryption_key_path = fields.String(load_default="./mstream.key")
    data_dir = fields.String(load_default="./mstream-data")
    file_roots = fields.List(fields.String(validate=validate.Length(min=1)), load_default=None)
    http_allowed_hosts = fields.List(
        fields.String(validate=validate.Length(min=1)), load_default=list
    )
    checkpoints = fields.Nested(StoreRefSchema, load_default=None)
    job_lifecycle = fields.Nested(JobLifecycleSchema, load_default=None)
    service_lifecycle = fields.Nested(StoreRefSchema, load_default=None)
    schemas = fields.Nested(StoreRefSchema, load_default=None)
    test_suites = fields.Nested(StoreRefSchema, load_default=None)
    workspaces = fields.Nested(StoreRefSchema, load_default=None)
    logs = fields.Nested(LogsSchema, load_default=lambda: LogsSchema().load({}))
    generate_encryption_key = fields.Boolean(load_default=None)
    instance_id = fields.String(
        load_default=None,
        validate=validate.Regexp(INSTANCE_ID_PATTERN, error=INSTANCE_ID_ERROR),
    )
    cluster = fields.Nested(ClusterSchema, load_default=lambda: ClusterSchema().load({}))


class FileSchema(StrictSchema):
    """The whole file: ``[[services]]``, ``[[connectors]]``, ``[system]``."""

    services = fields.List(fields.Raw(), load_default=list)
    connectors = fields.List(fields.Raw(), load_default=list)
    system = fields.Raw(load_default=dict)


def flatten_errors(messages: Any, prefix: str = "") -> list[str]:
    """Turn marshmallow's nested error dict into ``path: message`` lines.

    Example:
        >>> flatten_errors({"sinks": {0: {"output_encoding": ["must be json"]}}})
        ['sinks[0].output_encoding: must be json']
    """
    lines: list[str] = []
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            if key == "_schema":
                path = prefix
            elif isinstance(key, int):
                path = f"{prefix}[{key}]"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            lines.extend(flatten_errors(value, path))
    elif isinstance(messages, list | tuple):
        for message in messages:
            lines.extend(flatten_errors(message, prefix))
    else:
        text = str(messages)
        if text == "Unknown field.":
            text = "unknown field"
        elif text == "Missing data for required field.":
            text = "missing required field"
        elif text.startswith("Not a valid "):
            text = "expected " + text.removeprefix("Not a valid ").rstrip(".").lower()
        lines.append(f"{prefix}: {text}" if prefix else text)
    return lines


def unknown_field(known: Any, label: str = "known", key: str | None = None) -> str:
    """The message for an unknown key: the nearest known key, what the original would do,
    and the known keys.

    Example:
        >>> unknown_field(["name", "provider"])
        'unknown field (the Rust original ignores unknown keys; remove it or check its spelling; known: name, provider)'
        >>> unknown_field(["output_encoding", "resource"], key="output_encodng")
        "unknown field (did you mean 'output_encoding'? the Rust original ignores unknown keys; remove it or check its spelling; known: output_encoding, resource)"
    """
    near = difflib.get_close_matches(key, [str(k) for k in known], n=1, cutoff=0.75) if key else []
    guess = f"did you mean {near[0]!r}? " if near else ""
    return f"unknown field ({guess}{UNKNOWN_KEY_HINT}; {label}: {', '.join(sorted(known))})"


def _nested_schema(schema: Schema, key: str) -> Schema | None:
    field = schema.fields.get(key)
    while isinstance(field, fields.List):
        field = field.inner
    if isinstance(field, fields.Nested) and isinstance(field.schema, Schema):
        return field.schema
    return None


def _explain_unknown(
    messages: Any,
    schema: Schema | None,
    label: str = "known",
    known: Collection[str] | None = None,
) -> Any:
    """marshmallow's error dict with each ``Unknown field.`` replaced by :func:`unknown_field`
    naming the keys known where it was found (nested tables included; ``known`` overrides
    the top level's)."""
    if not isinstance(messages, Mapping) or schema is None:
        return messages
    out: dict[Any, Any] = {}
    for key, value in messages.items():
        if isinstance(key, int):  # an item of a list of tables: the same schema
            out[key] = _explain_unknown(value, schema, label, known)
        elif value == ["Unknown field."]:
            out[key] = [unknown_field(schema.fields if known is None else known, label, str(key))]
        else:
            out[key] = _explain_unknown(value, _nested_schema(schema, key))
    return out


def _load(schema: Schema, raw: Any, path: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a table/object, got {type(raw).__name__}")
    try:
        return dict(schema.load(raw))
    except ValidationError as exc:
        raise ConfigError(flatten_errors(_explain_unknown(exc.messages, schema), path)) from None


def _path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def parse_service(raw: Any, path: str = "") -> ServiceConfig:
    """Validate one service definition.

    Raises:
        ConfigError: one line per problem.
    """
    from mstream.providers import get_provider

    head = _load(ServiceHeadSchema(), raw, path)
    try:
        spec = get_provider(head["provider"])
    except ConfigError as exc:
        raise ConfigError([f"{_path(path, 'provider')}: {p}" for p in exc.problems]) from None
    options = {k: v for k, v in head.items() if k not in ("name", "provider")}
    provider_schema = spec.service_schema()
    try:
        loaded = dict(provider_schema.load(options))
    except ValidationError as exc:
        label = f"known for provider {spec.name!r}"
        messages = _explain_unknown(exc.messages, provider_schema, label)
        raise ConfigError(flatten_errors(messages, path)) from None
    return ServiceConfig(name=head["name"], provider=spec.name, options=loaded)


def _parse_step(
    raw: dict[str, Any], path: str, role: str, services: Mapping[str, ServiceConfig]
) -> tuple[StepConfig | None, list[str]]:
    from mstream.providers import get_provider

    problems: list[str] = []
    base_keys = set(STEP_KEYS)
    extra = {k: v for k, v in raw.items() if k not in base_keys}
    service = services.get(raw["service_name"])
    if service is None:
        known = ", ".join(sorted(services)) or "none defined"
        problems.append(
            f"{path}.service_name: no service named {raw['service_name']!r} (services: {known})"
        )
        return None, problems
    if not service.provider:  # the service itself is invalid and already reported
        return None, problems
    spec = get_provider(service.provider)
    factory = {"source": spec.source, "sink": spec.sink, "middleware": spec.middleware}[role]
    if factory is None:
        problems.append(
            f"{path}.service_name: provider {spec.name!r} of service {service.name!r} cannot be a "
            f"{role} (it can be: {', '.join(spec.roles()) or 'a schema registry only'})"
        )
    if spec.needs_resource and not raw.get("resource"):
        problems.append(f"{path}.resource: missing required field for provider {spec.name!r}")
    read = raw.get("input_encoding")
    if role == "source" and read and spec.source_encodings and read not in spec.source_encodings:
        problems.append(
            f"{path}.input_encoding: a {spec.name} source reads "
            f"{' or '.join(spec.source_encodings)}, not {read!r} (remove it, or set "
            "output_encoding to convert)"
        )
    resource = raw.get("resource")
    if spec.resources is not None and resource and resource not in spec.resources:
        near = difflib.get_close_matches(str(resource), spec.resources, n=1, cutoff=0.6)
        guess = f"did you mean {near[0]!r}? " if near else ""
        problems.append(
            f"{path}.resource: {guess}provider {spec.name!r} has no resource {str(resource)[:60]!r} "
            f"(expected: {', '.join(spec.resources)})"
        )
    options: dict[str, Any] = {}
    if extra:
        if spec.step_options is None:
            for key in sorted(extra):
                problems.append(f"{path}.{key}: {unknown_field(base_keys, key=key)}")
        else:
            step_schema = spec.step_options()
            try:
                options = dict(step_schema.load(extra))
            except ValidationError as exc:
                step_keys = base_keys | set(step_schema.fields)
                messages = _explain_unknown(exc.messages, step_schema, known=step_keys)
                problems.extend(flatten_errors(messages, path))
    step = StepConfig(
        service_name=raw["service_name"],
        resource=raw.get("resource") or "",
        output_encoding=raw["output_encoding"],
        input_encoding=raw.get("input_encoding"),
        schema_id=raw.get("schema_id"),
        options=options,
    )
    return step, problems


STEP_KEYS = ("service_name", "resource", "input_encoding", "output_encoding", "schema_id")


def _misspelled_step_keys(raw: Any, path: str) -> list[str]:
    """Step keys that look like a misspelled step field (``output_encodng``), so a "missing
    required field" is reported with the key that was meant for it."""
    if not isinstance(raw, Mapping):
        return []
    steps: list[tuple[str, Any]] = [(_path(path, "source"), raw.get("source"))]
    for group in ("middlewares", "sinks"):
        items = raw.get(group)
        if isinstance(items, list):
            steps += [(f"{_path(path, group)}[{i}]", s) for i, s in enumerate(items)]
    problems = []
    for where, step in steps:
        if not isinstance(step, Mapping):
            continue
        for key in step:
            if key not in STEP_KEYS and difflib.get_close_matches(str(key), STEP_KEYS, 1, 0.75):
                problems.append(f"{where}.{key}: {unknown_field(STEP_KEYS, key=str(key))}")
    return problems


def _undefined_services(raw: Any, path: str, services: Mapping[str, ServiceConfig]) -> list[str]:
    """``service_name: no service named ...`` for every step of a connector that failed to
    load, so a shape error elsewhere does not hide it."""
    if not isinstance(raw, Mapping):
        return []
    steps: list[tuple[str, Any]] = [(_path(path, "source"), raw.get("source"))]
    for group in ("middlewares", "sinks"):
        items = raw.get(group)
        if isinstance(items, list):
            steps += [(f"{_path(path, group)}[{i}]", s) for i, s in enumerate(items)]
    if isinstance(raw.get("dead_letter"), Mapping):
        steps.append((_path(path, "dead_letter"), raw["dead_letter"]))
    known = ", ".join(sorted(services)) or "none defined"
    return [
        f"{where}.service_name: no service named {step['service_name']!r} (services: {known})"
        for where, step in steps
        if isinstance(step, Mapping)
        and isinstance(step.get("service_name"), str)
        and step["service_name"] not in services
    ]


REPLICATED_SOURCES = ("kafka", "pubsub")
"""Source providers that several instances can read at once (consumer group, subscription)."""


def _replica_problems(
    data: Mapping[str, Any], services: Mapping[str, ServiceConfig], where: str
) -> list[str]:
    """What is wrong with ``replicas`` above 1: a single-reader source, or checkpoints (the
    consumer group or subscription keeps the position of replicas)."""
    if data["replicas"] == 1:
        return []
    service = services.get(data["source"]["service_name"])
    if service is not None and service.provider not in REPLICATED_SOURCES:
        return [
            f"{where}: a {service.provider!r} source has a single reader, so it runs on one "
            "instance (replicas above 1 need a kafka or pubsub source)"
        ]
    if (data["checkpoint"] or {}).get("enabled"):
        return [
            f"{where}: replicas share the consumer group's (or subscription's) position; "
            "remove checkpoint = { enabled = true } or set replicas = 1"
        ]
    return []


def parse_connector(
    raw: Any, services: Mapping[str, ServiceConfig], path: str = ""
) -> ConnectorConfig:
    """Validate one connector definition against the known services.

    Raises:
        ConfigError: one line per problem, each with its path.
    """
    try:
        data = _load(ConnectorSchema(), raw, path)
    except ConfigError as exc:
        # report what else is wrong too: every error of the file at once
        extra = _misspelled_step_keys(raw, path) + _undefined_services(raw, path, services)
        raise ConfigError(exc.problems + [e for e in extra if e not in exc.problems]) from None

    def p(key: str) -> str:
        return _path(path, key)

    problems: list[str] = []
    source, found = _parse_step(data["source"], p("source"), "source", services)
    problems += found
    middlewares: list[StepConfig] = []
    for i, m in enumerate(data["middlewares"]):
        step, found = _parse_step(m, f"{p('middlewares')}[{i}]", "middleware", services)
        problems += found
        if step is not None:
            middlewares.append(step)
    sinks: list[StepConfig] = []
    for i, s in enumerate(data["sinks"]):
        step, found = _parse_step(s, f"{p('sinks')}[{i}]", "sink", services)
        problems += found
        if step is not None:
            sinks.append(step)

    schemas = [SchemaRef(**s) for s in data["schemas"]]
    schema_ids = [s.id for s in schemas]
    for i, ref in enumerate(schemas):
        if schema_ids.count(ref.id) > 1 and schema_ids.index(ref.id) != i:
            problems.append(f"{p('schemas')}[{i}].id: duplicate schema id {ref.id!r}")
        service = services.get(ref.service_name)
        if service is None:
            problems.append(
                f"{p('schemas')}[{i}].service_name: no service named {ref.service_name!r}"
            )
        else:
            from mstream.providers import get_provider

            if get_provider(service.provider).schema_loader is None:
                problems.append(
                    f"{p('schemas')}[{i}].service_name: provider {service.provider!r} cannot "
                    "serve schemas (use file, mongodb or pubsub)"
                )

    ordered: list[tuple[str, dict[str, Any]]] = [("source", data["source"])]
    ordered += [(f"middlewares[{i}]", m) for i, m in enumerate(data["middlewares"])]
    current: str | None = None
    for label, raw_step in ordered:
        sid = raw_step.get("schema_id")
        if sid is not None and sid not in schema_ids:
            problems.append(
                f"{p(label)}.schema_id: unknown schema id {sid!r} (defined: {', '.join(schema_ids) or 'none'})"
            )
        current = sid or current
        if raw_step.get("output_encoding") == "avro" and current is None:
            problems.append(
                f"{p(label)}.output_encoding: avro needs a schema (set schema_id here or on an earlier step)"
            )
    for i, raw_step in enumerate(data["sinks"]):
        sid = raw_step.get("schema_id")
        if sid is not None and sid not in schema_ids:
            problems.append(
                f"{p('sinks')}[{i}].schema_id: unknown schema id {sid!r} (defined: {', '.join(schema_ids) or 'none'})"
            )
        if raw_step.get("output_encoding") == "avro" and (sid or current) is None:
            problems.append(
                f"{p('sinks')}[{i}].output_encoding: avro needs a schema (set schema_id here or on an earlier step)"
            )

    dead_letter = None
    if data["dead_letter"] is not None:
        dead_letter = DeadLetterConfig(**data["dead_letter"])
        service = services.get(dead_letter.service_name)
        if service is None:
            problems.append(
                f"{p('dead_letter')}.service_name: no service named {dead_letter.service_name!r}"
            )
        else:
            from mstream.providers import get_provider

            if get_provider(service.provider).sink is None:
                problems.append(
                    f"{p('dead_letter')}.service_name: provider {service.provider!r} cannot be a sink"
                )
    if data["batch"] is None:  # a sink's batch option that only applies to batches
        for i, raw_sink in enumerate(data["sinks"]):
            for key, value in (("batch_mode", "messages"), ("batch_layout", "array")):
                if raw_sink.get(key) == value:
                    problems.append(
                        f"{p('sinks')}[{i}].{key}: {value!r} has no effect without batching "
                        '(add batch = { kind = "count", size = N } to the connector, or remove it)'
                    )
    problems += _replica_problems(data, services, p("replicas"))
    if problems:
        raise ConfigError(problems)
    assert source is not None
    batch = BatchConfig(**data["batch"]) if data["batch"] else None
    checkpoint = data["checkpoint"] or {"enabled": False, "interval_ms": 1000}
    return ConnectorConfig(
        name=data["name"],
        enabled=data["enabled"],
        source=source,
        middlewares=tuple(middlewares),
        sinks=tuple(sinks),
        schemas=tuple(schemas),
        batch=batch,
        checkpoint=bool(checkpoint["enabled"]),
        checkpoint_interval_ms=int(checkpoint["interval_ms"]),
        dead_letter=dead_letter,
        verify_payloads=data["verify_payloads"],
        replicas=data["replicas"],
    )


def parse_system(
    raw: Any, services: Mapping[str, ServiceConfig], path: str = "system"
) -> SystemConfig:
    """Validate the ``[system]`` table.

    Raises:
        ConfigError: one line per problem.
    """
    data = _load(SystemSchema(), raw or {}, path)
    problems: list[str] = []
    refs: dict[str, StoreRef | None] = {}
    for key in ("checkpoints", "service_lifecycle", "schemas", "test_suites", "workspaces"):
        ref = data[key]
        refs[key] = StoreRef(**ref) if ref else None
    lifecycle = data["job_lifecycle"] or {"startup_state": "seed_from_file"}
    job_ref = None
    if lifecycle.get("service_name"):
        job_ref = StoreRef(lifecycle["service_name"], lifecycle.get("resource") or "mstream-jobs")
    refs["job_lifecycle"] = job_ref
    for key, ref in refs.items():
        if ref is None:
            continue
        service = services.get(ref.service_name)
        if service is None:
            problems.append(f"{path}.{key}.service_name: no service named {ref.service_name!r}")
        elif service.provider != "mongodb":
            problems.append(
                f"{path}.{key}.service_name: service {ref.service_name!r} is a "
                f"{service.provider!r} service; system stores need a mongodb service"
            )
    if problems:
        raise ConfigError(problems)
    return SystemConfig(
        encryption_key_path=data["encryption_key_path"],
        data_dir=data["data_dir"],
        checkpoints=refs["checkpoints"],
        job_lifecycle=job_ref,
        startup_state=lifecycle["startup_state"],
        service_lifecycle=refs["service_lifecycle"],
        file_roots=tuple(data["file_roots"]) if data["file_roots"] is not None else None,
        http_allowed_hosts=tuple(data["http_allowed_hosts"]),
        schemas=refs["schemas"],
        test_suites=refs["test_suites"],
        workspaces=refs["workspaces"],
        logs=LogsConfig(**data["logs"]),
        generate_encryption_key=data["generate_encryption_key"],
        instance_id=data["instance_id"],
        cluster=ClusterConfig(**data["cluster"]),
    )


_ENV_REF = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")


def resolve_env(raw: Any, environ: Mapping[str, str], path: str = "") -> tuple[Any, list[str]]:
    """Replace every ``"env:NAME"`` string with the variable's value.

    Example:
        >>> resolve_env({"a": ["env:X"]}, {"X": "1"})
        ({'a': ['1']}, [])
        >>> resolve_env({"a": "env:MISSING"}, {})[1]
        ['a: environment variable MISSING is not set']
    """
    problems: list[str] = []
    if isinstance(raw, dict):
        out: dict[str, Any] = {}
        for key, value in raw.items():
            out[key], found = resolve_env(value, environ, _path(path, str(key)))
            problems += found
        return out, problems
    if isinstance(raw, list):
        items = []
        for i, value in enumerate(raw):
            item, found = resolve_env(value, environ, f"{path}[{i}]")
            items.append(item)
            problems += found
        return items, problems
    if isinstance(raw, str):
        match = _ENV_REF.match(raw)
        if match:
            name = match.group(1)
            if name not in environ:
                return raw, [f"{path}: environment variable {name} is not set"]
            return environ[name], []
    return raw, []
