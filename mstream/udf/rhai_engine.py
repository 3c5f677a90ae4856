"""Rhai scripts, the script language of the original mstream, for the ``udf`` provider.

The engine is the ``mstream_rhai`` Rust extension (``rust/mstream_rhai/``: the ``rhai``
crate behind PyO3), so scripts written for the original run unchanged. This module wraps
it with mstream's contract: :meth:`RhaiScript.transform` returns ``[(data, attributes),
...]`` and every failure is a :class:`~mstream.errors.ScriptError`. Without the extension
:func:`compile_rhai` raises a :class:`~mstream.errors.ConfigError` that says how to
install it.

The script contract is the original's: ``fn transform(data, attributes)`` returns
``result(data)`` (input attributes kept) or ``result(data, attributes)`` for one event.
As extensions, an array of ``result(...)`` values fans out (``[]`` drops) and ``()``
drops the event. MongoDB types reach the script as the original shows them:
``{"$oid": hex}``, ``{"$date": {"$numberLong": "millis"}}`` (and canonical Extended JSON
for the rest); returned maps in that form become bson values again.

Example:
    >>> script = compile_rhai('''
    ... fn transform(data, attributes) {
    ...     if !data.active { return (); }           // drop
    ...     data.email = mask_email(data.email);
    ...     attributes["masked"] = "true";
    ...     result(data, attributes)
    ... }''', "mask.rhai")
    >>> script.transform({"active": True, "email": "alice@example.com"}, {})
    [({'active': True, 'email': 'a***@example.com'}, {'masked': 'true'})]
    >>> script.transform({"active": False, "email": "bob@example.com"}, {})
    []
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

from bson import json_util

from mstream.errors import ConfigError, ScriptError

__all__ = ["INSTALL_HINT", "RhaiLimits", "RhaiScript", "compile_rhai", "rhai_available"]

#: How to get the extension, for error messages and skipped tests.
INSTALL_HINT = (
    "the Rhai engine (the mstream_rhai Rust extension) is not installed; with a Rust "
    "toolchain (cargo) run `bash rust/install-rhai.sh` or `pip install ./rust/mstream_rhai`, "
    "or install mstream with `pip install -e '.[rhai]'`"
)

_ext: ModuleType | None
try:
    _ext = importlib.import_module("mstream_rhai")
except ImportError:  # the optional extension is not built
    _ext = None

_log = logging.getLogger("mstream.udf")
# Values the engine cannot convert by itself (bson types) become canonical Extended JSON:
# dates as {"$date": {"$numberLong": ...}}, the form the original's scripts see.
_TO_SCRIPT = json_util.JSONOptions(json_mode=json_util.JSONMode.CANONICAL, tz_aware=False)
_FROM_SCRIPT = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, tz_aware=False)


def rhai_available() -> bool:
    """Whether the ``mstream_rhai`` extension is installed.

    Example:
        >>> isinstance(rhai_available(), bool)
        True
    """
    return _ext is not None


@dataclass(frozen=True)
class RhaiLimits:
    """Bounds enforced on every call of a Rhai script (Rhai's own engine limits plus time).

    ``0`` means unlimited for the size and count limits (Rhai's convention).

    Attributes:
        max_operations: Rhai operations one call may run (the original's default).
        time_ms: wall-clock milliseconds one call may take (checked every 256
            operations); ``None`` for no time limit.
        max_call_levels: nested function calls (recursion depth).
        max_expr_depth: nesting depth of expressions, at top level and in functions.
        max_string_size: bytes in one string (the total of the strings inside an array
            or map counts too). 16 MiB: the largest MongoDB document fits.
        max_array_size: elements in one array, nested arrays included.
        max_map_size: properties in one object map, nested maps included.
        memory_mb: net memory one call may allocate inside the engine (checked after every
            operation); ``0`` for no memory limit. Rhai has none of its own, and its size
            limits are not checked on every path (a map grown by ``m[k] = v`` in a loop).

    Example:
        >>> RhaiLimits().max_operations, RhaiLimits(time_ms=50).time_ms
        (1000000, 50)
    """

    max_operations: int = 1_000_000
    time_ms: float | None = 100.0
    max_call_levels: int = 64
    max_expr_depth: int = 32
    max_string_size: int = 16 * 2**20
    max_array_size: int = 100_000
    max_map_size: int = 100_000
    memory_mb: float = 64.0

    def __post_init__(self) -> None:
        if self.time_ms is not None and self.time_ms <= 0:
            raise ValueError("time_ms must be positive or None")
        for name, value in asdict(self).items():
            if name != "time_ms" and value < 0:
                raise ValueError(f"{name} must be >= 0")


def _engine_limits(limits: RhaiLimits) -> dict[str, Any]:
    values = asdict(limits)
    values["memory_bytes"] = int(values.pop("memory_mb") * 2**20)
    return values


def _to_script(value: Any) -> Any:
    return json_util.default(value, _TO_SCRIPT)


def _from_script(doc: dict[str, Any]) -> Any:
    try:
        return json_util.object_hook(doc, _FROM_SCRIPT)
    except Exception as exc:
        raise ValueError(f"invalid Extended JSON {doc!r:.200}: {exc}") from None


class RhaiScript:
    """A Rhai script compiled once into its own sandboxed engine.

    Calls may come from several threads at once: each runs with the GIL released and its
    own deadline. Use :func:`compile_rhai` to create one.

    Attributes:
        name: the script name (file name), used in error messages.
        limits: the limits every call runs under.
    """

    def __init__(self, source: str, name: str, limits: RhaiLimits) -> None:
        if _ext is None:
            raise ConfigError(f"udf script {name!r}: {INSTALL_HINT}")
        self.name = name
        self.limits = limits
        logger = _log.getChild(name.replace(".", "_"))
        try:
            self._script = _ext.Script(
                source,
                name,
                **_engine_limits(limits),
                default=_to_script,
                object_hook=_from_script,
                print=lambda text: logger.info("%s", text),
            )
        except _ext.RhaiError as exc:
            raise _script_error(exc) from None
        self._transform = self._script.transform
        self._error: type[Exception] = _ext.RhaiError

    def __repr__(self) -> str:
        return f"RhaiScript({self.name!r})"

    def transform(self, data: Any, attributes: dict[str, str]) -> list[tuple[Any, dict[str, str]]]:
        """Run the script's ``transform(data, attributes)`` on one event.

        Args:
            data: the decoded document (JSON-native values and bson types).
            attributes: the event attributes (string map); not modified.

        Returns:
            The resulting events: empty when the script dropped the event, several when it
            fanned out. ``result(data)`` keeps the input attributes.

        Raises:
            ScriptError: the script failed, hit a limit or returned an invalid value; the
                message has the script name, line and column when Rhai knows them.
        """
        try:
            return self._transform(data, attributes)
        except self._error as exc:
            raise _script_error(exc) from None


def _script_error(exc: Any) -> ScriptError:
    return ScriptError(exc.reason, script=exc.script, line=exc.line, column=exc.column)


def compile_rhai(source: str, name: str, *, limits: RhaiLimits | None = None) -> RhaiScript:
    """Compile a Rhai script that defines ``fn transform(data, attributes)``.

    Args:
        source: the Rhai source.
        name: the script name (its file name) used in error messages.
        limits: per-call limits; defaults to :class:`RhaiLimits` ``()``.

    Returns:
        The :class:`RhaiScript`.

    Raises:
        ScriptError: a syntax error (with line and column), or no ``transform`` function
            with two parameters.
        ConfigError: the ``mstream_rhai`` extension is not installed (says how to get it).

    Example:
        >>> inc = compile_rhai("fn transform(d, a) { result(d + 1) }", "inc.rhai")
        >>> inc.transform(1, {"k": "v"})
        [(2, {'k': 'v'})]
    """
    return RhaiScript(source, name, limits or RhaiLimits())
