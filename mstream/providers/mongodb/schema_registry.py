"""The schema registry: Avro and JSON schemas stored as documents in a collection."""

from __future__ import annotations

from typing import Any

from pymongo.errors import PyMongoError

from mstream.config.model import ServiceConfig
from mstream.encodings import StepSchema, parse_schema
from mstream.encodings.bsoncodec import DECODE_OPTIONS
from mstream.errors import ConfigError
from mstream.providers.mongodb.config import check_collection, mongo_client, transport_error

DEFAULT_SCHEMA_COLLECTION = "schemas"
"""Where schema documents in the original's form are looked up without ``[system.schemas]``."""

_schema_collection = DEFAULT_SCHEMA_COLLECTION


def install_schema_collection(name: str | None) -> None:
    """Set the collection of the original's schema documents for every MongoDB service.

    ``[system.schemas].resource`` (``None``: :data:`DEFAULT_SCHEMA_COLLECTION`). As in the
    original it is one setting for the whole process, installed by the job manager.

    Example:
        >>> install_schema_collection("team-schemas"); schema_collection()
        'team-schemas'
        >>> install_schema_collection(None); schema_collection()
        'schemas'
    """
    global _schema_collection
    _schema_collection = name or DEFAULT_SCHEMA_COLLECTION


def schema_collection() -> str:
    """The collection the original's schema documents are looked up in now."""
    return _schema_collection


def load_schema(service: ServiceConfig, resource: str) -> StepSchema:
    """Read a schema stored in a collection, in either of two forms.

    * The original's: ``resource = "<schema id or name>"`` (no ``/``). The document in the
      ``schemas`` collection (or ``[system.schemas].resource``) whose ``id`` or ``name`` is
      ``resource``; its ``encoding`` (``avro`` or ``json``) says what its ``definition``
      (a JSON string, or an embedded document) is.
    * mstream's: ``resource = "<collection>/<schema id>"``. The document whose ``_id`` (or
      ``schema_id``) is the id; ``schema_definition`` (or ``schema``) holds the schema,
      ``schema_encoding`` is ``avro`` (the default) or ``json``.

    Raises:
        ConfigError: no such document, or not a usable schema.
        DeliveryError: the server is unreachable.
    """
    where = f"schema {resource!r} of service {service.name!r}"
    collection, slash, schema_id = resource.partition("/")
    if slash:
        if not collection or not schema_id:
            raise ConfigError(
                f"{where}: a mongodb schema resource is '<schema id>' (the original's schema "
                "documents) or '<collection>/<schema_id>'"
            )
        query: list[dict[str, Any]] = [{"_id": schema_id}, {"schema_id": schema_id}]
        fields_used = ("schema_encoding", "schema_definition", "schema")
    else:
        collection = schema_collection()
        query = [{"$or": [{"id": resource}, {"name": resource}]}]
        fields_used = ("encoding", "definition", "definition")
    check_collection(collection, "schema registry")
    client = mongo_client(service, None)
    try:
        coll = client[service.options["db_name"]].get_collection(
            collection, codec_options=DECODE_OPTIONS
        )
        doc = next((found for q in query if (found := coll.find_one(q)) is not None), None)
    except PyMongoError as exc:
        raise transport_error(where, exc) from None
    finally:
        client.close()
    if doc is None:
        keys = "_id or schema_id" if slash else "id or name"
        raise ConfigError(
            f"{where}: no document with {keys} {schema_id or resource!r} in {collection!r}"
        )
    encoding_key, definition_key, fallback_key = fields_used
    encoding = doc.get(encoding_key, "avro" if slash else None)
    if not isinstance(encoding, str):
        raise ConfigError(
            f"{where}: the document has no {encoding_key!r} field (expected avro or json)"
        )
    definition = doc.get(definition_key, doc.get(fallback_key))
    if definition is None:
        raise ConfigError(f"{where}: the document has no {definition_key!r} field")
    if not isinstance(definition, str | bytes | dict):
        raise ConfigError(
            f"{where}: {definition_key!r} must be a JSON string or a document, "
            f"got {type(definition).__name__}"
        )
    return parse_schema(definition, encoding.lower(), resource)
