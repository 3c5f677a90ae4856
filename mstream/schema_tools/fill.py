"""Synthetic events that satisfy an Avro schema or a JSON Schema (``POST /schema/fill``).

Values are drawn from a seeded generator, so the same request gives the same events.

Example:
    >>> avro = {"type": "record", "name": "U", "fields": [
    ...     {"name": "id", "type": "long"}, {"name": "email", "type": ["null", "string"]},
    ...     {"name": "tier", "type": {"type": "enum", "name": "T", "symbols": ["a", "b"]}}]}
    >>> [sorted(e) for e in fill("avro", avro, 2)]
    [['email', 'id', 'tier'], ['email', 'id', 'tier']]
    >>> fill("json", {"type": "object", "required": ["n"],
    ...     "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 5}}}, 1)
    [{'n': 5}]
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from mstream.errors import ConfigError

MAX_DEPTH = 8


def fill(encoding: str, definition: Any, count: int, seed: int = 0) -> list[Any]:
    """``count`` events valid for ``definition`` (``encoding`` ``avro`` or ``json``).

    Raises:
        ConfigError: an encoding other than avro or json, or a schema these tools cannot
            fill (named types used before their definition, ``$ref``).
    """
    rng = random.Random(seed)
    if encoding == "avro":
        named: dict[str, Any] = {}
        return [_avro(definition, rng, named, 0) for _ in range(count)]
    if encoding == "json":
        return [_json(definition, rng, 0) for _ in range(count)]
    raise ConfigError(f"encoding: must be avro or json (got {str(encoding)[:20]!r})")


def _text(rng: random.Random, size: int = 8) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(size))


def _avro(schema: Any, rng: random.Random, named: dict[str, Any], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise ConfigError("schema: nested too deeply to fill")
    if isinstance(schema, list):  # a union: prefer a non-null branch
        branches = [b for b in schema if b != "null"] or schema
        return _avro(rng.choice(branches), rng, named, depth + 1)
    if isinstance(schema, str):
        primitive = {
            "null": lambda: None,
            "boolean": lambda: rng.random() < 0.5,
            "int": lambda: rng.randint(0, 1000),
            "long": lambda: rng.randint(0, 10**6),
            "float": lambda: round(rng.uniform(0, 100), 2),
            "double": lambda: round(rng.uniform(0, 100), 4),
            "string": lambda: _text(rng),
            "bytes": lambda: {"$base64": "AAEC"},
        }
        if schema in primitive:
            return primitive[schema]()
        if schema in named:
            return _avro(named[schema], rng, named, depth + 1)
        raise ConfigError(f"schema: type {schema!r} is not defined before it is used")
    if not isinstance(schema, Mapping):
        raise ConfigError("schema: an Avro schema is a string, a list or an object")
    kind = schema.get("type")
    logical = schema.get("logicalType")
    if kind in ("record", "enum", "fixed") and "name" in schema:
        named[str(schema["name"])] = schema
    if kind == "record":
        return {
            str(f["name"]): _avro(f["type"], rng, named, depth + 1)
            for f in schema.get("fields", [])
        }
    if kind == "enum":
        return rng.choice(list(schema.get("symbols") or [""]))
    if kind == "array":
        return [_avro(schema["items"], rng, named, depth + 1) for _ in range(rng.randint(1, 3))]
    if kind == "map":
        return {_text(rng, 4): _avro(schema["values"], rng, named, depth + 1)}
    if kind == "fixed":
        return {"$base64": "A" * ((int(schema.get("size", 1)) * 4 + 2) // 3)}
    if logical in ("timestamp-millis", "timestamp-micros"):
        return {"$date": _moment(rng)}
    if logical == "uuid":
        return f"{rng.getrandbits(128):032x}"
    return _avro(kind, rng, named, depth + 1)


def _moment(rng: random.Random) -> str:
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 86400 * 365))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(schema: Any, rng: random.Random, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise ConfigError("schema: nested too deeply to fill")
    if schema is True or schema == {}:
        return _text(rng)
    if not isinstance(schema, Mapping):
        raise ConfigError("schema: a JSON Schema is an object")
    if "$ref" in schema:
        raise ConfigError("schema: $ref is not filled (inline the definition)")
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(list(schema["enum"]))
    for combined in ("oneOf", "anyOf"):
        if combined in schema:
            return _json(schema[combined][0], rng, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or properties)
        return {k: _json(v, rng, depth + 1) for k, v in properties.items() if k in required}
    if kind == "array":
        low = int(schema.get("minItems", 1))
        return [_json(schema.get("items", {}), rng, depth + 1) for _ in range(max(low, 1))]
    if kind in ("integer", "number"):
        low = schema.get("minimum", 0)
        high = schema.get("maximum", low + 1000)
        if kind == "integer":
            return rng.randint(math.ceil(low), math.floor(high))
        return round(rng.uniform(low, high), 3)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    fmt = schema.get("format")
    if fmt == "date-time":
        return _moment(rng)
    if fmt == "email":
        return f"{_text(rng, 5)}@example.com"
    size = max(int(schema.get("minLength", 8)), 1)
    return _text(rng, min(size, int(schema.get("maxLength", size))))
