"""Schemas of a connector's steps: the kinds (Avro, JSON Schema) and inheritance.

Rules (SPEC section 3): the first step (the source) may set ``schema_id``; a step without
one inherits the schema of the step before it; a step with one uses it, and so do the later
steps until another one overrides it.

Example:
    >>> resolve_step_schemas(["users", None, "users-v2", None])
    ['users', 'users', 'users-v2', 'users-v2']
    >>> parse_schema('{"type": "string"}', "json", "s")
    JsonSchema('s', draft 2020-12)
"""

from __future__ import annotations

from typing import Any, TypeAlias

from mstream.encodings.avro import AvroSchema
from mstream.encodings.json_schema import JsonSchema
from mstream.errors import ConfigError

__all__ = ["StepSchema", "parse_schema", "resolve_step_schemas"]

StepSchema: TypeAlias = AvroSchema | JsonSchema
"""What a ``schemas`` entry loads: an Avro schema or a JSON Schema."""


def parse_schema(definition: str | bytes | dict[str, Any], encoding: str, name: str) -> StepSchema:
    """Parse a schema definition written in ``encoding`` (``avro`` or ``json``).

    Raises:
        ConfigError: another encoding, or a definition that does not parse.

    Example:
        >>> parse_schema("{}", "bson", "s")
        Traceback (most recent call last):
        ...
        mstream.errors.ConfigError: schema 's': encoding 'bson' is not a schema language (the original reads it as no schema at all); use avro or json
    """
    if encoding == "avro":
        return AvroSchema.parse(definition, name=name)
    if encoding == "json":
        return JsonSchema.parse(definition, name=name)
    if encoding == "bson":
        raise ConfigError(
            f"schema {name!r}: encoding 'bson' is not a schema language (the original reads it "
            "as no schema at all); use avro or json"
        )
    raise ConfigError(f"schema {name!r}: encoding must be avro or json (got {encoding!r})")


def resolve_step_schemas(step_schema_ids: list[str | None]) -> list[str | None]:
    """Resolve the effective schema id of every step.

    Args:
        step_schema_ids: the ``schema_id`` written on each step, in pipeline order (source
            first, then middlewares, then sinks), ``None`` where a step sets none.

    Returns:
        One effective schema id per step (``None`` while no step has set one yet).

    Example:
        >>> resolve_step_schemas([None, None])
        [None, None]
        >>> resolve_step_schemas([None, "orders", None])
        [None, 'orders', 'orders']
        >>> resolve_step_schemas([])
        []
    """
    resolved: list[str | None] = []
    current: str | None = None
    for schema_id in step_schema_ids:
        if schema_id is not None:
            current = schema_id
        resolved.append(current)
    return resolved
