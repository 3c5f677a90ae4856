"""Dead letters you can act on: list, replay (optionally after an edit) and discard.

* ``GET /jobs/{name}/dead-letters?stage=&reason=&offset=&limit=`` - kept records, newest
  first, with ``total`` matching and ``dropped`` (records the per-job bound pushed out);
* ``POST /jobs/{name}/dead-letters/replay`` with ``{"ids": [...], "edits": {"<id>": doc}}``
  (both optional: no ``ids`` replays up to 1000) - through the job's pipeline from the
  step each failed at (:mod:`mstream.runtime.replay`);
* ``DELETE /jobs/{name}/dead-letters?ids=1,2`` - discard those (all without ``ids``).
"""

from __future__ import annotations

from typing import Any

from mstream.api.base import ApiError, ApiHandler


class DeadLettersHandler(ApiHandler):
    """``GET`` and ``DELETE /jobs/{name}/dead-letters``."""

    async def get(self, name: str) -> None:
        """A page of kept dead letters (store reads off the loop)."""
        offset = self._int("offset", 0, 0, 10**9)
        limit = self._int("limit", 50, 1, 500)
        page = await self.lifecycle(
            self.manager.dead_letters(
                name,
                stage=self.get_query_argument("stage", None),
                reason=self.get_query_argument("reason", None),
                offset=offset,
                limit=limit,
            )
        )
        self.send_json(page)

    async def delete(self, name: str) -> None:
        """Discard the listed ids, or every kept dead letter of the job."""
        raw = self.get_query_argument("ids", None)
        ids = _ids(raw.split(","), "ids") if raw is not None else None
        count = await self.lifecycle(self.manager.discard_dead_letters(name, ids))
        self.send_json({"job": name, "discarded": count})

    def _int(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.get_query_argument(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise ApiError(
                400, f"{name} must be an integer from {low} to {high}", {name: f"got {raw[:20]!r}"}
            )
        return value


class DeadLetterReplayHandler(ApiHandler):
    """``POST /jobs/{name}/dead-letters/replay``."""

    async def post(self, name: str) -> None:
        """Replay (off the loop) and say what happened."""
        body = self.json_object() if self.has_body() else {}
        unknown = sorted(set(body) - {"ids", "edits"})
        if unknown:
            raise ApiError(
                400, f"unknown field {unknown[0]!r} (known: ids, edits)", {unknown[0]: "unknown"}
            )
        ids = None
        if body.get("ids") is not None:
            if not isinstance(body["ids"], list):
                raise ApiError(400, "ids must be a list of record ids", {"ids": "expected a list"})
            ids = _ids(body["ids"], "ids")
        edits: dict[int, Any] = {}
        raw_edits = body.get("edits") or {}
        if not isinstance(raw_edits, dict):
            raise ApiError(
                400, "edits must map record ids to documents", {"edits": "expected an object"}
            )
        for key, doc in raw_edits.items():
            [rid] = _ids([key], f"edits.{key}")
            edits[rid] = doc
        if edits and ids is not None and not set(edits) <= set(ids):
            raise ApiError(400, "every edited id must be replayed", {"edits": "ids not in ids"})
        result = await self.lifecycle(self.manager.replay_dead_letters(name, ids, edits))
        self.send_json({"job": name, **result})


def _ids(values: list[Any], field: str) -> list[int]:
    out = []
    for value in values:
        try:
            number = int(str(value).strip())
        except ValueError:
            number = 0
        if number <= 0 or isinstance(value, bool):
            raise ApiError(
                400,
                f"{field}: record ids are positive integers",
                {field: f"got {str(value)[:20]!r}"},
            )
        out.append(number)
    return out
