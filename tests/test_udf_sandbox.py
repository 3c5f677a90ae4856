"""Hostile scripts: every escape or exhaustion attempt fails with a ScriptError, fast,
and the interpreter stays usable afterwards."""

from __future__ import annotations

import os
import time

import pytest

from mstream.errors import ScriptError
from mstream.udf import CompiledScript, ScriptLimits, compile_script

pytestmark = [pytest.mark.udf, pytest.mark.timeout(60)]

#: Every hostile call must return within this many seconds.
BOUND_S = 5.0

HEALTHY = "if d.ok then return result({ok = true}, a) end\n"


def hostile(body: str, name: str = "hostile.lua", **limits: object) -> CompiledScript:
    source = f"function transform(d, a)\n  {HEALTHY}  {body}\nend\n"
    return compile_script(source, name, limits=ScriptLimits(**limits))  # type: ignore[arg-type]


def assert_fails(script: CompiledScript, pattern: str) -> ScriptError:
    start = time.perf_counter()
    with pytest.raises(ScriptError, match=pattern) as info:
        script.transform({"ok": False}, {})
    assert time.perf_counter() - start < BOUND_S
    # the same interpreter still works
    assert script.transform({"ok": True}, {}) == [({"ok": True}, {})]
    return info.value


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ('return io.open("/etc/passwd"):read("a")', "'io' is not available"),
        ('return dofile("/etc/passwd")', "'dofile' is not available"),
        ('return loadfile("/etc/passwd")', "'loadfile' is not available"),
        ('return require("socket")', "'require' is not available"),
        ('return package.loadlib("libc.so.6", "system")', "'package' is not available"),
        ('return os.getenv("HOME")', "'os' is not available"),
        ('return os.execute("touch /tmp/pwned")', "'os' is not available"),
        ("return debug.getregistry()", "'debug' is not available"),
        ('return collectgarbage("count")', "'collectgarbage' is not available"),
        ("return python.builtins.open", "'python' is not available"),
        ('return load("return 1")', "'load' is not available"),
        ("return _G.io", "'io' is not available"),
        ("return _ENV.os", "'os' is not available"),
        ("local d = string.dump(function() end) return result(d, a)", "dump"),
        ('return getmetatable("").__index.dump', "must return|attempt"),
        ("setmetatable({}, {__gc = function() while true do end end})", "__gc"),
    ],
)
def test_no_files_modules_environment_process_or_bytecode(body: str, pattern: str) -> None:
    err = assert_fails(hostile(body), pattern)
    assert err.script == "hostile.lua"


def test_environment_is_not_reachable() -> None:
    os.environ["MSTREAM_UDF_SECRET"] = "s3cr3t"
    script = hostile(
        "local found = {}\n"
        "  for k, v in pairs(_G) do found[#found + 1] = k end\n"
        "  return result(found, a)"
    )
    [(names, _)] = script.transform({"ok": False}, {})
    assert not {"io", "os", "require", "load", "debug", "package", "python"} & set(names)
    assert "s3cr3t" not in repr(names)


def test_infinite_loop_hits_step_limit() -> None:
    err = assert_fails(hostile("while true do end", time_ms=None), "step limit exceeded")
    assert err.line == 3


def test_infinite_loop_hits_time_limit() -> None:
    script = hostile("while true do end", max_instructions=None, time_ms=50)
    start = time.perf_counter()
    assert_fails(script, "time limit exceeded")
    assert time.perf_counter() - start < BOUND_S


def test_slow_builtin_calls_hit_time_limit() -> None:
    script = hostile(
        'while true do local s = string.rep("x", 1000000) end',
        max_instructions=None,
        time_ms=50,
    )
    assert_fails(script, "time limit exceeded")


def test_swallowing_the_limit_with_pcall_does_not_help() -> None:
    assert_fails(
        hostile("while true do pcall(function() while true do end end) end"),
        "(step|time) limit exceeded",
    )
    assert_fails(
        hostile("while true do xpcall(function() while true do end end, function() end) end"),
        "(step|time) limit exceeded",
    )


