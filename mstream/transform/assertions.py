"""Test-case assertions in the original's types: ``equals``, ``contains``, ``type_matches``,
``gt``, ``gte``, ``lt``, ``lte``, on a field path (``a.b``, ``items[0].qty``).

Example:
    >>> out = {"email": "j***@example.com", "tags": ["a"], "age": 30}
    >>> check_case(out, [{"path": "email", "assert_type": "contains", "expected_value": "***"},
    ...                  {"path": "age", "assert_type": "gt", "expected_value": 40}])
    [{'path': 'age', 'assert_type': 'gt', 'expected': 40, 'actual': 30, 'message': "Field 'age': expected > 40, got 30"}]
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mstream.core.json_types import json_type

ASSERT_TYPES = ("equals", "contains", "type_matches", "gt", "gte", "lt", "lte")
_MISSING = object()
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def lookup(document: Any, path: str) -> Any:
    """The value at ``path`` (``""`` is the whole document), or a missing marker."""
    value = document
    for name, index in _PART.findall(path):
        if name:
            if not isinstance(value, Mapping) or name not in value:
                return _MISSING
            value = value[name]
        else:
            if not isinstance(value, list) or int(index) >= len(value):
                return _MISSING
            value = value[int(index)]
    return value


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "nothing (missing)"
    return json.dumps(value, default=str)


def _holds(kind: str, actual: Any, expected: Any) -> bool:
    if kind == "equals":
        return bool(actual == expected and json_type(actual) == json_type(expected)) or (
            isinstance(actual, int | float)
            and isinstance(expected, int | float)
            and not isinstance(actual, bool)
            and not isinstance(expected, bool)
            and actual == expected
        )
    if kind == "contains":
        if isinstance(actual, str):
            return isinstance(expected, str) and expected in actual
        return isinstance(actual, list) and expected in actual
    if kind == "type_matches":
        wanted = expected if isinstance(expected, str) else json_type(expected)
        return json_type(actual) == wanted or (
            wanted == "number" and json_type(actual) == "integer"
        )
    numbers = (int, float)
    if not isinstance(actual, numbers) or isinstance(actual, bool):
        return False
    if not isinstance(expected, numbers) or isinstance(expected, bool):
        return False
    return {
        "gt": actual > expected,
        "gte": actual >= expected,
        "lt": actual < expected,
        "lte": actual <= expected,
    }[kind]


_WORDS = {
    "equals": "",
    "contains": "containing ",
    "type_matches": "of type ",
    "gt": "> ",
    "gte": ">= ",
    "lt": "< ",
    "lte": "<= ",
}


def check_case(output: Any, assertions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The failures of ``assertions`` on ``output`` (empty when all hold)."""
    failures = []
    for assertion in assertions:
        path = str(assertion.get("path", ""))
        kind = str(assertion.get("assert_type", "equals"))
        expected = assertion.get("expected_value")
        actual = lookup(output, path)
        if actual is not _MISSING and _holds(kind, actual, expected):
            continue
        failures.append(
            {
                "path": path,
                "assert_type": kind,
                "expected": expected,
                "actual": None if actual is _MISSING else actual,
                "message": f"Field '{path}': expected {_WORDS.get(kind, '')}"
                f"{_shown(expected)}, got {_shown(actual)}",
            }
        )
    return failures


def uncovered_fields(output: Any, assertions: Sequence[Mapping[str, Any]]) -> list[str]:
    """Top-level output fields no assertion covers (``strict_output``)."""
    if not isinstance(output, Mapping):
        return []
    paths = {str(a.get("path", "")).split(".")[0].split("[")[0] for a in assertions}
    return sorted(k for k in output if k not in paths)
