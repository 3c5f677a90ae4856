"""Validated configuration objects (what the marshmallow schemas produce).

Example:
    >>> step = StepConfig(service_name="out", resource="out.jsonl", output_encoding="json")
    >>> step.input_encoding is None
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ServiceConfig:
    """A named connection: ``provider`` plus the provider's own options."""

    name: str
    provider: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The service as written in a config file (secrets included: never log this)."""
        return {"name": self.name, "provider": self.provider, **self.options}


@dataclass(frozen=True)
class StepConfig:
    """One pipeline step: a source, a middleware or a sink."""

    service_name: str
    resource: str = ""
    output_encoding: str = "json"
    input_encoding: str | None = None
    schema_id: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The step as written in a config file."""
        out: dict[str, Any] = {"service_name": self.service_name}
        if self.resource:
            out["resource"] = self.resource
        if self.input_encoding:
            out["input_encoding"] = self.input_encoding
        out["output_encoding"] = self.output_encoding
        if self.schema_id:
            out["schema_id"] = self.schema_id
        out.update(self.options)
        return out


@dataclass(frozen=True)
class SchemaRef:
    """Where a schema (Avro or JSON Schema) comes from: ``resource`` of ``service_name``."""

    id: str
    service_name: str
    resource: str


@dataclass(frozen=True)
class BatchConfig:
    """``batch = { kind = "count", size = N, max_wait_ms = T }``."""

    size: int
    max_wait_ms: int = 1000
    kind: str = "count"


@dataclass(frozen=True)
class DeadLetterConfig:
    """``dead_letter = { service_name, resource }``: where bad events go."""

    service_name: str
    resource: str = ""
    output_encoding: str = "json"


@dataclass(frozen=True)
class ConnectorConfig:
    """A connector (job) definition."""

    name: str
    source: StepConfig
    sinks: tuple[StepConfig, ...]
    enabled: bool = True
    middlewares: tuple[StepConfig, ...] = ()
    schemas: tuple[SchemaRef, ...] = ()
    batch: BatchConfig | None = None
    checkpoint: bool = False
    checkpoint_interval_ms: int = 1000
    dead_letter: DeadLetterConfig | None = None
    verify_payloads: bool = True
    """Decode every payload at the source, so an undecodable one is dead-lettered there.
    False forwards the payloads of a passthrough (no step needs the document) byte for
    byte, as a mirror does; a bad payload is then caught only where a step decodes it."""
    replicas: int = 1
    """How many instances run the job at once (Kafka and Pub/Sub sources only; with several
    instances sharing MongoDB state stores, see :mod:`mstream.cluster`)."""

    def service_names(self) -> set[str]:
        """Every service this connector uses."""
        names = {self.source.service_name}
        names.update(s.service_name for s in self.sinks)
        names.update(m.service_name for m in self.middlewares)
        names.update(s.service_name for s in self.schemas)
        if self.dead_letter is not None:
            names.add(self.dead_letter.service_name)
        return names

    def to_dict(self) -> dict[str, Any]:
        """The connector as written in a config file / sent to ``POST /jobs``."""
        out: dict[str, Any] = {
            "name": self.name,
            "enabled": self.enabled,
            "source": self.source.to_dict(),
            "sinks": [s.to_dict() for s in self.sinks],
        }
        if self.middlewares:
            out["middlewares"] = [m.to_dict() for m in self.middlewares]
        if self.schemas:
            out["schemas"] = [
                {"id": s.id, "service_name": s.service_name, "resource": s.resource}
                for s in self.schemas
            ]
        if self.batch is not None:
            out["batch"] = {
                "kind": self.batch.kind,
                "size": self.batch.size,
                "max_wait_ms": self.batch.max_wait_ms,
            }
        if self.checkpoint:
            out["checkpoint"] = {
                "enabled": True,
                "interval_ms": self.checkpoint_interval_ms,
            }
        if self.dead_letter is not None:
            dl: dict[str, Any] = {"service_name": self.dead_letter.service_name}
            if self.dead_letter.resource:
                dl["resource"] = self.dead_letter.resource
            dl["output_encoding"] = self.dead_letter.output_encoding
            out["dead_letter"] = dl
        if not self.verify_payloads:
            out["verify_payloads"] = False
        if self.replicas != 1:
            out["replicas"] = self.replicas
        return out


@dataclass(frozen=True)
class StoreRef:
    """``{ service_name, resource }`` naming a MongoDB service and collection."""

    service_name: str
    resource: str


@dataclass(frozen=True)
class LogsConfig:
    """``[system.logs]``: the size of the log buffer behind ``GET /logs`` and how many
    entries ``GET /logs/stream`` sends first."""

    buffer_capacity: int
    stream_preload_count: int


@dataclass(frozen=True)
class ClusterConfig:
    """``[system.cluster]``: how long a job's lease lasts unrenewed, and how often each
    instance renews its leases and writes its heartbeat (defaults in the schema)."""

    lease_ttl_ms: int = 10_000
    heartbeat_interval_ms: int = 2000


@dataclass(frozen=True)
class SystemConfig:
    """The ``[system]`` table.

    ``schemas`` names the collection that MongoDB schema references in the original's form
    are looked up in; ``test_suites``, ``workspaces``, ``logs`` and
    ``generate_encryption_key`` are the original's keys, kept (``None`` when absent) but
    not acted on (see :mod:`mstream.config.compat`).
    """

    encryption_key_path: str = "./mstream.key"
    data_dir: str = "./mstream-data"
    checkpoints: StoreRef | None = None
    job_lifecycle: StoreRef | None = None
    startup_state: str = "seed_from_file"
    service_lifecycle: StoreRef | None = None
    file_roots: tuple[str, ...] | None = None
    http_allowed_hosts: tuple[str, ...] = ()
    schemas: StoreRef | None = None
    test_suites: StoreRef | None = None
    workspaces: StoreRef | None = None
    logs: LogsConfig = field(default_factory=lambda: LogsConfig(10_000, 100))
    generate_encryption_key: bool | None = None
    instance_id: str | None = None
    """This instance's id in the cluster (host and process id when ``None``)."""
    cluster: ClusterConfig = field(default_factory=ClusterConfig)


@dataclass(frozen=True)
class Config:
    """A whole configuration file."""

    services: tuple[ServiceConfig, ...] = ()
    connectors: tuple[ConnectorConfig, ...] = ()
    system: SystemConfig = field(default_factory=SystemConfig)
    path: str = "<memory>"

    def service(self, name: str) -> ServiceConfig | None:
        """The service called ``name``, if defined."""
        return next((s for s in self.services if s.name == name), None)
