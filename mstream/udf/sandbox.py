"""The sandboxed Lua 5.4 runtime that one compiled script runs in.

:func:`new_sandbox` creates a fresh ``lupa.lua54.LuaRuntime`` with a memory cap and runs
:data:`PRELUDE` in it. The prelude keeps private references to what it needs
(``debug.sethook``, ``load`` restricted to text, the Python helper callables) as Lua
upvalues and builds the *only* environment a script sees: a whitelist of pure Lua
libraries plus the mstream helpers. Nothing in it reaches files, the network, the
process, environment variables, modules, bytecode or Python objects.

Example:
    >>> sb = new_sandbox(memory_bytes=8 * 2**20)
    >>> ok, fn = sb.api.compile("function transform(d, a) return result(d, a) end", "x.lua")
    >>> ok
    True
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import lupa.lua54 as lua54
import orjson

from . import helpers

__all__ = ["PRELUDE", "Sandbox", "new_sandbox"]

_log = logging.getLogger("mstream.udf")

#: Lua source run once per runtime; receives the Python callables as ``...``.
PRELUDE = r"""
local py_clock, py_now_ms, py_hash, py_hash_value, py_mask_email, py_mask_phone,
      py_mask_year, py_mask_year_ms, py_log = ...

local sethook, getinfo, rawgetmt = debug.sethook, debug.getinfo, debug.getmetatable
local load, pcall, xpcall, error = load, pcall, xpcall, error
local type, tostring, select = type, tostring, select
local setmetatable, getmetatable, rawget, rawset = setmetatable, getmetatable, rawget, rawset
local next = next
local str_byte, str_find, str_match = string.byte, string.find, string.match
local str_gmatch, str_gsub, str_format = string.gmatch, string.gsub, string.format
local tconcat, mtype, mlog = table.concat, math.type, math.log
local co_create, co_resume = coroutine.create, coroutine.resume

local HOOK_EVERY = 1000
local MEMERR = "not enough memory"
local PATTERN_LIMIT = 1e9

-- per-call state
local steps_left, deadline, limit_hit, limit_line, err_line = 0, nil, nil, nil, nil
local chunk_source = "=?"

local function script_line(level)
  while true do
    local info = getinfo(level, "Sl")
    if not info then return nil end
    if info.source == chunk_source and info.currentline and info.currentline > 0 then
      return info.currentline
    end
    level = level + 1
  end
end

local function hook()
  steps_left = steps_left - HOOK_EVERY
  if steps_left < 0 then
    limit_hit = "steps"
  elseif deadline and py_clock() > deadline then
    limit_hit = "time"
  else
    return
  end
  limit_line = script_line(2)
  error("limit exceeded: " .. limit_hit, 0)
end

-- re-raise limit and memory errors that a script's pcall/xpcall/resume would swallow
local function rethrow(ok, ...)
  if not ok then
    if limit_hit then error("limit exceeded: " .. limit_hit, 0) end
    if (...) == MEMERR then error(MEMERR, 0) end
  end
  return ok, ...
end

-- markers ------------------------------------------------------------------------------
local ARRAY = { __metatable = "array", __name = "array" }
local RESULT = { __metatable = "result", __name = "result" }
local null = setmetatable({}, {
  __metatable = "null", __name = "null",
  __tostring = function() return "null" end,
  __newindex = function() error("cannot set a field of null", 2) end,
})

local function array(t)
  if t == nil then t = {} end
  if type(t) ~= "table" or t == null then error("array() expects a table or nothing", 2) end
  local mt = rawgetmt(t)
  if mt ~= nil and mt ~= ARRAY then error("array() expects a table without metatable", 2) end
  return setmetatable(t, ARRAY)
end

local function is_array(t)
  return type(t) == "table" and rawgetmt(t) == ARRAY
end

local function result(data, attributes)
  if data == nil then error("result(): data is nil (return nil to drop the event)", 2) end
  if attributes ~= nil and type(attributes) ~= "table" then
    error("result(): attributes must be a table of strings, got " .. type(attributes), 2)
  end
  return setmetatable({ data, attributes }, RESULT)
end

