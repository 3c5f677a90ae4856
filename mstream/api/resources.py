"""A service's resources, sample events and inferred fields (:mod:`mstream.resources`).

* ``GET /services/{name}/resources``;
* ``GET /services/{name}/resources/{resource}?limit=5`` - a script's text, or up to 20
  sample events (masked, capped);
* ``GET /services/{name}/resources/{resource}/schema?sample_size=100`` - field names,
  types and presence of up to 1000 sampled events, never their values.

A resource with a ``/`` (a file in a sub-folder) is sent URL-encoded (``%2F``).
"""

from __future__ import annotations

from typing import Any

from mstream.api.base import ApiError, ApiHandler
from mstream.encodings import encode
from mstream.encodings.extjson import loads_plain
from mstream.masking import mask_text
from mstream.resources import (
    MAX_SAMPLE_BYTES,
    MAX_SAMPLES,
    MAX_SCHEMA_SAMPLE,
    describe_fields,
    list_resources,
    sample,
)
from mstream.resources.udf import script_text

VALUE_CHARS = 2000


def _shown(value: Any, secrets: frozenset[str]) -> Any:
    """A sample value as JSON-ready data: strings masked and each cut to 2000 characters."""
    if isinstance(value, str):
        masked = mask_text(value, secrets)
        return masked if len(masked) <= VALUE_CHARS else masked[:VALUE_CHARS] + "…"
    if isinstance(value, dict):
        return {str(k): _shown(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(v, secrets) for v in value]
    return value


class _ServiceResource(ApiHandler):
    def count(self, name: str, default: int, top: int) -> int:
        raw = self.get_query_argument(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if not 1 <= value <= top:
            raise ApiError(
                400, f"{name} must be an integer from 1 to {top}", {name: f"got {raw[:20]!r}"}
            )
        return value


class ResourcesHandler(_ServiceResource):
    """``GET /services/{name}/resources``."""

    async def get(self, name: str) -> None:
        """List off the loop."""
        service = self.call(self.manager.registry.get, name)
        found = await self.blocking(list_resources, service)
        self.send_json({"service": name, "resources": found})


class ResourceHandler(_ServiceResource):
    """``GET /services/{name}/resources/{resource}``."""

    async def get(self, name: str, resource: str) -> None:
        """A script's text, or sample events (read off the loop)."""
        service = self.call(self.manager.registry.get, name)
        secrets = self.manager.registry.secret_values()
        if service.provider == "udf":
            text = await self.blocking(script_text, service, resource)
            if text is None:
                raise ApiError(404, f"service {name!r} has no script {resource[:100]!r}")
            self.send_json(
                {"service": name, "resource": resource, "script": mask_text(text, secrets)}
            )
            return
        limit = self.count("limit", 5, MAX_SAMPLES)
        documents = await self.blocking(sample, service, resource, limit)
        samples, size, truncated = [], 0, False
        for document in documents:
            shown = _shown(loads_plain(encode(document, "json")), secrets)
            size += len(encode(shown, "json"))
            if size > MAX_SAMPLE_BYTES:
                truncated = True
                break
            samples.append(shown)
        self.send_json(
            {"service": name, "resource": resource, "samples": samples, "truncated": truncated}
        )


class ResourceSchemaHandler(_ServiceResource):
    """``GET /services/{name}/resources/{resource}/schema?sample_size=N``."""

    async def get(self, name: str, resource: str) -> None:
        """Sample (off the loop) and describe the fields; values are never returned."""
        service = self.call(self.manager.registry.get, name)
        size = self.count("sample_size", 100, MAX_SCHEMA_SAMPLE)
        documents = await self.blocking(sample, service, resource, size)
        self.send_json(
            {
                "service": name,
                "resource": resource,
                "sampled": len(documents),
                "fields": describe_fields(documents),
            }
        )
