"""Benchmark: script UDF events/s for a 10-field transform vs the same plain Python function.

Runs the same transform (derived fields, string ops, one hash helper call) as
* the sandboxed Lua 5.4 engine (``mstream.udf.compile_script``, full conversion and limits),
* Starlark via ``starlark-pyo3`` (the rejected candidate; native conversion, no EJSON),
* ``mstream.udf.PythonUDF`` and a plain Python function,
and prints a table of microseconds per event and events per second.

Usage::

    .venv/bin/python bench/bench_udf.py [--events 20000]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable
from typing import Any

from bson import ObjectId

from mstream.udf import PythonUDF, compile_script

DOC: dict[str, Any] = {
    "id": 123,
    "first_name": "Alice",
    "last_name": "Smith",
    "email": "Alice@Example.COM",
    "age": 34,
    "score": 88.5,
    "city": "berlin",
    "active": True,
    "tags": ["a", "b"],
    "phone": "+49 170 1234567",
}
ATTRS = {"source": "bench"}

LUA = """
function transform(data, attributes)
  local out = {}
  out.id = data.id
  out.full_name = data.first_name .. " " .. data.last_name
  out.email = string.lower(data.email)
  out.age_group = data.age >= 30 and "30+" or "<30"
  out.score_pct = data.score / 100
  out.city = string.upper(data.city)
  out.active = data.active
  out.tag_count = #data.tags
  out.phone_digits = (string.gsub(data.phone, "%D", ""))
  out.user_hash = hash_sha256(data.id)
  attributes.processed = "yes"
  return result(out, attributes)
end
"""

STARLARK = """
def transform(data, attributes):
    out = {}
    out["id"] = data["id"]
    out["full_name"] = data["first_name"] + " " + data["last_name"]
    out["email"] = data["email"].lower()
    out["age_group"] = "30+" if data["age"] >= 30 else "<30"
    out["score_pct"] = data["score"] / 100
    out["city"] = data["city"].upper()
    out["active"] = data["active"]
    out["tag_count"] = len(data["tags"])
    out["phone_digits"] = "".join([c for c in data["phone"].elems() if c.isdigit()])
    out["user_hash"] = hash_sha256(data["id"])
    attributes["processed"] = "yes"
    return (out, attributes)
"""


def _sha(value: object) -> str:
    return hashlib.sha256(str(value).encode()).hexdigest()


def plain(data: dict[str, Any], attributes: dict[str, str]) -> tuple[Any, dict[str, str]]:
    out = {
        "id": data["id"],
        "full_name": data["first_name"] + " " + data["last_name"],
        "email": data["email"].lower(),
        "age_group": "30+" if data["age"] >= 30 else "<30",
        "score_pct": data["score"] / 100,
        "city": data["city"].upper(),
        "active": data["active"],
        "tag_count": len(data["tags"]),
        "phone_digits": "".join(c for c in data["phone"] if c.isdigit()),
        "user_hash": _sha(data["id"]),
    }
    attributes = dict(attributes)
    attributes["processed"] = "yes"
    return out, attributes


def starlark_runner() -> Callable[[Any, dict[str, str]], Any] | None:
    try:
        import starlark as sl
    except ImportError:
        return None
    module = sl.Module()
    module.add_callable("hash_sha256", _sha)
    sl.eval(module, sl.parse("bench.star", STARLARK), sl.Globals.standard())
    frozen = module.freeze()
    deadline = [0.0]
    options = sl.EvalOptions(
        check_cancelled=lambda: time.perf_counter() > deadline[0], max_callstack_size=200
    )

    def run(data: Any, attributes: dict[str, str]) -> Any:
        deadline[0] = time.perf_counter() + 0.1
        return frozen.call_with(options, "transform", data, attributes).value

    return run


def measure(fn: Callable[[Any, dict[str, str]], Any], doc: Any, events: int) -> float:
    for _ in range(min(1000, events)):
        fn(doc, ATTRS)
    start = time.perf_counter()
    for _ in range(events):
        fn(doc, ATTRS)
    return (time.perf_counter() - start) / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()

    lua = compile_script(LUA, "bench.lua")
    assert lua.transform(DOC, ATTRS)[0][0] == plain(DOC, ATTRS)[0]
    doc_oid = {**DOC, "_id": ObjectId()}
    rows: list[tuple[str, float]] = [
        ("Lua 5.4 sandbox (mstream.udf)", measure(lua.transform, DOC, args.events)),
        ("Lua 5.4 sandbox, doc + ObjectId", measure(lua.transform, doc_oid, args.events)),
    ]
    star = starlark_runner()
    if star is not None:
        rows.append(("Starlark (starlark-pyo3)", measure(star, DOC, args.events)))
    rows.append(("PythonUDF (trusted)", measure(PythonUDF(plain).transform, DOC, args.events)))
    rows.append(("plain Python function", measure(plain, DOC, args.events)))

    base = rows[-1][1]
    print(f"10-field transform, {args.events} events each")
    print(f"{'engine':<34} {'us/event':>9} {'events/s':>10} {'vs Python':>10}")
    for name, seconds in rows:
        print(f"{name:<34} {seconds * 1e6:>9.1f} {1 / seconds:>10,.0f} {seconds / base:>9.1f}x")


if __name__ == "__main__":
    main()