-- helpers ------------------------------------------------------------------------------
local function hash_sha256(v)
  local t = type(v)
  if t == "string" then return py_hash(v) end
  if t == "number" or t == "boolean" then return py_hash(tostring(v)) end
  if t == "table" then return py_hash_value(v) end
  error("hash_sha256() expects a string, number, boolean or table, got " .. t, 2)
end

local function mask_email(v)
  if type(v) ~= "string" then return v end
  return py_mask_email(v)
end

local function mask_phone(v)
  if type(v) == "number" and mtype(v) == "integer" then v = tostring(v) end
  if type(v) ~= "string" then return v end
  return py_mask_phone(v)
end

local function mask_year_only(v)
  local t = type(v)
  if t == "string" then return py_mask_year(v) end
  if t == "table" then
    local inner = rawget(v, "$date")
    if type(inner) == "string" then return { ["$date"] = py_mask_year(inner) } end
    if type(inner) == "table" then
      local ms = rawget(inner, "$numberLong")
      if type(ms) == "string" then
        return { ["$date"] = { ["$numberLong"] = py_mask_year_ms(ms) } }
      end
    end
  end
  return v
end

local function timestamp_ms() return py_now_ms() end

local function print_(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  py_log(tconcat(parts, "\t"))
end

-- guarded pattern matching: Lua's matcher backtracks inside C, where the instruction hook
-- cannot interrupt it, so refuse (subject, pattern) pairs whose worst case is too large.
local qcache = setmetatable({}, { __mode = "k" })
local function quantifiers(p)
  local k = qcache[p]
  if k then return k end
  k = 0
  local i, n = 1, #p
  while i <= n do
    local c = str_byte(p, i)
    if c == 37 then            -- %x
      local d = str_byte(p, i + 1)
      if d == 98 then          -- %bxy scans ahead like a repetition
        k = k + 1
        i = i + 4
      elseif d and d >= 49 and d <= 57 then  -- %1-%9 compares a whole capture
        k = k + 1
        i = i + 2
      else
        i = i + 2
      end
    elseif c == 91 then        -- [set]
      i = i + 1
      if str_byte(p, i) == 94 then i = i + 1 end
      if str_byte(p, i) == 93 then i = i + 1 end
      while i <= n and str_byte(p, i) ~= 93 do
        if str_byte(p, i) == 37 then i = i + 1 end
        i = i + 1
      end
      i = i + 1
    else
      if c == 42 or c == 43 or c == 45 then k = k + 1 end
      i = i + 1
    end
  end
  qcache[p] = k
  return k
end

local function check_pattern(fname, s, p, plain)
  if plain or type(p) ~= "string" then return end
  if type(s) == "number" then s = tostring(s) end
  if type(s) ~= "string" then return end
  local n = #s
  if n < 2 then return end
  local k = quantifiers(p)
  if k == 0 then return end
  local e = (str_byte(p, 1) == 94) and k or (k + 1)
  if e * mlog(n) > mlog(PATTERN_LIMIT) then
    error(str_format("string.%s: pattern with %d repetition items is too costly on a "
      .. "%d-byte string (worst case %d^%d steps); use a plain find or a simpler pattern",
      fname, k, n, n, e), 3)
  end
end

string.find = function(s, p, init, plain)
  check_pattern("find", s, p, plain)
  return str_find(s, p, init, plain)
end
string.match = function(s, p, init)
  check_pattern("match", s, p)
  return str_match(s, p, init)
end
string.gmatch = function(s, p, init)
  check_pattern("gmatch", s, p)
  return str_gmatch(s, p, init)
end
string.gsub = function(s, p, r, n)
  check_pattern("gsub", s, p)
  return str_gsub(s, p, r, n)
end
-- string.rep("", n) loops n times in C copying nothing (no memory, no hook): answer it here
local str_rep = string.rep
string.rep = function(s, n, sep)
  if type(s) == "string" and (sep == nil or sep == "") and #s == 0 and type(n) == "number" then
    return ""
  end
  return str_rep(s, n, sep)
end
string.dump = nil
getmetatable("").__metatable = "string"

local function copy(t)
  local c = {}
  for k, v in next, t do c[k] = v end
  return c
end

local tbl = copy(table)
tbl.move = function(a1, f, e, t, a2)   -- in Lua so that the hook sees every step
  a2 = a2 or a1
  if e >= f then
    if t > f or t > e or a1 ~= a2 then
      for i = 0, e - f do a2[t + i] = a1[f + i] end
    else
      for i = e - f, 0, -1 do a2[t + i] = a1[f + i] end
    end
  end
  return a2
end

local co = copy(coroutine)
co.create = function(f)
  local c = co_create(f)
  sethook(c, hook, "", HOOK_EVERY)
  return c
end
co.wrap = function(f)
  local c = co.create(f)
  return function(...) return select(2, rethrow(co_resume(c, ...))) end
end
co.resume = function(c, ...) return rethrow(co_resume(c, ...)) end

local function setmetatable_(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable(): __gc finalizers are not allowed in scripts", 2)
  end
  return setmetatable(t, mt)
end

-- the script environment ---------------------------------------------------------------
local ENV = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
  select = select, tonumber = tonumber, tostring = tostring, type = type,
  rawequal = rawequal, rawget = rawget, rawset = rawset, rawlen = rawlen,
  getmetatable = getmetatable, setmetatable = setmetatable_,
  pcall = function(f, ...) return rethrow(pcall(f, ...)) end,
  -- a message handler that runs for an error raised by the limit hook runs with hooks
  -- off (Lua calls it from inside the hook), so it could loop unbounded: after a limit,
  -- the script's handler is not called at all
  xpcall = function(f, h, ...)
    return rethrow(xpcall(f, function(e)
      if limit_hit or e == MEMERR then return e end
      return h(e)
    end, ...))
  end,
  print = print_, _VERSION = _VERSION,
  string = string, table = tbl, math = copy(math), utf8 = copy(utf8), coroutine = co,
  null = null, array = array, is_array = is_array, result = result,
  timestamp_ms = timestamp_ms, hash_sha256 = hash_sha256, mask_email = mask_email,
  mask_phone = mask_phone, mask_year_only = mask_year_only,
}
ENV._G = ENV

local FORBIDDEN = {
  io = "file access", os = "process and environment access", require = "modules",
  package = "modules", dofile = "file access", loadfile = "file access",
  load = "loading code", loadstring = "loading code", debug = "the debug library",
  collectgarbage = "the garbage collector", python = "Python objects", module = "modules",
}
local locked = false
setmetatable(ENV, {
  __metatable = "sandbox",
  __index = function(_, k)
    local what = FORBIDDEN[k]
    if what then
      error(str_format("'%s' is not available in sandboxed scripts (no %s)", tostring(k), what), 2)
    end
    return nil
  end,
  __newindex = function(t, k, v)
    if locked then
      error(str_format("cannot assign global '%s' while handling an event; declare it local",
        tostring(k)), 2)
    end
    rawset(t, k, v)
  end,
})

-- the API Python uses ------------------------------------------------------------------
local function handler(e)
  if limit_hit then return "limit exceeded: " .. limit_hit end
  err_line = script_line(2)
  if type(e) == "string" then return e end
  local ok, s = pcall(tostring, e)
  return ok and s or "(error object without message)"
end

local function finish(ok, r)
  sethook()
  deadline = nil
  if not ok then
    if limit_hit then return false, limit_hit, r, limit_line end
    if r == MEMERR then return false, "memory", r, nil end
    return false, "error", r, err_line
  end
  if r == nil then return true, 0 end
  local mt = rawgetmt(r)
  if mt == RESULT then return true, 1, r[1], r[2] end
  if type(r) == "table" and (mt == nil or mt == ARRAY) then
    local n = #r
    if n == 0 then
      if next(r) == nil then return true, 0 end
    elseif n == 1 and rawgetmt(r[1]) == RESULT then
      return true, 1, r[1][1], r[1][2]  -- a list of one: same layout as one result
    else
      local flat = {}
      for i = 1, n do
        local item = r[i]
        if rawgetmt(item) ~= RESULT then
          return false, "return", "transform returned a list whose item " .. i
            .. " is a " .. type(item) .. ", not result(data, attributes)", nil
        end
        flat[2 * i - 1] = item[1]
        flat[2 * i] = item[2] or false
      end
      return true, n, flat
    end
  end
  return false, "return", "transform must return result(data, attributes), a list of "
    .. "results, or nil to drop the event; it returned a " .. type(r)
    .. (type(r) == "table" and " that is not a result (wrap it: result(data, attributes))" or ""),
    nil
end

local function start(steps, dl)
  steps_left, deadline, limit_hit, limit_line, err_line = steps, dl, nil, nil, nil
  sethook(hook, "", HOOK_EVERY)
end

local api = {}

function api.compile(source, name)
  chunk_source = "=" .. name
  local fn, err = load(source, chunk_source, "t", ENV)
  if not fn then return false, err end
  return true, fn
end

function api.load(fn, steps, dl)
  locked = false
  start(steps, dl)
  local ok, a, b, c = finish(xpcall(fn, handler))
  locked = true
  if not ok then return false, a, b, c end
  local t = rawget(ENV, "transform")
  if type(t) ~= "function" then
    return false, "error",
      "the script must define a global function transform(data, attributes)", nil
  end
  return true, t
end

function api.run(fn, steps, dl, data, attributes)
  start(steps, dl)
  return finish(xpcall(fn, handler, data, attributes))
end

function api.reset() sethook(); deadline = nil end
function api.mkarray(t) return setmetatable(t, ARRAY) end
function api.kind(t)
  local mt = rawgetmt(t)
  if t == null then return "null" end
  if mt == ARRAY then return "array" end
  if mt == RESULT then return "result" end
  return "object"
end
api.null = null
return api
"""


def _noop_attribute_filter(obj: object, name: object, is_setting: bool) -> str:
    raise AttributeError("Python attribute access is not allowed in sandboxed scripts")


@dataclass
class Sandbox:
    """A prepared runtime: the lupa runtime and the prelude's API table.

    Attributes:
        runtime: the ``lupa.lua54.LuaRuntime``.
        api: the Lua table returned by :data:`PRELUDE` (``compile``, ``load``, ``run``,
            ``reset``, ``mkarray``, ``kind``, ``null``).
        base_memory: bytes in use after the prelude ran (the memory cap sits above it).
    """

    runtime: Any
    api: Any
    base_memory: int


def new_sandbox(*, memory_bytes: int, hash_value: Any = None, name: str = "script") -> Sandbox:
    """Create a sandboxed Lua 5.4 runtime whose heap may grow ``memory_bytes`` past setup.

    Args:
        memory_bytes: heap growth allowed above the runtime's size after the prelude.
        hash_value: callable hashing a Lua table for ``hash_sha256`` (set by the codec);
            ``None`` hashes ``tostring`` of the table.
        name: script name used in log lines from ``print``.

    Returns:
        The :class:`Sandbox`.

    Example:
        >>> new_sandbox(memory_bytes=2**20).base_memory > 0
        True
    """
    runtime = lua54.LuaRuntime(
        register_eval=False,
        register_builtins=False,
        unpack_returned_tuples=True,
        attribute_filter=_noop_attribute_filter,
        # No overflow_handler: a Python int wider than a Lua integer (64 bits) raises
        # OverflowError, which the codec reports with the field, instead of becoming a float.
        max_memory=0,
    )
    logger = _log.getChild(name.replace(".", "_"))

    def log(text: str) -> None:
        logger.info("%s", text)

    def default_hash_value(table: Any) -> str:
        return helpers.hash_sha256(orjson.dumps(str(table)).decode())

    api = runtime.execute(
        PRELUDE,
        time.perf_counter,
        helpers.timestamp_ms,
        helpers.hash_sha256,
        hash_value or default_hash_value,
        helpers.mask_email,
        helpers.mask_phone,
        helpers.mask_year_only,
        helpers.mask_year_only_millis,
        log,
        name="=mstream-prelude",
        mode="t",
    )
    runtime.execute("python = nil; package = nil; debug = nil; io = nil; os = nil", mode="t")
    runtime.gccollect()
    base = int(runtime.get_memory_used() or 0)
    runtime.set_max_memory(base + memory_bytes)
    return Sandbox(runtime=runtime, api=api, base_memory=base)
