"""Saved playground documents: test suites and workspaces, in the original's shapes.

* ``GET/POST /test-suites``, ``GET/DELETE /test-suites/{id}``: a suite is ``{"name",
  "engine"?, "script"? (text), "script_ref"? ({"service_name", "resource"}), "cases",
  "strict_output"?}``; ``POST`` with an existing ``id`` replaces it;
* ``GET/POST /workspaces``, ``GET/PUT/DELETE /workspaces/{id}``: a workspace is ``{"name",
  "script"?, "input"?, "schema"?, "test_suite_id"?}`` (all but ``name`` optional).

``mstream test SUITE.json`` runs a suite saved as a file (the ``GET /test-suites/{id}``
answer), so the same cases can run in a user's CI.
"""

from __future__ import annotations

from typing import Any

from mstream.api.base import ApiError, ApiHandler
from mstream.api.transform import _cases

SUITE_FIELDS = frozenset({"id", "name", "engine", "script", "script_ref", "cases", "strict_output"})
WORKSPACE_FIELDS = frozenset({"id", "name", "script", "input", "schema", "test_suite_id"})


def _check(body: dict[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise ApiError(
            400,
            f"unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})",
            {unknown[0]: "unknown"},
        )
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise ApiError(400, "name: 1 to 100 characters are required", {"name": "required"})
    if "id" in body and (not isinstance(body["id"], str) or not 1 <= len(body["id"]) <= 100):
        raise ApiError(
            400, "id must be a string of 1 to 100 characters", {"id": "expected a string"}
        )


def check_suite(body: dict[str, Any]) -> dict[str, Any]:
    """A valid test suite, or 400 naming the field."""
    _check(body, SUITE_FIELDS)
    if body.get("engine", "lua") not in ("lua", "rhai"):
        raise ApiError(400, "engine must be lua or rhai", {"engine": "unknown engine"})
    if "script" in body and not isinstance(body["script"], str):
        raise ApiError(400, "script must be the script's text", {"script": "expected a string"})
    ref = body.get("script_ref")
    if ref is not None and (
        not isinstance(ref, dict)
        or not all(isinstance(ref.get(k), str) for k in ("service_name", "resource"))
    ):
        raise ApiError(
            400, "script_ref needs service_name and resource", {"script_ref": "expected an object"}
        )
    if body.get("cases"):
        _cases(body["cases"])
    elif not isinstance(body.get("cases", []), list):
        raise ApiError(400, "cases must be a list", {"cases": "expected a list"})
    return body


def check_workspace(body: dict[str, Any]) -> dict[str, Any]:
    """A valid workspace, or 400 naming the field."""
    _check(body, WORKSPACE_FIELDS)
    if "test_suite_id" in body and not isinstance(body["test_suite_id"], str):
        raise ApiError(
            400, "test_suite_id must be a string", {"test_suite_id": "expected a string"}
        )
    return body


class _Saved(ApiHandler):
    kind = ""

    def initialize(self, ctx: Any) -> None:
        super().initialize(ctx)
        self.documents = ctx.manager.stores.documents

    def check(self, body: dict[str, Any]) -> dict[str, Any]:
        return check_suite(body) if self.kind == "test-suites" else check_workspace(body)

    async def found(self, doc_id: str) -> dict[str, Any]:
        document = await self.blocking(self.documents.get, self.kind, doc_id)
        if document is None:
            raise ApiError(404, f"{self.kind[:-1].replace('-', ' ')} {doc_id!r} not found")
        return document


class _Collection(_Saved):
    async def get(self) -> None:
        """Every saved document (id and name, plus the case count for suites)."""
        documents = await self.blocking(self.documents.all, self.kind)
        brief = [
            {
                "id": d["id"],
                "name": d.get("name"),
                **({"cases": len(d.get("cases") or [])} if self.kind == "test-suites" else {}),
            }
            for d in documents
        ]
        self.send_json({self.kind.replace("-", "_"): brief})

    async def post(self) -> None:
        """Save one (201; a suite with an existing id is replaced)."""
        saved = await self.blocking(self.documents.put, self.kind, self.check(self.json_object()))
        self.set_header("Location", f"/{self.kind}/{saved['id']}")
        self.send_json(saved, 201)


class _Item(_Saved):
    async def get(self, doc_id: str) -> None:
        """One document."""
        self.send_json(await self.found(doc_id))

    async def delete(self, doc_id: str) -> None:
        """Delete it (404 when it does not exist)."""
        await self.found(doc_id)
        await self.blocking(self.documents.delete, self.kind, doc_id)
        self.set_status(204)
        self.finish()


class TestSuitesHandler(_Collection):
    """``GET``/``POST /test-suites``."""

    kind = "test-suites"


class TestSuiteHandler(_Item):
    """``GET``/``DELETE /test-suites/{id}``."""

    kind = "test-suites"


class WorkspacesHandler(_Collection):
    """``GET``/``POST /workspaces``."""

    kind = "workspaces"


class WorkspaceHandler(_Item):
    """``GET``/``PUT``/``DELETE /workspaces/{id}``."""

    kind = "workspaces"

    async def put(self, doc_id: str) -> None:
        """Replace it (404 when it does not exist)."""
        await self.found(doc_id)
        body = self.check(self.json_object())
        saved = await self.blocking(self.documents.put, self.kind, {**body, "id": doc_id})
        self.send_json(saved)
