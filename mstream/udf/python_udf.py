"""A trusted, in-process Python UDF for library and notebook use.

:class:`PythonUDF` runs a plain Python callable with the same contract as a compiled
script. It is **not sandboxed**: it runs with the full rights of the process. It is never
reachable from configuration files or the REST API, where only the sandboxed script
engine (:func:`mstream.udf.load_scripts`) exists; build it in code only.

Example:
    >>> def tag(data, attributes):
    ...     return {**data, "seen": True}, {**attributes, "by": "python"}
    >>> PythonUDF(tag).transform({"x": 1}, {})
    [({'x': 1, 'seen': True}, {'by': 'python'})]
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from mstream.errors import ScriptError

__all__ = ["PythonUDF", "PythonUDFResult"]

#: What the callable may return: ``None`` (drop), ``(data, attributes)``, or a list of them.
PythonUDFResult = tuple[Any, dict[str, str]] | list[tuple[Any, dict[str, str]]] | None


class PythonUDF:
    """Wraps ``fn(data, attributes)`` behind the :class:`~mstream.udf.CompiledScript` API.

    Args:
        fn: returns ``None`` to drop the event, ``(data, attributes)`` for one event, or a
            list of such pairs to fan out. ``attributes`` may be ``None`` in a pair to keep
            the input attributes. It receives a copy of the attributes.
        name: name used in errors; defaults to the callable's name.

    Example:
        >>> PythonUDF(lambda d, a: None).transform({"x": 1}, {})
        []
    """

    def __init__(
        self, fn: Callable[[Any, dict[str, str]], PythonUDFResult], name: str | None = None
    ):
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", "python_udf"))

    def __repr__(self) -> str:
        return f"PythonUDF({self.name!r})"

    def transform(self, data: Any, attributes: dict[str, str]) -> list[tuple[Any, dict[str, str]]]:
        """Run the callable on one event; same return and errors as a compiled script.

        Raises:
            ScriptError: the callable raised (chained), or returned something invalid.
        """
        try:
            out = self.fn(data, dict(attributes))
        except Exception as exc:
            raise ScriptError(
                f"{type(exc).__name__}: {exc}", script=self.name, line=_line_of(exc)
            ) from exc
        if out is None:
            return []
        if isinstance(out, tuple):
            return [self._pair(out, attributes)]
        if isinstance(out, list):
            return [self._pair(item, attributes) for item in out]
        raise ScriptError(
            "invalid return value: expected (data, attributes), a list of them, or None; "
            f"got {type(out).__name__}",
            script=self.name,
        )

    def _pair(self, item: Any, attributes: dict[str, str]) -> tuple[Any, dict[str, str]]:
        if not isinstance(item, tuple) or len(item) != 2:
            raise ScriptError(
                f"invalid return value: expected a (data, attributes) pair, got {item!r:.80}",
                script=self.name,
            )
        data, attrs = item
        if attrs is None:
            return data, dict(attributes)
        if not isinstance(attrs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()
        ):
            raise ScriptError(
                "invalid return value: attributes must be a dict of strings", script=self.name
            )
        return data, attrs


def _line_of(exc: BaseException) -> int | None:
    frames = traceback.extract_tb(exc.__traceback__)
    return frames[-1].lineno if frames else None
