"""Schemas in the workbench: a service's schemas (CRUD), synthetic events from a schema,
and conversion between JSON Schema and Avro.

* ``GET/POST /services/{name}/schemas``, ``GET/DELETE /services/{name}/schemas/{id}``
  (:mod:`mstream.resources.schemas`);
* ``POST /schema/fill`` ``{"encoding": "avro"|"json", "definition", "count"?, "seed"?}``;
* ``POST /schema/convert`` ``{"from": "json"|"avro", "to": "avro"|"json", "definition",
  "name"?}``.
"""

from __future__ import annotations

import json
from typing import Any

from mstream.api.base import ApiError, ApiHandler
from mstream.resources.schemas import delete_schema, get_schema, list_schemas, save_schema
from mstream.schema_tools import avro_to_json_schema, fill, json_schema_to_avro

MAX_FILL = 100


def _definition(body: dict[str, Any]) -> Any:
    raw = body.get("definition")
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ApiError(
                400, f"definition is not valid JSON: {exc}", {"definition": "invalid JSON"}
            ) from None
    if not isinstance(raw, dict | list):
        raise ApiError(
            400, "definition is required (JSON text or an object)", {"definition": "required"}
        )
    return raw


class ServiceSchemasHandler(ApiHandler):
    """``GET``/``POST /services/{name}/schemas``."""

    async def get(self, name: str) -> None:
        """List off the loop."""
        service = self.call(self.manager.registry.get, name)
        self.send_json({"service": name, "schemas": await self.blocking(list_schemas, service)})

    async def post(self, name: str) -> None:
        """Check and save (201)."""
        service = self.call(self.manager.registry.get, name)
        body = self.json_object()
        unknown = sorted(set(body) - {"id", "name", "encoding", "definition"})
        if unknown:
            raise ApiError(
                400,
                f"unknown field {unknown[0]!r} (known: definition, encoding, id, name)",
                {unknown[0]: "unknown"},
            )
        saved = await self.blocking(save_schema, service, body)
        self.send_json(saved, 201)


class ServiceSchemaHandler(ApiHandler):
    """``GET``/``DELETE /services/{name}/schemas/{id}``."""

    async def get(self, name: str, schema_id: str) -> None:
        """One schema with its definition."""
        service = self.call(self.manager.registry.get, name)
        self.send_json(await self.blocking(get_schema, service, schema_id))

    async def delete(self, name: str, schema_id: str) -> None:
        """Delete it (404 when missing)."""
        service = self.call(self.manager.registry.get, name)
        await self.blocking(delete_schema, service, schema_id)
        self.set_status(204)
        self.finish()


class SchemaFillHandler(ApiHandler):
    """``POST /schema/fill``."""

    def post(self) -> None:
        """Synthetic events (quick, bounded: at most 100, on the loop)."""
        body = self.json_object()
        count = body.get("count", 5)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_FILL:
            raise ApiError(
                400,
                f"count must be an integer from 1 to {MAX_FILL}",
                {"count": f"got {str(count)[:20]!r}"},
            )
        seed = body.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ApiError(400, "seed must be an integer", {"seed": "expected an integer"})
        encoding = body.get("encoding", "avro")
        events = self.call(fill, encoding, _definition(body), count, seed)
        self.send_json({"events": events})


class SchemaConvertHandler(ApiHandler):
    """``POST /schema/convert``."""

    def post(self) -> None:
        """Convert on the loop (pure, bounded by the body size)."""
        body = self.json_object()
        pair = (body.get("from"), body.get("to"))
        definition = _definition(body)
        if pair == ("json", "avro"):
            name = body.get("name", "Record")
            if not isinstance(name, str) or not name:
                raise ApiError(400, "name must be a record name", {"name": "expected a string"})
            converted = self.call(json_schema_to_avro, definition, name)
        elif pair == ("avro", "json"):
            converted = self.call(avro_to_json_schema, definition)
        else:
            raise ApiError(400, "from/to must be json→avro or avro→json", {"from": f"got {pair!r}"})
        self.send_json({"from": pair[0], "to": pair[1], "definition": converted})
