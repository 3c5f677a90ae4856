"""Benchmark: the Rhai engine vs Lua vs Python for a 10-field transform, events/s.

The input is the generator provider's 10-field ``users`` document (1000 different ones,
in turn); the transform derives fields, does string work and calls ``hash_sha256`` once,
written as
* a Rhai script (``mstream.udf.compile_rhai``: the ``mstream_rhai`` extension, with the
  conversion, Extended JSON hooks, limits and deadline, GIL released per call),
* a Lua 5.4 script (``mstream.udf.compile_script``, the sandboxed default engine),
* ``mstream.udf.PythonUDF`` and a plain Python function (trusted, not sandboxed),
and prints microseconds per event and events per second. All four produce the same events.

Usage::

    .venv/bin/python bench/bench_udf_rhai.py [--events 50000]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from typing import Any

from mstream.providers.generator import user_doc
from mstream.udf import PythonUDF, compile_rhai, compile_script, rhai_available

ATTRS = {"source": "bench"}
DOCS = [user_doc(i) for i in range(1000)]

RHAI = """
fn transform(data, attributes) {
    let digits = "";
    for c in data.phone {
        if c >= '0' && c <= '9' { digits += c; }
    }
    let out = #{
        user_id: data.user_id,
        name: data.name.to_upper(),
        email: mask_email(data.email),
        age_group: if data.age >= 30 { "30+" } else { "<30" },
        score_pct: data.score / 100.0,
        city: data.city.to_lower(),
        active: data.active,
        signup_s: data.signup_ms / 1000,
        tag_count: data.tags.len(),
        phone_digits: digits,
        user_hash: hash_sha256(data.user_id),
    };
    attributes["processed"] = "yes";
    result(out, attributes)
}
"""

LUA = """
function transform(data, attributes)
  local out = {}
  out.user_id = data.user_id
  out.name = string.upper(data.name)
  out.email = mask_email(data.email)
  out.age_group = data.age >= 30 and "30+" or "<30"
  out.score_pct = data.score / 100
  out.city = string.lower(data.city)
  out.active = data.active
  out.signup_s = data.signup_ms // 1000
  out.tag_count = #data.tags
  out.phone_digits = (string.gsub(data.phone, "%D", ""))
  out.user_hash = hash_sha256(data.user_id)
  attributes.processed = "yes"
  return result(out, attributes)
end
"""


def plain(data: dict[str, Any], attributes: dict[str, str]) -> tuple[Any, dict[str, str]]:
    local, _, domain = data["email"].partition("@")
    out = {
        "user_id": data["user_id"],
        "name": data["name"].upper(),
        "email": (local[0] + "***" if len(local) > 1 else "*") + "@" + domain,
        "age_group": "30+" if data["age"] >= 30 else "<30",
        "score_pct": data["score"] / 100,
        "city": data["city"].lower(),
        "active": data["active"],
        "signup_s": data["signup_ms"] // 1000,
        "tag_count": len(data["tags"]),
        "phone_digits": "".join(c for c in data["phone"] if c.isdigit()),
        "user_hash": hashlib.sha256(str(data["user_id"]).encode()).hexdigest(),
    }
    attributes = dict(attributes)
    attributes["processed"] = "yes"
    return out, attributes


def measure(fn: Callable[[Any, dict[str, str]], Any], events: int) -> float:
    n = len(DOCS)
    for i in range(min(2000, events)):
        fn(DOCS[i % n], ATTRS)
    start = time.perf_counter()
    for i in range(events):
        fn(DOCS[i % n], ATTRS)
    return (time.perf_counter() - start) / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50000)
    args = parser.parse_args()
    if not rhai_available():
        sys.exit("mstream_rhai is not installed: bash rust/install-rhai.sh")

    rhai = compile_rhai(RHAI, "bench.rhai")
    lua = compile_script(LUA, "bench.lua")
    for doc in DOCS[:50]:
        expected = [plain(doc, ATTRS)]
        assert rhai.transform(doc, ATTRS) == expected, (rhai.transform(doc, ATTRS), expected)
        assert lua.transform(doc, ATTRS) == expected, (lua.transform(doc, ATTRS), expected)
    rows = [
        ("Rhai (mstream_rhai)", measure(rhai.transform, args.events)),
        ("Lua 5.4 sandbox (lupa)", measure(lua.transform, args.events)),
        ("PythonUDF (trusted)", measure(PythonUDF(plain).transform, args.events)),
        ("plain Python function", measure(plain, args.events)),
    ]
    base = rows[-1][1]
    print(f"10-field users transform, {args.events} events each, one thread")
    print(f"| {'engine':<24} | {'us/event':>8} | {'events/s':>9} | {'vs Python':>9} |")
    print(f"|{'-' * 26}|{'-' * 9}:|{'-' * 10}:|{'-' * 10}:|")
    for name, seconds in rows:
        print(
            f"| {name:<24} | {seconds * 1e6:>8.1f} | {1 / seconds:>9,.0f} | "
            f"{seconds / base:>8.1f}x |"
        )


if __name__ == "__main__":
    main()
