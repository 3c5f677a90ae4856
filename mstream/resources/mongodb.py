"""MongoDB collections and sample documents."""

from __future__ import annotations

from typing import Any

from pymongo.errors import PyMongoError

from mstream.config.model import ServiceConfig
from mstream.errors import ConfigError, DeliveryError


def _database(service: ServiceConfig) -> Any:
    from mstream.providers.mongodb.config import mongo_client

    return mongo_client(service, None), service.options["db_name"]


def list_resources(service: ServiceConfig) -> list[dict[str, Any]]:
    """Collections of the service's database, without ``system.*``."""
    client, db = _database(service)
    try:
        names = client[db].list_collection_names()
    except PyMongoError as exc:
        raise DeliveryError(f"mongodb service {service.name!r}: {type(exc).__name__}") from None
    finally:
        client.close()
    return [{"name": n, "kind": "collection"} for n in sorted(names) if not n.startswith("system.")]


def sample(service: ServiceConfig, resource: str, count: int) -> list[Any]:
    """The first ``count`` documents of a collection (natural order)."""
    if resource.startswith("system.") or "$" in resource or not resource:
        raise ConfigError(f"resource: {resource[:100]!r} is not a collection that can be sampled")
    client, db = _database(service)
    try:
        return list(client[db][resource].find({}, limit=count))
    except PyMongoError as exc:
        raise DeliveryError(f"mongodb service {service.name!r}: {type(exc).__name__}") from None
    finally:
        client.close()
