"""Per-call resource limits of a sandboxed script.

Example:
    >>> from mstream.udf import ScriptLimits
    >>> ScriptLimits(time_ms=50, memory_bytes=16 * 2**20).time_ms
    50
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScriptLimits:
    """Bounds enforced on every call of a compiled script (and on loading it).

    Attributes:
        max_instructions: Lua VM instructions one call may execute (checked every 1000
            instructions); ``None`` for no step limit. Deterministic, unlike ``time_ms``.
        time_ms: wall-clock milliseconds one call may take (checked every 1000
            instructions); ``None`` for no time limit.
        memory_bytes: how far the script's interpreter heap may grow above its size after
            loading; an allocation beyond it fails with a memory error.

    Example:
        >>> ScriptLimits().memory_bytes // 2**20
        32
    """

    max_instructions: int | None = 10_000_000
    time_ms: float | None = 100.0
    memory_bytes: int = 32 * 2**20

    def __post_init__(self) -> None:
        if self.max_instructions is not None and self.max_instructions <= 0:
            raise ValueError("max_instructions must be positive or None")
        if self.time_ms is not None and self.time_ms <= 0:
            raise ValueError("time_ms must be positive or None")
        if self.memory_bytes < 64 * 1024:
            raise ValueError("memory_bytes must be at least 64 KiB")
