"""Compiled sandboxed scripts: :func:`compile_script` and :class:`CompiledScript`.

Example:
    >>> script = compile_script('''
    ... function transform(data, attributes)
    ...   data.total = data.price * data.qty
    ...   attributes.priced = "yes"
    ...   return result(data, attributes)
    ... end''', "price.lua")
    >>> script.transform({"price": 2.5, "qty": 4}, {})
    [({'price': 2.5, 'qty': 4, 'total': 10.0}, {'priced': 'yes'})]
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from typing import Any, Literal, NoReturn

import lupa.lua54 as lua54

from mstream.errors import ScriptError

from .convert import LuaCodec
from .limits import ScriptLimits
from .sandbox import new_sandbox

__all__ = ["CompiledScript", "compile_script"]

_INF = float("inf")
_perf_counter = time.perf_counter


class CompiledScript:
    """A script compiled once into its own sandboxed Lua runtime.

    Each compiled script owns a separate interpreter, so scripts cannot see each other.
    Calls are serialised by a lock: one script may be called from several threads, but
    only one call runs at a time (compile one script per worker thread for parallelism).

    Use :func:`compile_script` to create one.

    Attributes:
        name: the script name (file name), used in error messages.
        limits: the limits every call runs under.
    """

    def __init__(self, source: str, name: str, limits: ScriptLimits) -> None:
        self.name = name
        self.limits = limits
        self._lock = threading.Lock()
        codec_ref: list[LuaCodec] = []

        def hash_value(table: Any) -> str:
            from .helpers import hash_sha256

            return hash_sha256(codec_ref[0].canonical_json(table))

        self._sandbox = new_sandbox(
            memory_bytes=limits.memory_bytes, hash_value=hash_value, name=name
        )
        self._codec = LuaCodec(self._sandbox, name)
        codec_ref.append(self._codec)
        api = self._sandbox.api
        self._run = api.run
        self._reset = api.reset
        self._steps: float = (
            _INF if limits.max_instructions is None else float(limits.max_instructions)
        )
        self._time_s = None if limits.time_ms is None else limits.time_ms / 1000.0
        with self._guard():
            ok, chunk = api.compile(source, name)
        if not ok:
            message, line = _split_location(str(chunk), name)
            raise ScriptError(f"syntax error: {message}", script=name, line=line)
        with self._guard():
            ret = api.load(chunk, self._steps, self._deadline())
        if not ret[0]:
            self._raise(ret[1], ret[2], ret[3], when="while loading")
        self._transform = ret[1]

    def __repr__(self) -> str:
        return f"CompiledScript({self.name!r})"

    def transform(self, data: Any, attributes: dict[str, str]) -> list[tuple[Any, dict[str, str]]]:
        """Run the script's ``transform(data, attributes)`` on one event (or batch).

        Args:
            data: the decoded document (JSON-native values and bson types).
            attributes: the event attributes (string map); not modified.

        Returns:
            The resulting events: empty when the script dropped the event, several when it
            fanned out. Attributes a result omitted are the input attributes.

        Raises:
            ScriptError: the script failed, hit a limit or returned an invalid value.

        Example:
            >>> s = compile_script("function transform(d, a) end", "drop.lua")
            >>> s.transform({"x": 1}, {})
            []
        """
        codec = self._codec
        with self._lock, self._guard():
            ret = self._run(
                self._transform,
                self._steps,
                self._deadline(),
                codec.to_lua(data),
                codec.attributes_to_lua(attributes),
            )
            if ret[0] is not True:
                self._raise(ret[1], ret[2], ret[3])
            n = ret[1]
            if n == 0:
                return []
            if n == 1:
                attrs = ret[3]
                return [
                    (
                        codec.from_lua(ret[2], template=data),
                        dict(attributes) if attrs is None else codec.attributes_from_lua(attrs),
                    )
                ]
            flat = ret[2]
            out = []
            for i in range(1, 2 * n, 2):
                attrs = flat[i + 1]
                out.append(
                    (
                        codec.from_lua(flat[i], template=data),
                        dict(attributes) if attrs is False else codec.attributes_from_lua(attrs),
                    )
                )
            return out

    # internals -----------------------------------------------------------------------
    def _deadline(self) -> float | None:
        return None if self._time_s is None else _perf_counter() + self._time_s

    def _guard(self) -> _Guard:
        return _Guard(self)

    def _raise(self, kind: str, message: Any, line: Any, when: str = "") -> NoReturn:
        limits = self.limits
        suffix = f" {when}" if when else ""
        if kind == "steps":
            text = f"step limit exceeded{suffix}: more than {limits.max_instructions} instructions"
        elif kind == "time":
            text = f"time limit exceeded{suffix}: ran longer than {limits.time_ms:g} ms"
        elif kind == "memory":
            self._sandbox.runtime.gccollect()
            text = f"memory limit exceeded{suffix}: {_mb(limits.memory_bytes)} MB"
            line = None
        elif kind == "return":
            text = f"invalid return value: {message}"
        else:
            text, parsed = _split_location(str(message), self.name)
            line = parsed if parsed is not None else line
            if text == "not enough memory" or text == "error in error handling":
                self._sandbox.runtime.gccollect()
                text = f"memory limit exceeded{suffix}: {_mb(limits.memory_bytes)} MB"
            elif "stack overflow" in text:
                text = f"{text} (unbounded recursion?)"
            elif when:
                text = f"{text} ({when})"
        raise ScriptError(text, script=self.name, line=line if isinstance(line, int) else None)


class _Guard:
    """Maps interpreter-level failures to ScriptError and always clears the hook."""

    def __init__(self, script: CompiledScript) -> None:
        self._script = script

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        if exc is None or isinstance(exc, ScriptError):
            return False
        script = self._script
        runtime = script._sandbox.runtime
        with contextlib.suppress(lua54.LuaError):
            script._sandbox.api.reset()
        if isinstance(exc, lua54.LuaMemoryError | MemoryError):
            runtime.gccollect()
            raise ScriptError(
                f"memory limit exceeded: {_mb(script.limits.memory_bytes)} MB",
                script=script.name,
            ) from exc
        if isinstance(exc, lua54.LuaError | UnicodeDecodeError | RecursionError):
            message, line = _split_location(str(exc), script.name)
            if isinstance(exc, UnicodeDecodeError):
                message = f"invalid return value: a string is not valid UTF-8 ({exc.reason})"
            raise ScriptError(message, script=script.name, line=line) from exc
        return False


def _mb(n: int) -> str:
    return f"{n / 2**20:g}"


_LOCATION_CACHE: dict[str, re.Pattern[str]] = {}


def _split_location(message: str, name: str) -> tuple[str, int | None]:
    pattern = _LOCATION_CACHE.get(name)
    if pattern is None:
        pattern = re.compile(rf"^(?:{re.escape(name)}|\[string \"[^\"]*\"\]):(\d+): ", re.S)
        _LOCATION_CACHE[name] = pattern
    match = pattern.match(message)
    if match:
        return message[match.end() :], int(match[1])
    return message, None


def compile_script(source: str, name: str, *, limits: ScriptLimits | None = None) -> CompiledScript:
    """Compile a Lua script once into its own sandbox and run its top level.

    Args:
        source: Lua 5.4 source defining ``transform(data, attributes)``.
        name: the script name (its file name) used in error messages.
        limits: per-call limits; defaults to :class:`ScriptLimits` ``()``.

    Returns:
        The :class:`CompiledScript`.

    Raises:
        ScriptError: syntax error, failure or limit hit while loading, or no
            ``transform`` function (with the line when known).

    Example:
        >>> inc = compile_script("function transform(d) return result(d.x + 1) end", "inc.lua")
        >>> inc.transform({"x": 1}, {"k": "v"})
        [(2, {'k': 'v'})]
    """
    return CompiledScript(source, name, limits or ScriptLimits())
