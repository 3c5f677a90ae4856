"""Running a script on sample events, and its test cases, as the original's ``/transform``.

Scripts are compiled for each call (Lua, or Rhai where the ``mstream_rhai`` extension is
installed) under the sandbox limits of a running job, so a playground call can cost at
most what one event can. Errors carry the script's line when the engine knows it.

Example:
    >>> script = '''function transform(data, attributes)
    ...   data.email = mask_email(data.email)
    ...   return result(data, attributes)
    ... end'''
    >>> run_script(script, {"email": "john@example.com"}, {"source": "playground"})["item"]
    {'document': {'email': 'j***@example.com'}, 'attributes': {'source': 'playground'}}
    >>> run_cases(script, [{"name": "masks", "input": {"email": "ann@b.c"},
    ...     "assertions": [{"path": "email", "assert_type": "equals", "expected_value": "a***@b.c"}]}]
    ... )["summary"]
    {'passed': 1, 'failed': 0, 'total': 1}
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from mstream.core.json_types import json_type
from mstream.errors import ConfigError, ScriptError
from mstream.transform.assertions import check_case, uncovered_fields

ENGINES = ("lua", "rhai")


class _Script(Protocol):
    def transform(self, data: Any, attributes: dict[str, str]) -> list[tuple[Any, dict[str, str]]]:
        """One event in, zero or more out."""


def compile_for(engine: str, script: str, name: str | None = None) -> _Script:
    """Compile ``script`` for ``engine`` with the default sandbox limits.

    Raises:
        ConfigError: an unknown engine, or Rhai without its extension.
        ScriptError: the script does not compile (with the line).
    """
    if engine == "lua":
        from mstream.udf import compile_script

        return compile_script(script, name or "playground.lua")
    if engine == "rhai":
        from mstream.udf import rhai_engine

        if not rhai_engine.rhai_available():
            raise ConfigError(f"engine: {rhai_engine.INSTALL_HINT}")
        return rhai_engine.compile_rhai(script, name or "playground.rhai")
    raise ConfigError(f"engine: must be one of {', '.join(ENGINES)} (got {engine[:20]!r})")


def _error(exc: ScriptError) -> dict[str, Any]:
    return {"line": exc.line, "message": str(exc)}


def validate_script(script: str, engine: str = "lua") -> dict[str, Any]:
    """Whether the script compiles and defines ``transform``; its errors with lines."""
    try:
        compile_for(engine, script)
    except ScriptError as exc:
        return {"valid": False, "errors": [_error(exc)]}
    return {"valid": True, "errors": []}


def run_script(
    script: str, payload: Any, attributes: Mapping[str, str] | None = None, engine: str = "lua"
) -> dict[str, Any]:
    """Run the script once on ``payload`` (a document, or a list for a batch).

    Returns ``message`` (``success`` / ``error``), ``item`` (the first result, or ``None``
    when the script dropped the event), ``items`` (every result), ``errors`` (with lines)
    and ``duration_ms``.
    """
    began = time.perf_counter()
    try:
        compiled = compile_for(engine, script)
        results = compiled.transform(payload, dict(attributes or {}))
    except ScriptError as exc:
        return {
            "message": "error",
            "item": None,
            "items": [],
            "errors": [_error(exc)],
            "duration_ms": round((time.perf_counter() - began) * 1000, 3),
        }
    items = [{"document": doc, "attributes": attrs} for doc, attrs in results]
    return {
        "message": "success",
        "item": items[0] if items else None,
        "items": items,
        "errors": [],
        "duration_ms": round((time.perf_counter() - began) * 1000, 3),
    }


def _schema_of(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return {"type": "object", "properties": {k: _schema_of(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"type": "array", "items": _schema_of(value[0]) if value else {}}
    return {"type": json_type(value)}


def _empty_like(value: Any) -> Any:
    if isinstance(value, str):
        return ""
    if isinstance(value, list):
        return []
    if isinstance(value, Mapping):
        return {}
    return 0 if isinstance(value, int | float) and not isinstance(value, bool) else value


def generate_cases(script: str, sample: Mapping[str, Any], engine: str = "lua") -> dict[str, Any]:
    """Cases from a sample: as given, and each field null, empty and missing; each case
    expects what the script produces now (a regression baseline to edit)."""
    variants: list[tuple[str, dict[str, Any]]] = [("sample as given", dict(sample))]
    for key, value in sample.items():
        variants.append((f"{key} is null", {**sample, key: None}))
        if _empty_like(value) != value:
            variants.append((f"{key} is empty", {**sample, key: _empty_like(value)}))
        variants.append((f"{key} is missing", {k: v for k, v in sample.items() if k != key}))
    cases, errors = [], []
    for name, case_input in variants:
        answer = run_script(script, case_input, engine=engine)
        if answer["errors"]:
            errors.append({"case": name, **answer["errors"][0]})
            continue
        expected = answer["item"]["document"] if answer["item"] else None
        assertions = (
            [{"path": k, "assert_type": "equals", "expected_value": v} for k, v in expected.items()]
            if isinstance(expected, Mapping)
            else [{"path": "", "assert_type": "equals", "expected_value": expected}]
        )
        cases.append(
            {
                "name": name,
                "input": case_input,
                "expected": expected,
                "assertions": assertions,
                "duration_ms": answer["duration_ms"],
            }
        )
    return {"input_schema": _schema_of(dict(sample)), "cases": cases, "errors": errors}


def run_cases(
    script: str,
    cases: Sequence[Mapping[str, Any]],
    *,
    strict_output: bool = False,
    engine: str = "lua",
) -> dict[str, Any]:
    """Run every case; each passes when the script runs and every assertion holds (and,
    with ``strict_output``, no output field is left without one)."""
    results: list[dict[str, Any]] = []
    for case in cases:
        answer = run_script(script, case.get("input"), case.get("attributes") or {}, engine=engine)
        name = str(case.get("name", f"case {len(results) + 1}"))
        if answer["errors"]:
            results.append(
                {
                    "name": name,
                    "passed": False,
                    "duration_ms": answer["duration_ms"],
                    "errors": answer["errors"],
                }
            )
            continue
        actual = answer["item"]["document"] if answer["item"] else None
        assertions = list(case.get("assertions") or [])
        failures = check_case(actual, assertions)
        if strict_output and isinstance(actual, Mapping):  # anything else has no fields
            for field in uncovered_fields(actual, assertions):
                failures.append(
                    {
                        "path": field,
                        "assert_type": "strict_output",
                        "expected": None,
                        "actual": actual[field],
                        "message": f"Field '{field}' is in the output but no assertion covers it",
                    }
                )
        entry: dict[str, Any] = {
            "name": name,
            "passed": not failures,
            "duration_ms": answer["duration_ms"],
        }
        if failures:
            entry["actual"] = actual
            entry["failures"] = failures
        results.append(entry)
    passed = sum(1 for r in results if r["passed"])
    return {
        "summary": {"passed": passed, "failed": len(results) - passed, "total": len(results)},
        "results": results,
    }
