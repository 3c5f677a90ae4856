"""Pub/Sub topics and subscriptions of the service's project, and sample messages.

A sample pulls from a subscription and hands every pulled message back at once (ack
deadline 0), so the subscription's consumers get them as if nothing had happened.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from mstream.config.model import ServiceConfig
from mstream.errors import ConfigError, DeliveryError

TIMEOUT = 10.0


def _clients(service: ServiceConfig) -> tuple[Any, Any]:
    from google.cloud import pubsub_v1

    from mstream.providers.pubsub import _client_kwargs

    kwargs = _client_kwargs(service)
    return pubsub_v1.PublisherClient(**kwargs), pubsub_v1.SubscriberClient(**kwargs)


def list_resources(service: ServiceConfig) -> list[dict[str, Any]]:
    """Topics and subscriptions (short names) of the service's project."""
    from google.api_core.exceptions import GoogleAPIError

    project = f"projects/{service.options['project_id']}"
    publisher, subscriber = _clients(service)
    try:
        topics = [t.name for t in publisher.list_topics(project=project, timeout=TIMEOUT)]
        subscriptions = [
            s.name for s in subscriber.list_subscriptions(project=project, timeout=TIMEOUT)
        ]
    except GoogleAPIError as exc:
        raise DeliveryError(f"pubsub service {service.name!r}: {type(exc).__name__}") from None
    finally:
        subscriber.close()
        publisher.stop()
    short = [{"name": t.rsplit("/", 1)[-1], "kind": "topic"} for t in sorted(topics)]
    return short + [
        {"name": s.rsplit("/", 1)[-1], "kind": "subscription"} for s in sorted(subscriptions)
    ]


def _document(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return {"$base64": base64.b64encode(data).decode("ascii")}


def sample(service: ServiceConfig, resource: str, count: int) -> list[Any]:
    """Up to ``count`` messages of a subscription, handed back unacknowledged."""
    from google.api_core.exceptions import DeadlineExceeded, GoogleAPIError, NotFound

    from mstream.providers.pubsub import resource_path

    path = resource_path(service.options["project_id"], resource, "subscriptions")
    _, subscriber = _clients(service)
    try:
        answer = subscriber.pull(
            subscription=path, max_messages=count, return_immediately=False, timeout=TIMEOUT
        )
    except DeadlineExceeded:
        return []
    except NotFound:
        raise ConfigError(
            f"resource: no subscription {resource[:100]!r} (sample a subscription, not a topic)"
        ) from None
    except GoogleAPIError as exc:
        raise DeliveryError(f"pubsub service {service.name!r}: {type(exc).__name__}") from None
    try:
        received = list(answer.received_messages)
        if received:
            subscriber.modify_ack_deadline(
                subscription=path, ack_ids=[m.ack_id for m in received], ack_deadline_seconds=0
            )
        return [_document(m.message.data) for m in received]
    finally:
        subscriber.close()