def test_coroutines_are_limited_too() -> None:
    assert_fails(
        hostile("return coroutine.wrap(function() while true do end end)()"),
        "(step|time) limit exceeded",
    )
    assert_fails(
        hostile(
            "local co = coroutine.create(function() while true do end end)\n"
            "  while true do coroutine.resume(co) end"
        ),
        "(step|time) limit exceeded",
    )


def test_unbounded_recursion() -> None:
    assert_fails(
        hostile("local function f(n) return 1 + f(n + 1) end\n  return f(1)"),
        # whichever bound is reached first under load: all three stop the script
        "stack overflow|memory limit exceeded|time limit",
    )


def test_string_doubling_hits_memory_limit() -> None:
    assert_fails(
        hostile('local s = "x" while true do s = s .. s end'), "memory limit exceeded: 32 MB"
    )


def test_growing_table_hits_memory_limit() -> None:
    assert_fails(
        hostile("local t = {} local i = 0 while true do i = i + 1 t[i] = {i} end"),
        # whichever bound comes first on this machine; usually memory
        "memory limit exceeded|time limit exceeded|step limit exceeded",
    )


def test_huge_single_allocation_hits_memory_limit() -> None:
    assert_fails(hostile('return string.rep("x", 2^31)'), "memory limit exceeded|too large")


def test_memory_limit_is_configurable() -> None:
    small = hostile('return result(#string.rep("x", 4 * 2^20), a)', memory_bytes=2**20)
    assert_fails(small, "memory limit exceeded: 1 MB")
    big = hostile('return result(#string.rep("x", 4 * 2^20), a)', memory_bytes=16 * 2**20)
    assert big.transform({"ok": False}, {}) == [(4 * 2**20, {})]


def test_memory_is_released_between_calls() -> None:
    # each call allocates 12 MB (24 MB peak while string.rep builds it) of a 32 MB limit
    script = hostile('local s = string.rep("x", 12 * 2^20) return result(#s, a)')
    for _ in range(10):
        assert script.transform({"ok": False}, {}) == [(12 * 2**20, {})]


def test_catastrophic_pattern_is_refused() -> None:
    assert_fails(
        hostile('return string.find(string.rep("a", 20000), "a.-a.-a.-a.-b")'),
        "too costly",
    )
    assert_fails(
        hostile('local s = string.rep("a", 5000) return result(s:match(".-.-.-x"), a)'),
        "too costly",
    )


def test_table_move_with_huge_range_is_bounded() -> None:
    assert_fails(hostile("table.move({}, 1, 2^60, 1, {})"), "(step|time) limit exceeded")


def test_top_level_infinite_loop_fails_at_load() -> None:
    start = time.perf_counter()
    # the time limit off: the step limit stops the loop deterministically, however loaded
    # the machine (with both on, either may fire first)
    with pytest.raises(ScriptError, match="step limit exceeded while loading"):
        compile_script("while true do end", "load.lua", limits=ScriptLimits(time_ms=None))
    assert time.perf_counter() - start < BOUND_S


def test_metatables_of_markers_are_protected() -> None:
    assert_fails(hostile("setmetatable(null, nil)"), "protected metatable")
    assert_fails(hostile("null.x = 1"), "cannot set a field of null")


def test_python_objects_are_not_reachable() -> None:
    script = hostile(
        "local found = array()\n"
        "  for k, v in pairs(_G) do\n"
        "    if type(v) == 'userdata' then found[#found + 1] = k end\n"
        "    if type(v) == 'table' then\n"
        "      for k2, v2 in pairs(v) do\n"
        "        if type(v2) == 'userdata' then found[#found + 1] = k .. '.' .. k2 end\n"
        "      end\n"
        "    end\n"
        "  end\n"
        "  return result(found, a)"
    )
    assert script.transform({"ok": False}, {}) == [([], {})]
