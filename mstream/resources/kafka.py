"""Kafka topics and the newest messages of a topic (read without a group: nothing is
committed, no consumer group is joined)."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson

from mstream.config.model import ServiceConfig
from mstream.errors import ConfigError, DeliveryError

TIMEOUT = 5.0


def _consumer(service: ServiceConfig) -> Any:
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    from mstream.providers.kafka.config import client_options

    options = client_options(service.options, "consumer")
    options.pop("group_id", None)
    options["enable_auto_commit"] = False
    try:
        return KafkaConsumer(**options, request_timeout_ms=int(TIMEOUT * 1000) + 1000)
    except KafkaError as exc:
        raise DeliveryError(f"kafka service {service.name!r}: {type(exc).__name__}") from None


def list_resources(service: ServiceConfig) -> list[dict[str, Any]]:
    """Topics, without Kafka's internal ones (``__consumer_offsets`` ...)."""
    consumer = _consumer(service)
    try:
        topics = consumer.topics()
    finally:
        consumer.close()
    return [{"name": t, "kind": "topic"} for t in sorted(topics) if not t.startswith("__")]


def _document(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return {"$base64": base64.b64encode(value).decode("ascii")}


def sample(service: ServiceConfig, resource: str, count: int) -> list[Any]:
    """The newest ``count`` messages across the topic's partitions, oldest first."""
    from kafka import TopicPartition

    consumer = _consumer(service)
    try:
        partitions = consumer.partitions_for_topic(resource)
        if not partitions:
            raise ConfigError(f"resource: no topic {resource[:100]!r}")
        assigned = [TopicPartition(resource, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        ends = consumer.end_offsets(assigned)
        starts = consumer.beginning_offsets(assigned)
        wanted = 0
        for tp in assigned:
            first = max(starts[tp], ends[tp] - count)
            consumer.seek(tp, first)
            wanted += ends[tp] - first
        records: list[Any] = []
        deadline = time.monotonic() + TIMEOUT
        while len(records) < wanted and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200, max_records=count).values():
                records.extend(batch)
        records.sort(key=lambda r: r.timestamp)
        return [_document(r.value) for r in records[-count:]]
    finally:
        consumer.close()
