"""Saved documents by kind: the playground's test suites and workspaces.

A document is a JSON object with an ``id`` (assigned when missing: ``<kind>-<n>``) and a
``name``; saving one with an existing id replaces it.

Example:
    >>> docs = MemoryDocumentStore()
    >>> saved = docs.put("workspaces", {"name": "PII"})
    >>> saved["id"], [d["name"] for d in docs.all("workspaces")]
    ('workspaces-1', ['PII'])
    >>> docs.delete("workspaces", "workspaces-1"), docs.get("workspaces", "workspaces-1")
    (True, None)
"""

from __future__ import annotations

import copy
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import orjson

from mstream.stores.sqlite import SqliteDatabase

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS documents (kind TEXT NOT NULL, id TEXT NOT NULL, "
    "body BLOB NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (kind, id))"
)


class DocumentStore(ABC):
    """Documents by kind and id."""

    @abstractmethod
    def put(self, kind: str, document: Mapping[str, Any]) -> dict[str, Any]:
        """Save ``document`` (an id is assigned when it has none); returns it as saved."""

    @abstractmethod
    def get(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        """The document, if any."""

    @abstractmethod
    def all(self, kind: str) -> list[dict[str, Any]]:
        """Every document of ``kind``, oldest first."""

    @abstractmethod
    def delete(self, kind: str, doc_id: str) -> bool:
        """Delete it; whether it existed."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the store."""


class MemoryDocumentStore(DocumentStore):
    """Documents in a dict (lost with the process)."""

    def __init__(self) -> None:
        self._docs: dict[str, dict[str, dict[str, Any]]] = {}
        self._next = 0
        self._lock = threading.Lock()

    def put(self, kind: str, document: Mapping[str, Any]) -> dict[str, Any]:
        """Save (replace by id)."""
        with self._lock:
            saved = copy.deepcopy(dict(document))
            if not saved.get("id"):
                self._next += 1
                saved["id"] = f"{kind}-{self._next}"
            self._docs.setdefault(kind, {})[str(saved["id"])] = saved
            return copy.deepcopy(saved)

    def get(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        """By id."""
        with self._lock:
            found = self._docs.get(kind, {}).get(doc_id)
            return copy.deepcopy(found) if found is not None else None

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Oldest first."""
        with self._lock:
            return [copy.deepcopy(d) for d in self._docs.get(kind, {}).values()]

    def delete(self, kind: str, doc_id: str) -> bool:
        """By id."""
        with self._lock:
            return self._docs.get(kind, {}).pop(doc_id, None) is not None


class SqliteDocumentStore(DocumentStore):
    """Documents in the embedded database's ``documents`` table."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        db.execute(_SCHEMA)

    def put(self, kind: str, document: Mapping[str, Any]) -> dict[str, Any]:
        """Save (replace by id)."""
        saved = dict(document)
        seq = int(self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM documents")[0][0])
        if not saved.get("id"):
            saved["id"] = f"{kind}-{seq}"
        self.db.execute(
            "INSERT INTO documents (kind, id, body, seq) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(kind, id) DO UPDATE SET body = excluded.body",
            (kind, str(saved["id"]), orjson.dumps(saved), seq),
        )
        return saved

    def get(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        """By id."""
        rows = self.db.execute(
            "SELECT body FROM documents WHERE kind = ? AND id = ?", (kind, doc_id)
        )
        return orjson.loads(rows[0][0]) if rows else None

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Oldest first."""
        rows = self.db.execute("SELECT body FROM documents WHERE kind = ? ORDER BY seq", (kind,))
        return [orjson.loads(body) for (body,) in rows]

    def delete(self, kind: str, doc_id: str) -> bool:
        """By id."""
        found = self.get(kind, doc_id) is not None
        self.db.execute("DELETE FROM documents WHERE kind = ? AND id = ?", (kind, doc_id))
        return found


class RoutedDocumentStore(DocumentStore):
    """Some kinds in their own stores (MongoDB collections named by ``[system]``), the rest
    in ``default``.

    Args:
        routes: kind -> a store of that one kind (``put(doc)``, ``get(id)``, ``all()``,
            ``delete(id)``, ``close()``).
        default: the store of every other kind.
    """

    def __init__(self, routes: Mapping[str, Any], default: DocumentStore) -> None:
        self.routes = dict(routes)
        self.default = default

    def put(self, kind: str, document: Mapping[str, Any]) -> dict[str, Any]:
        """Save in the kind's store."""
        route = self.routes.get(kind)
        return route.put(document) if route is not None else self.default.put(kind, document)

    def get(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        """By id."""
        route = self.routes.get(kind)
        return route.get(doc_id) if route is not None else self.default.get(kind, doc_id)

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Oldest first."""
        route = self.routes.get(kind)
        return route.all() if route is not None else self.default.all(kind)

    def delete(self, kind: str, doc_id: str) -> bool:
        """By id."""
        route = self.routes.get(kind)
        return (
            bool(route.delete(doc_id)) if route is not None else self.default.delete(kind, doc_id)
        )

    def close(self) -> None:
        """Close the routed stores (the default one is closed by its owner)."""
        for route in self.routes.values():
            route.close()
