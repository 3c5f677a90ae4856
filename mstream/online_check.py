"""``mstream validate --online``: connect to each service and check what a run would need.

Each check has a subject (``services[2] kafka-local``, ``connectors[0].source``), what was
checked and a reason when it failed: Kafka bootstrap servers answer and a step's topic
exists (with its partitions), MongoDB answers, a change-stream source has a replica set
and a step's collection exists, Pub/Sub subscriptions and topics exist, an HTTP host
accepts a connection, and each schema reference loads. Every client gets a short timeout
(:data:`TIMEOUT` seconds), so an unreachable service costs seconds, not minutes.

Example:
    >>> print(table([Check("services[0] gen", "nothing to reach", True, "")]))
    ✓ services[0] gen: nothing to reach
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mstream.config.model import Config, ConnectorConfig, ServiceConfig, StepConfig
from mstream.errors import MstreamError

TIMEOUT = 3.0


@dataclass(frozen=True)
class Check:
    """One online check and its outcome."""

    subject: str
    what: str
    ok: bool
    reason: str = ""


def table(checks: list[Check]) -> str:
    """The checks as lines: ``✓ subject: what`` or ``✗ subject: what: reason``."""
    return "\n".join(
        f"{'✓' if c.ok else '✗'} {c.subject}: {c.what}" + ("" if c.ok else f": {c.reason}")
        for c in checks
    )


def _attempt(subject: str, what: str, probe: Callable[[], str | None]) -> Check:
    """Run ``probe``; it returns ``None`` when fine, else the reason."""
    try:
        reason = probe()
    except MstreamError as exc:
        reason = str(exc)
    except Exception as exc:  # a client's own error: what it says is the reason
        text = str(exc)
        name = type(exc).__name__
        reason = text if text.startswith(name) else f"{name}: {text}"
    return Check(subject, what, reason is None, (reason or "")[:500])


# -- Kafka ----------------------------------------------------------------------------


def _kafka_topics(service: ServiceConfig) -> dict[str, int]:
    from kafka import KafkaConsumer

    from mstream.providers.kafka.config import client_options
    from mstream.providers.kafka.kafka_python import _with_bootstrap_timeout

    options = client_options(service.options, "consumer")
    options.pop("group_id", None)
    options["request_timeout_ms"] = int(TIMEOUT * 1000) + 500
    _with_bootstrap_timeout(options, KafkaConsumer, int(TIMEOUT * 1000))
    consumer = KafkaConsumer(**options)
    try:
        return {t: len(consumer.partitions_for_topic(t) or ()) for t in consumer.topics()}
    finally:
        consumer.close()


# -- MongoDB --------------------------------------------------------------------------


def _mongo(service: ServiceConfig) -> Any:
    from pymongo import MongoClient

    return MongoClient(
        service.options["connection_string"],
        serverSelectionTimeoutMS=int(TIMEOUT * 1000),
        connectTimeoutMS=int(TIMEOUT * 1000),
    )


def _service_checks(service: ServiceConfig, label: str, cache: dict[str, Any]) -> list[Check]:
    provider = service.provider
    if provider == "kafka":

        def kafka() -> str | None:
            cache[service.name] = _kafka_topics(service)
            return None

        servers = service.options.get("bootstrap.servers", "")
        return [_attempt(label, f"bootstrap servers {servers} answer", kafka)]
    if provider == "mongodb":

        def mongo() -> str | None:
            client = _mongo(service)
            try:
                hello = client.admin.command("hello")
                cache[service.name] = {
                    "replica_set": bool(hello.get("setName")) or hello.get("msg") == "isdbgrid",
                    "collections": set(client[service.options["db_name"]].list_collection_names()),
                }
            finally:
                client.close()
            return None

        return [_attempt(label, "server answers", mongo)]
    if provider == "http":

        def http() -> str | None:
            parts = urlsplit(str(service.options.get("host", "")))
            port = parts.port or (443 if parts.scheme == "https" else 80)
            with socket.create_connection((parts.hostname or "", port), timeout=TIMEOUT):
                return None

        return [_attempt(label, f"host {service.options.get('host')} accepts a connection", http)]
    return []


def _step_checks(
    step: StepConfig,
    role: str,
    label: str,
    services: dict[str, ServiceConfig],
    cache: dict[str, Any],
) -> list[Check]:
    service = services.get(step.service_name)
    if service is None or (service.name not in cache and service.provider in ("kafka", "mongodb")):
        return []  # its service did not answer: already reported
    if service.provider == "kafka":
        topics: dict[str, int] = cache[service.name]

        def topic() -> str | None:
            if step.resource in topics:
                return None
            return f"no topic {step.resource!r} (auto-creation would make it with the broker's defaults)"

        found = topics.get(step.resource)
        what = f"topic {step.resource!r} exists" + (f" ({found} partitions)" if found else "")
        return [_attempt(label, what, topic)]
    if service.provider == "mongodb":
        info = cache[service.name]
        checks = []
        if role == "source":
            checks.append(
                _attempt(
                    label,
                    "a replica set (change streams need one)",
                    lambda: (
                        None if info["replica_set"] else "a standalone server has no change streams"
                    ),
                )
            )
        exists = step.resource in info["collections"]
        checks.append(
            Check(
                label,
                f"collection {step.resource!r} exists"
                if exists
                else f"collection {step.resource!r} does not exist yet (created by the first "
                f"write; a change stream waits for it)",
                True,
            )
        )
        return checks
    if service.provider == "pubsub":
        kind = "subscriptions" if role == "source" else "topics"

        def pubsub() -> str | None:
            from google.cloud import pubsub_v1

            from mstream.providers.pubsub import _client_kwargs, resource_path

            path = resource_path(service.options["project_id"], step.resource, kind)
            if kind == "subscriptions":
                client = pubsub_v1.SubscriberClient(**_client_kwargs(service))
                try:
                    client.get_subscription(subscription=path, timeout=TIMEOUT)
                finally:
                    client.close()
            else:
                publisher = pubsub_v1.PublisherClient(**_client_kwargs(service))
                publisher.get_topic(topic=path, timeout=TIMEOUT)
            return None

        return [_attempt(label, f"{kind[:-1]} {step.resource!r} exists", pubsub)]
    return []


def failures_of(
    connectors: tuple[ConnectorConfig, ...], services: Mapping[str, ServiceConfig]
) -> list[str]:
    """The failed online checks of ``connectors`` (or, with none, of ``services``) as
    ``online: subject: what: reason`` problem lines (``POST ...?check=online``)."""
    used = {n for c in connectors for n in c.service_names()} if connectors else set(services)
    config = Config(
        services=tuple(s for n, s in services.items() if n in used), connectors=connectors
    )
    return [f"online: {c.subject}: {c.what}: {c.reason}" for c in check_online(config) if not c.ok]


def _schema_probe(
    loader: Callable[[ServiceConfig, str], object], service: ServiceConfig, resource: str
) -> Callable[[], str | None]:
    """A probe that loads ``resource`` from ``service`` (a failure raises: the reason)."""

    def probe() -> str | None:
        loader(service, resource)
        return None

    return probe


def check_online(config: Config) -> list[Check]:
    """Every online check of ``config``, services first, then each connector's steps and
    schema references."""
    from mstream.providers import get_provider

    services = {s.name: s for s in config.services}
    cache: dict[str, Any] = {}
    checks: list[Check] = []
    for i, service in enumerate(config.services):
        checks += _service_checks(service, f"services[{i}] {service.name}", cache)
    for c, connector in enumerate(config.connectors):
        where = f"connectors[{c}] {connector.name}"
        checks += _step_checks(connector.source, "source", f"{where} source", services, cache)
        for i, step in enumerate(connector.sinks):
            checks += _step_checks(step, "sink", f"{where} sinks[{i}]", services, cache)
        for i, ref in enumerate(connector.schemas):
            ref_service = services.get(ref.service_name)
            loader = get_provider(ref_service.provider).schema_loader if ref_service else None
            if ref_service is None or loader is None:
                continue
            checks.append(
                _attempt(
                    f"{where} schemas[{i}]",
                    f"schema {ref.resource!r} loads from {ref.service_name}",
                    _schema_probe(loader, ref_service, ref.resource),
                )
            )
    return checks
