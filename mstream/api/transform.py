"""The transform playground endpoints, in the original's shapes.

* ``POST /transform/run`` ``{"script", "payload", "attributes"?, "engine"?}`` - the script
  on one sample (``payload`` a JSON string, as the original, or a JSON value);
* ``POST /transform/validate`` ``{"script", "engine"?}``;
* ``POST /transform/test/generate`` ``{"script", "sample_input", "engine"?}``;
* ``POST /transform/test/run`` ``{"script", "cases", "strict_output"?, "engine"?}``.

Scripts run off the loop, under a running job's sandbox limits (:mod:`mstream.transform`).
"""

from __future__ import annotations

import json
from typing import Any

from mstream.api.base import ApiError, ApiHandler
from mstream.transform import generate_cases, run_cases, run_script, validate_script
from mstream.transform.assertions import ASSERT_TYPES


class _TransformHandler(ApiHandler):
    """Shared body checks."""

    known: frozenset[str] = frozenset()

    def body(self) -> dict[str, Any]:
        body = self.json_object()
        unknown = sorted(set(body) - self.known - {"script", "engine"})
        if unknown:
            known = ", ".join(sorted(self.known | {"script", "engine"}))
            raise ApiError(
                400, f"unknown field {unknown[0]!r} (known: {known})", {unknown[0]: "unknown"}
            )
        if not isinstance(body.get("script"), str) or not body["script"].strip():
            raise ApiError(400, "script: a script's text is required", {"script": "required"})
        engine = body.get("engine", "lua")
        if engine not in ("lua", "rhai"):
            raise ApiError(
                400, "engine must be lua or rhai", {"engine": f"got {str(engine)[:20]!r}"}
            )
        body["engine"] = engine
        return body


def _attributes(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ApiError(
            400,
            "attributes must map names to strings",
            {"attributes": "expected an object of strings"},
        )
    return {str(k): v for k, v in raw.items()}


def _cases(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "cases must be a non-empty list", {"cases": "expected a list"})
    for i, case in enumerate(raw):
        if not isinstance(case, dict) or "input" not in case:
            raise ApiError(400, f"cases[{i}] needs an input", {f"cases[{i}].input": "required"})
        for j, assertion in enumerate(case.get("assertions") or []):
            kind = assertion.get("assert_type", "equals") if isinstance(assertion, dict) else None
            if kind not in ASSERT_TYPES:
                field = f"cases[{i}].assertions[{j}].assert_type"
                raise ApiError(
                    400,
                    f"{field} must be one of {', '.join(ASSERT_TYPES)}",
                    {field: f"got {str(kind)[:20]!r}"},
                )
    return raw


class TransformRunHandler(_TransformHandler):
    """``POST /transform/run``."""

    known = frozenset({"payload", "attributes"})

    async def post(self) -> None:
        """Run the script on the sample off the loop."""
        body = self.body()
        if "payload" not in body:
            raise ApiError(400, "payload is required", {"payload": "required"})
        payload = body["payload"]
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except ValueError as exc:
                raise ApiError(
                    400, f"payload is not valid JSON: {exc}", {"payload": "invalid JSON"}
                ) from None
        attributes = _attributes(body.get("attributes"))
        answer = await self.blocking(
            run_script, body["script"], payload, attributes, body["engine"]
        )
        self.send_json(answer)


class TransformValidateHandler(_TransformHandler):
    """``POST /transform/validate``."""

    async def post(self) -> None:
        """Compile the script off the loop."""
        body = self.body()
        self.send_json(await self.blocking(validate_script, body["script"], body["engine"]))


class TransformTestGenerateHandler(_TransformHandler):
    """``POST /transform/test/generate``."""

    known = frozenset({"sample_input"})

    async def post(self) -> None:
        """Generate cases from the sample off the loop."""
        body = self.body()
        sample = body.get("sample_input")
        if not isinstance(sample, dict):
            raise ApiError(
                400, "sample_input must be a JSON object", {"sample_input": "expected an object"}
            )
        self.send_json(await self.blocking(generate_cases, body["script"], sample, body["engine"]))


class TransformTestRunHandler(_TransformHandler):
    """``POST /transform/test/run``."""

    known = frozenset({"cases", "strict_output"})

    async def post(self) -> None:
        """Run the cases off the loop."""
        body = self.body()
        cases = _cases(body.get("cases"))
        strict = body.get("strict_output", False)
        if not isinstance(strict, bool):
            raise ApiError(
                400, "strict_output must be true or false", {"strict_output": "expected a boolean"}
            )
        answer = await self.blocking(
            run_cases, body["script"], cases, strict_output=strict, engine=body["engine"]
        )
        self.send_json(answer)
