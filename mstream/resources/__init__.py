"""What a service holds: its resources and a few sample events, safe to show.

``GET /services/{name}/resources`` lists a service's resources (MongoDB collections
without ``system.*``, Kafka topics, Pub/Sub topics and subscriptions, UDF scripts, files
under a file service's base directory); ``GET /services/{name}/resources/{resource}``
shows a script's text or up to :data:`MAX_SAMPLES` sample events, and
``.../schema?sample_size=N`` the field names, types and presence of up to 1000 sampled
events, never their values.

Every sample is capped (:data:`MAX_SAMPLE_BYTES` in all, each value's text cut) and masked
with the registry's secrets; files are read only inside the file access policy's roots;
sampling never acknowledges or consumes anything (a Pub/Sub message pulled for a sample is
handed back at once).

Example:
    >>> describe_fields([{"a": 1, "b": {"c": "x"}}, {"a": None}])
    [{'name': 'a', 'types': ['integer', 'null'], 'present': 2, 'presence': 1.0}, {'name': 'b', 'types': ['object'], 'present': 1, 'presence': 0.5}, {'name': 'b.c', 'types': ['string'], 'present': 1, 'presence': 0.5}]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mstream.config.model import ServiceConfig
from mstream.core.json_types import json_type
from mstream.errors import ConfigError

MAX_SAMPLES = 20
MAX_SAMPLE_BYTES = 256 * 1024
MAX_SCHEMA_SAMPLE = 1000

Lister = Callable[[ServiceConfig], list[dict[str, Any]]]
Sampler = Callable[[ServiceConfig, str, int], list[Any]]


def _registry() -> dict[str, tuple[Lister, Sampler | None]]:
    from mstream.resources import files, kafka, mongodb, pubsub, udf

    return {
        "mongodb": (mongodb.list_resources, mongodb.sample),
        "kafka": (kafka.list_resources, kafka.sample),
        "pubsub": (pubsub.list_resources, pubsub.sample),
        "file": (files.list_resources, files.sample),
        "udf": (udf.list_resources, None),
    }


def list_resources(service: ServiceConfig) -> list[dict[str, Any]]:
    """The service's resources, each ``{"name", "kind", ...}``.

    Raises:
        ConfigError: the provider has nothing to list.
        DeliveryError: the service cannot be reached.
    """
    found = _registry().get(service.provider)
    if found is None:
        raise ConfigError(f"provider {service.provider!r} has no resources to list")
    return found[0](service)


def sample(service: ServiceConfig, resource: str, count: int) -> list[Any]:
    """Up to ``count`` documents of ``resource`` (never acknowledged or consumed).

    Raises:
        ConfigError: the provider cannot be sampled, or the resource is refused.
        DeliveryError: the service cannot be reached.
    """
    found = _registry().get(service.provider)
    if found is None or found[1] is None:
        raise ConfigError(f"provider {service.provider!r} cannot be sampled")
    return found[1](service, resource, count)


def describe_fields(documents: Iterable[Any]) -> list[dict[str, Any]]:
    """Field paths with their types and how many documents have them - never values."""
    seen: dict[str, tuple[set[str], int]] = {}
    total = 0

    def visit(prefix: str, value: Mapping[str, Any], counted: set[str]) -> None:
        for key, item in value.items():
            path = f"{prefix}{key}"
            types, present = seen.get(path, (set(), 0))
            types.add(json_type(item))
            if path not in counted:
                counted.add(path)
                present += 1
            seen[path] = (types, present)
            if isinstance(item, Mapping):
                visit(f"{path}.", item, counted)

    for document in documents:
        total += 1
        if isinstance(document, Mapping):
            visit("", document, set())
    return [
        {
            "name": path,
            "types": sorted(types),
            "present": present,
            "presence": round(present / total, 3) if total else 0.0,
        }
        for path, (types, present) in seen.items()
    ]
