"""Schemas kept by a service: MongoDB's schema documents (the original's form), Pub/Sub's
schema registry. ``GET/POST /services/{name}/schemas``, ``GET/DELETE .../schemas/{id}``.

A schema is ``{"id", "name", "encoding": "avro"|"json", "definition": <JSON text>}``; a
definition is checked (Avro parsed, JSON Schema compiled) before it is saved.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

from mstream.config.model import ServiceConfig
from mstream.encodings.schemas import parse_schema
from mstream.errors import ConfigError, ConflictError, DeliveryError, NotFoundError


def _check(document: Mapping[str, Any]) -> dict[str, Any]:
    name = document.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        raise ConfigError("name: 1 to 200 characters are required")
    encoding = document.get("encoding", "avro")
    if encoding not in ("avro", "json"):
        raise ConfigError(f"encoding: must be avro or json (got {str(encoding)[:20]!r})")
    definition = document.get("definition")
    if isinstance(definition, Mapping):
        definition = json.dumps(definition)
    if not isinstance(definition, str):
        raise ConfigError("definition: the schema (JSON text or an object) is required")
    try:
        parse_schema(definition, encoding, name)
    except ConfigError as exc:
        raise ConfigError("definition: " + "; ".join(exc.problems)) from None
    doc_id = document.get("id") or secrets.token_hex(6)
    return {"id": str(doc_id), "name": name, "encoding": encoding, "definition": definition}


# -- MongoDB --------------------------------------------------------------------------


def _collection(service: ServiceConfig) -> tuple[Any, Any]:
    from mstream.providers.mongodb.config import mongo_client
    from mstream.providers.mongodb.schema_registry import schema_collection

    client = mongo_client(service, None)
    return client, client[service.options["db_name"]][schema_collection()]


def _mongo(service: ServiceConfig, action: str, *args: Any) -> Any:
    from pymongo.errors import PyMongoError

    client, coll = _collection(service)
    try:
        if action == "list":
            return [
                {
                    "id": str(d.get("id", d.get("_id"))),
                    "name": d.get("name"),
                    "encoding": d.get("encoding"),
                }
                for d in coll.find({}, {"_id": 1, "id": 1, "name": 1, "encoding": 1})
            ]
        if action == "get":
            found = coll.find_one({"$or": [{"id": args[0]}, {"name": args[0]}]}, {"_id": 0})
            return found
        if action == "save":
            doc = args[0]
            coll.replace_one({"id": doc["id"]}, doc, upsert=True)
            return doc
        if action == "delete":
            return coll.delete_one({"id": args[0]}).deleted_count > 0
    except PyMongoError as exc:
        raise DeliveryError(f"mongodb service {service.name!r}: {type(exc).__name__}") from None
    finally:
        client.close()
    raise AssertionError(action)


# -- Pub/Sub --------------------------------------------------------------------------


def _pubsub(service: ServiceConfig, action: str, *args: Any) -> Any:
    from google.api_core.exceptions import AlreadyExists, GoogleAPIError, NotFound
    from google.cloud import pubsub_v1
    from google.pubsub_v1.types import Schema

    from mstream.providers.pubsub import _client_kwargs

    project = f"projects/{service.options['project_id']}"
    client = pubsub_v1.SchemaServiceClient(**_client_kwargs(service))
    try:
        if action == "list":
            return [
                {
                    "id": s.name.rsplit("/", 1)[-1],
                    "name": s.name.rsplit("/", 1)[-1],
                    "encoding": "avro" if s.type_ == Schema.Type.AVRO else s.type_.name.lower(),
                }
                for s in client.list_schemas(parent=project, timeout=10)
            ]
        if action == "get":
            try:
                found = client.get_schema(name=f"{project}/schemas/{args[0]}", timeout=10)
            except NotFound:
                return None
            return {
                "id": args[0],
                "name": args[0],
                "encoding": "avro",
                "definition": found.definition,
            }
        if action == "save":
            doc = args[0]
            if doc["encoding"] != "avro":
                raise ConfigError("encoding: the Pub/Sub schema registry keeps Avro schemas here")
            schema = Schema(
                name=f"{project}/schemas/{doc['name']}",
                type_=Schema.Type.AVRO,
                definition=doc["definition"],
            )
            try:
                client.create_schema(
                    parent=project, schema=schema, schema_id=doc["name"], timeout=10
                )
            except AlreadyExists:
                raise ConflictError(
                    f"a Pub/Sub schema {doc['name']!r} exists; delete it first"
                ) from None
            return {**doc, "id": doc["name"]}
        if action == "delete":
            try:
                client.delete_schema(name=f"{project}/schemas/{args[0]}", timeout=10)
            except NotFound:
                return False
            return True
    except GoogleAPIError as exc:
        raise DeliveryError(f"pubsub service {service.name!r}: {type(exc).__name__}") from None
    raise AssertionError(action)


_BACKENDS = {"mongodb": _mongo, "pubsub": _pubsub}


def _backend(service: ServiceConfig) -> Any:
    backend = _BACKENDS.get(service.provider)
    if backend is None:
        raise ConfigError(
            f"provider {service.provider!r} keeps no schemas (MongoDB and Pub/Sub services do)"
        )
    return backend


def list_schemas(service: ServiceConfig) -> list[dict[str, Any]]:
    """The schemas a service keeps (id, name, encoding)."""
    return _backend(service)(service, "list")


def get_schema(service: ServiceConfig, schema_id: str) -> dict[str, Any]:
    """One schema with its definition.

    Raises:
        NotFoundError: none with that id (or name).
    """
    found = _backend(service)(service, "get", schema_id)
    if found is None:
        raise NotFoundError(f"service {service.name!r} has no schema {schema_id[:100]!r}")
    return dict(found)


def save_schema(service: ServiceConfig, document: Mapping[str, Any]) -> dict[str, Any]:
    """Check and save a schema (MongoDB: replaced by id; Pub/Sub: 409 when it exists)."""
    backend = _backend(service)
    return backend(service, "save", _check(document))


def delete_schema(service: ServiceConfig, schema_id: str) -> None:
    """Delete a schema.

    Raises:
        NotFoundError: none with that id.
    """
    if not _backend(service)(service, "delete", schema_id):
        raise NotFoundError(f"service {service.name!r} has no schema {schema_id[:100]!r}")
