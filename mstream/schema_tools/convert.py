"""JSON Schema ↔ Avro, for the types both can say (``POST /schema/convert``).

Avro unions with ``null`` become optional (not ``required``) properties and back; enums,
arrays, maps (``additionalProperties``) and nested records convert both ways. What one
side cannot say is refused with its path rather than guessed.

Example:
    >>> avro = json_schema_to_avro({"type": "object", "required": ["id"], "properties": {
    ...     "id": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}},
    ...     "User")
    >>> avro["fields"]
    [{'name': 'id', 'type': 'long'}, {'name': 'tags', 'type': ['null', {'type': 'array', 'items': 'string'}], 'default': None}]
    >>> avro_to_json_schema(avro)["required"]
    ['id']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mstream.errors import ConfigError

_PRIMITIVES = {"string": "string", "integer": "long", "number": "double", "boolean": "boolean"}
_BACK = {
    "string": {"type": "string"},
    "long": {"type": "integer"},
    "int": {"type": "integer"},
    "double": {"type": "number"},
    "float": {"type": "number"},
    "boolean": {"type": "boolean"},
    "null": {"type": "null"},
    "bytes": {"type": "string", "contentEncoding": "base64"},
}


def _name(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", text) or "Record"
    return cleaned if not cleaned[0].isdigit() else f"_{cleaned}"


def json_schema_to_avro(schema: Mapping[str, Any], name: str = "Record") -> dict[str, Any]:
    """An Avro record schema for an object JSON Schema.

    Raises:
        ConfigError: a construct Avro cannot say (``path: what``).
    """
    result = _to_avro(schema, name, "")
    if not isinstance(result, dict) or result.get("type") != "record":
        raise ConfigError("definition: the JSON Schema must describe an object")
    return result


def _to_avro(schema: Any, name: str, path: str) -> Any:
    where = path or "(root)"
    if not isinstance(schema, Mapping):
        raise ConfigError(f"{where}: expected a schema object")
    if "enum" in schema:
        symbols = [str(s) for s in schema["enum"]]
        if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s) for s in symbols):
            return "string"  # Avro symbols are names; other enums stay strings
        return {"type": "enum", "name": _name(name), "symbols": symbols}
    kind = schema.get("type", "object" if "properties" in schema else None)
    nullable = False
    if isinstance(kind, list):
        nullable = "null" in kind
        rest = [k for k in kind if k != "null"]
        if len(rest) != 1:
            raise ConfigError(f"{where}: a union of {kind} has no single Avro type")
        kind = rest[0]
    if kind == "object":
        if "properties" not in schema and isinstance(schema.get("additionalProperties"), Mapping):
            converted: Any = {
                "type": "map",
                "values": _to_avro(schema["additionalProperties"], f"{name}_value", f"{path}/*"),
            }
        else:
            required = set(schema.get("required") or [])
            fields = []
            for key, sub in (schema.get("properties") or {}).items():
                field_type = _to_avro(sub, f"{name}_{key}", f"{path}/{key}")
                if key in required:
                    fields.append({"name": key, "type": field_type})
                else:
                    fields.append({"name": key, "type": _optional(field_type), "default": None})
            converted = {"type": "record", "name": _name(name), "fields": fields}
    elif kind == "array":
        converted = {
            "type": "array",
            "items": _to_avro(
                schema.get("items", {"type": "string"}), f"{name}_item", f"{path}/items"
            ),
        }
    elif kind in _PRIMITIVES:
        if kind == "string" and schema.get("format") == "date-time":
            converted = {"type": "long", "logicalType": "timestamp-millis"}
        else:
            converted = _PRIMITIVES[kind]
    elif kind == "null":
        converted = "null"
    else:
        raise ConfigError(f"{where}: type {kind!r} has no Avro equivalent")
    return _optional(converted) if nullable else converted


def _optional(avro: Any) -> Any:
    if isinstance(avro, list):
        return avro if "null" in avro else ["null", *avro]
    return ["null", avro]


def avro_to_json_schema(schema: Any) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) for an Avro schema.

    Raises:
        ConfigError: a construct JSON Schema cannot say here (``path: what``).
    """
    named: dict[str, Any] = {}
    out = _to_json(schema, named, "")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **out}


def _to_json(schema: Any, named: dict[str, Any], path: str) -> dict[str, Any]:
    where = path or "(root)"
    if isinstance(schema, str):
        if schema in _BACK:
            return dict(_BACK[schema])
        if schema in named:
            return _to_json(named[schema], named, path)
        raise ConfigError(f"{where}: type {schema!r} is not defined before it is used")
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        if len(branches) != 1:
            return {"anyOf": [_to_json(b, named, path) for b in schema]}
        inner = _to_json(branches[0], named, path)
        if "null" in schema and isinstance(inner.get("type"), str):
            return {**inner, "type": [inner["type"], "null"]}
        return {"anyOf": [inner, {"type": "null"}]} if "null" in schema else inner
    if not isinstance(schema, Mapping):
        raise ConfigError(f"{where}: expected an Avro schema")
    kind = schema.get("type")
    if kind in ("record", "enum", "fixed") and "name" in schema:
        named[str(schema["name"])] = schema
    if kind == "record":
        properties: dict[str, Any] = {}
        required = []
        for field in schema.get("fields", []):
            key = str(field["name"])
            properties[key] = _to_json(field["type"], named, f"{path}/{key}")
            optional = isinstance(field["type"], list) and "null" in field["type"]
            if not optional:
                required.append(key)
        return {"type": "object", "properties": properties, "required": required}
    if kind == "enum":
        return {"enum": list(schema.get("symbols") or [])}
    if kind == "array":
        return {"type": "array", "items": _to_json(schema["items"], named, f"{path}/items")}
    if kind == "map":
        return {
            "type": "object",
            "additionalProperties": _to_json(schema["values"], named, f"{path}/*"),
        }
    if kind == "fixed":
        return {"type": "string", "contentEncoding": "base64"}
    if schema.get("logicalType", "").startswith("timestamp"):
        return {"type": "string", "format": "date-time"}
    return _to_json(kind, named, path)
