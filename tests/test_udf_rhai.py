"""The Rhai engine (``mstream_rhai``): the original's example scripts on its sample data,
its script contract and helpers, data conversion, sandbox limits, and a connector.

Skipped when the extension is not installed; a failure instead with
``MSTREAM_REQUIRE_SERVERS=1`` (CI builds the extension and must prove it works).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from mstream.config import parse_config
from mstream.errors import ConfigError, ScriptError
from mstream.providers.udf import RhaiEngineSchema, compile_resource
from mstream.runtime import Connector
from mstream.stores import Stores
from mstream.udf import RhaiLimits, RhaiScript, compile_rhai, rhai_available
from mstream.udf.rhai_engine import INSTALL_HINT
from tests.servers.fixtures import REQUIRE_ENV, servers_required

pytestmark = [pytest.mark.udf, pytest.mark.timeout(120)]

UPSTREAM = Path(__file__).resolve().parent / "data" / "upstream_rhai"
SCRIPTS = UPSTREAM / "scripts"
#: Every hostile call must return within this many seconds.
BOUND_S = 5.0


@pytest.fixture(autouse=True)
def _rhai_extension() -> None:
    if not rhai_available():
        if servers_required():
            pytest.fail(f"{INSTALL_HINT} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(INSTALL_HINT)


def sample(name: str) -> dict[str, Any]:
    return json.loads((UPSTREAM / "sample_data" / name).read_text())  # type: ignore[no-any-return]


def upstream(name: str) -> Any:
    return compile_resource(SCRIPTS, name, RhaiLimits(), kind="rhai")


def script(body: str, name: str = "t.rhai", **limits: Any) -> RhaiScript:
    return compile_rhai(body, name, limits=RhaiLimits(**limits))


# -- the original's examples ---------------------------------------------------------------


def test_upstream_json_transform_on_the_user_event() -> None:
    user = sample("user_event.json")
    before = copy.deepcopy(user)
    [(data, attrs)] = upstream("json_transform").transform(user, {"source": "users"})
    assert user == before  # the input is not modified
    assert data["tier"] == "gold" and data["discount_percentage"] == 15  # 5500 points
    assert data["free_shipping"] is True and data["priority_support"] is True
    assert data["exclusive_access"] is False
    assert data["full_name"] == "John Doe"
    assert data["email"] == "john.doe@example.com"
    assert "password" not in data and "ssn" not in data and "credit_card" not in data
    assert data["processed_at"] == "2024-01-01T00:00:00Z" and data["version"] == "1.0"
    assert data["loyalty_points"] == 5500 and data["country"] == "USA"
    assert attrs == {"source": "users", "processor": "json_transform", "loyalty_tier": "gold"}
    # input keys keep their order; new keys follow sorted by name
    assert list(data)[:3] == ["id", "first_name", "last_name"]
    assert list(data)[-3:] == ["processed_at", "tier", "version"]


@pytest.mark.parametrize(
    ("points", "tier", "discount"),
    [(10_000, "platinum", 20), (1000, "silver", 10), (100, "bronze", 5), (99, "member", 0)],
)
def test_upstream_json_transform_tiers(points: int, tier: str, discount: int) -> None:
    [(data, attrs)] = upstream("json_transform.rhai").transform({"loyalty_points": points}, {})
    assert (data["tier"], data["discount_percentage"], attrs["loyalty_tier"]) == (
        tier,
        discount,
        tier,
    )
    assert data["exclusive_access"] is (points >= 10_000)


def test_upstream_attribute_enrichment_on_the_user_event() -> None:
    user = sample("user_event.json")
    [(data, attrs)] = upstream("attribute_enrichment").transform(user, {"k": "v"})
    assert data == user  # passed through unchanged
    assert attrs == {
        "k": "v",
        "field_count": "10",
        "data_type": "map",
        "processed_at": "2024-01-01T00:00:00Z",
        "quality": "standard",
    }
    [(_, attrs)] = upstream("attribute_enrichment").transform({"a": 1}, {})
    assert attrs["quality"] == "minimal"
    [(_, attrs)] = upstream("attribute_enrichment").transform("text", {})
    assert (attrs["field_count"], attrs["data_type"], attrs["quality"]) == ("0", "string", "empty")


def test_upstream_data_filter_reshapes_the_product_event() -> None:
    [(data, attrs)] = upstream("data_filter").transform(sample("product_event.json"), {})
    assert data == {
        "id": "prod_456",
        "name": "Wireless Headphones",
        "category": "ELECTRONICS",
        "price": 79.99,
        "department": "technology",
        "discounted_price": pytest.approx(67.9915),
        "in_stock": True,
        "price_tier": "premium",
        "savings": pytest.approx(11.9985),
        "stock_level": "medium",
    }
    assert attrs == {"filtered": "false", "price_tier": "premium", "department": "technology"}


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"active": False}, "inactive_product"), ({"price": 0}, "invalid_price")],
)
def test_upstream_data_filter_marks_filtered_products(change: dict[str, Any], reason: str) -> None:
    product = {**sample("product_event.json"), **change}
    # the original returns an empty object for filtered items (not a dropped event)
    assert upstream("data_filter").transform(product, {}) == [
        ({}, {"filtered": "true", "filter_reason": reason})
    ]


def test_upstream_readme_scripts_strip_id_and_anonymize() -> None:
    strip_id = script(
        'fn transform(doc, attributes) {\n doc.remove("_id");\n result(doc, attributes)\n}'
    )
    oid = ObjectId()
    assert strip_id.transform({"_id": oid, "x": 1}, {"a": "b"}) == [({"x": 1}, {"a": "b"})]
    anonymize = script(
        "fn transform(data, attributes) {\n"
        '    if "email" in data {\n'
        "        data.email = mask_email(data.email);\n"
        "    }\n"
        "    data.processed_at = timestamp_ms();\n"
        "    result(data, attributes)\n"
        "}\n"
    )
    before = int(time.time() * 1000)
    [(data, _)] = anonymize.transform({"email": "john@example.com"}, {})
    assert data["email"] == "j***@example.com"
    assert before <= data["processed_at"] <= int(time.time() * 1000) + 1


# -- the contract --------------------------------------------------------------------------


def test_result_with_and_without_attributes() -> None:
    keep = script("fn transform(d, a) { result(d) }")
    attrs = {"k": "v"}
    out = keep.transform({"x": 1}, attrs)
    assert out == [({"x": 1}, {"k": "v"})]
    assert out[0][1] is not attrs  # a copy
    replace = script('fn transform(d, a) { result(d, #{n: 5, ok: true, s: "x"}) }')
    assert replace.transform({}, attrs) == [({}, {"n": "5", "ok": "true", "s": "x"})]


def test_fan_out_and_filter() -> None:
    split = script(
        "fn transform(order, attributes) {\n"
        "    let out = [];\n"
        "    for item in order.items {\n"
        "        out.push(result(#{order: order.id, sku: item.sku}, #{sku: item.sku}));\n"
        "    }\n"
        "    out\n"
        "}\n"
    )
    order = {"id": 7, "items": [{"sku": "a"}, {"sku": "b"}]}
    assert split.transform(order, {}) == [
        ({"order": 7, "sku": "a"}, {"sku": "a"}),
        ({"order": 7, "sku": "b"}, {"sku": "b"}),
    ]
    assert split.transform({"id": 8, "items": []}, {}) == []  # [] drops
    drop = script("fn transform(d, a) { if d.skip { return (); } result(d, a) }")
    assert drop.transform({"skip": True}, {}) == []
    assert drop.transform({"skip": False}, {}) == [({"skip": False}, {})]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("42", "transform must return result(data, attributes), an array of result(...)"),
        ("[result(d), 1]", "item 1 is a i64"),
        ("result(result(d))", "result(...) cannot be nested inside an event"),
        ("result(|x| x)", "cannot be part of an event"),
    ],
)
def test_invalid_return_values(body: str, message: str) -> None:
    s = script(f"fn transform(d, a) {{ {body} }}")
    with pytest.raises(ScriptError, match="invalid return value") as info:
        s.transform({"x": 1}, {})
    assert message in str(info.value)
    assert str(info.value).startswith("t.rhai: ")


def test_the_transform_function_is_required() -> None:
    for body in ("fn other(d, a) { result(d) }", "fn transform(d) { result(d) }"):
        with pytest.raises(ScriptError, match=r"fn transform\(data, attributes\)"):
            script(body)


# -- helpers -------------------------------------------------------------------------------


def test_helpers_behave_like_the_originals() -> None:
    s = script(
        "fn transform(d, a) { result(#{\n"
        "  h: hash_sha256(d.s), n: hash_sha256(42),\n"
        '  e: mask_email(d.email), e1: mask_email("a@x.org"), e0: mask_email("nope"),\n'
        '  p: mask_phone(d.phone), p4: mask_phone("1234"),\n'
        '  y: mask_year_only(d.iso), yd: mask_year_only("1990-05-17"),\n'
        '  yj: mask_year_only(d.born), yx: mask_year_only("soon"),\n'
        "}) }"
    )
    born = datetime.datetime(1990, 5, 17, 10, 30)
    [(out, _)] = s.transform(
        {
            "s": "abc",
            "email": "alice@example.com",
            "phone": "+1 555-123-4567",
            "iso": "1990-05-17T10:00:00+02:00",
            "born": born,
        },
        {},
    )
    assert out == {
        "h": hashlib.sha256(b"abc").hexdigest(),
        "n": hashlib.sha256(b"42").hexdigest(),
        "e": "a***@example.com",
        "e1": "*@x.org",
        "e0": "nope",
        "p": "***********4567",
        "p4": "1234",
        "y": "1990-01-01T00:00:00+00:00",
        "yd": "1990-01-01",
        "yj": datetime.datetime(1990, 1, 1),  # EJSON date in, bson date out
        "yx": "soon",
    }


def test_collection_helpers() -> None:
    s = script(
        "fn transform(d, a) { result(#{\n"
        '  total: sum(d.items, |i| i.qty), n: sum([1, 2]), mean: avg(pluck(d.items, "qty")),\n'
        "  cheapest: min(d.items, |i| i.price).sku, top: max([3, 9, 4]),\n"
        "  by_kind: count_by(d.items, |i| i.kind), groups: group_by(d.items, |i| i.kind).len(),\n"
        '  kinds: unique(pluck(d.items, "kind")), flat: flatten([[1], [2, 3], 4]),\n'
        '  picked: pick(d.items[0], ["sku"]), rest: omit(d.items[0], ["sku", "price"]),\n'
        "}) }"
    )
    items = [
        {"sku": "a", "qty": 2, "price": 5.0, "kind": "x"},
        {"sku": "b", "qty": 4, "price": 1.5, "kind": "y"},
        {"sku": "c", "qty": 6, "price": 9.0, "kind": "x"},
    ]
    [(out, _)] = s.transform({"items": items}, {})
    assert out == {
        "total": 12,
        "n": 3,
        "mean": 4.0,
        "cheapest": "b",
        "top": 9,
        "by_kind": {"x": 2, "y": 1},
        "groups": 2,
        "kinds": ["x", "y"],
        "flat": [1, 2, 3, 4],
        "picked": {"sku": "a"},
        "rest": {"qty": 2, "kind": "x"},
    }


def test_print_goes_to_the_script_logger(caplog: pytest.LogCaptureFixture) -> None:
    s = script('fn transform(d, a) { print("seen " + d.n); debug("dbg"); result(d) }', "p.rhai")
    with caplog.at_level(logging.INFO, logger="mstream.udf"):
        s.transform({"n": 3}, {})
    logged = [(r.name, r.getMessage()) for r in caplog.records]
    assert ("mstream.udf.p_rhai", "seen 3") in logged
    assert ("mstream.udf.p_rhai", '"dbg"') in logged


# -- data conversion -----------------------------------------------------------------------


def test_values_cross_both_ways() -> None:
    echo = script("fn transform(d, a) { result(d) }")
    doc = {
        "s": "é✓",
        "i": -(2**63),
        "big": 2**63 - 1,
        "f": 1.5,
        "t": True,
        "n": None,
        "l": [1, [2, {"x": []}], {}],
        "o": {"z": 1, "a": 2},
        "oid": ObjectId("65a1b2c3d4e5f60718293a4b"),
        "at": datetime.datetime(2024, 1, 2, 3, 4, 5, 123000),
    }
    [(out, _)] = echo.transform(doc, {})
    assert out == doc and list(out["o"]) == ["z", "a"]
    assert echo.transform((1, "x"), {}) == [([1, "x"], {})]
    types = script("fn transform(d, a) { result(#{oid: d.oid, at: d.at, f: type_of(d.f)}) }")
    [(out, _)] = types.transform({"oid": doc["oid"], "at": doc["at"], "f": 2.0}, {})
    assert out == {"oid": doc["oid"], "at": doc["at"], "f": "f64"}
    # the script sees the original's Extended JSON forms
    seen = script(
        'fn transform(d, a) { result(#{oid: d.oid["$oid"], ms: d.at["$date"]["$numberLong"]}) }'
    )
    [(out, _)] = seen.transform({"oid": doc["oid"], "at": doc["at"]}, {})
    assert out == {"oid": "65a1b2c3d4e5f60718293a4b", "ms": "1704164645123"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2**63, "does not fit in a Rhai integer (64-bit signed)"),
        (-(2**63) - 1, "does not fit in a Rhai integer"),
        ({1: "x"}, "object keys must be strings"),
        ({"s": {1, 2}}, "cannot pass the event to the script"),
    ],
)
def test_values_that_cannot_cross_are_errors_not_silent_floats(value: Any, message: str) -> None:
    with pytest.raises(ScriptError, match="cannot pass the event to the script") as info:
        script("fn transform(d, a) { result(d) }").transform({"v": value}, {})
    assert message in str(info.value)


# -- errors and limits ---------------------------------------------------------------------

HEALTHY = "if d.ok { return result(#{ok: true}); }\n"


def hostile(body: str, **limits: Any) -> RhaiScript:
    return script(f"fn transform(d, a) {{\n  {HEALTHY}  {body}\n}}\n", "hostile.rhai", **limits)


def assert_fails(s: RhaiScript, pattern: str) -> ScriptError:
    start = time.perf_counter()
    with pytest.raises(ScriptError, match=pattern) as info:
        s.transform({"ok": False}, {})
    assert time.perf_counter() - start < BOUND_S
    assert s.transform({"ok": True}, {}) == [({"ok": True}, {})]  # still usable
    assert info.value.script == "hostile.rhai"
    return info.value


def test_syntax_errors_have_line_and_column() -> None:
    with pytest.raises(ScriptError) as info:
        script("fn transform(d, a) {\n  let x = ;\n}\n", "broken.rhai")
    err = info.value
    assert (err.script, err.line, err.column) == ("broken.rhai", 2, 11)
    assert str(err) == "broken.rhai:2:11: syntax error: Unexpected ';'"


def test_runtime_errors_have_line_column_and_function() -> None:
    s = script(
        "fn check(n) {\n  if n > 2 { throw `too big: ${n}`; }\n  n\n}\n"
        "fn transform(d, a) {\n  d.n = check(d.n);\n  d.m = d.missing.x;\n  result(d)\n}\n",
        "picky.rhai",
    )
    with pytest.raises(ScriptError) as info:
        s.transform({"n": 3}, {})
    assert str(info.value).startswith("picky.rhai:2:14: Runtime error: too big: 3")
    assert "(in function 'check')" in str(info.value)
    assert info.value.line == 2
    with pytest.raises(ScriptError, match=r"^picky\.rhai:7:") as info:
        s.transform({"n": 1}, {})
    assert s.transform({"n": 1, "missing": {"x": 5}}, {}) == [
        ({"n": 1, "missing": {"x": 5}, "m": 5}, {})
    ]


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ('eval("1")', "syntax error.*eval"),
        ('import "os" as os;', "syntax error.*import"),
    ],
)
def test_no_code_loading(body: str, pattern: str) -> None:
    with pytest.raises(ScriptError, match=pattern):
        hostile(body)


def test_sleep_cannot_outlast_the_time_limit() -> None:
    assert_fails(hostile("sleep(10);"), "sleep\\(\\) is not available")
    assert_fails(hostile("sleep(10.0);"), "sleep\\(\\) is not available")


def test_infinite_loop_hits_the_operations_limit() -> None:
    err = assert_fails(hostile("loop {}", time_ms=60_000), "operations limit exceeded")
    assert "more than 1000000 operations" in str(err)


def test_infinite_loop_hits_the_time_limit() -> None:
    s = hostile("loop {}", max_operations=0, time_ms=50)
    start = time.perf_counter()
    assert_fails(s, "time limit exceeded: ran longer than 50 ms")
    assert time.perf_counter() - start < 1.0


def test_limits_cannot_be_caught() -> None:
    assert_fails(hostile("try { loop {} } catch { }\n result(d)"), "operations limit exceeded")
    s = hostile("try { loop {} } catch { }\n result(d)", max_operations=0, time_ms=50)
    assert_fails(s, "time limit exceeded")


def test_deep_recursion_hits_the_call_depth_limit() -> None:
    s = script(
        f"fn down(n) {{ down(n + 1) }}\nfn transform(d, a) {{\n  {HEALTHY}  down(0)\n}}\n",
        "hostile.rhai",
    )
    assert_fails(s, r"call depth limit exceeded: more than 64 nested function calls")


@pytest.mark.parametrize(
    ("body", "pattern", "limits"),
    [
        ('let s = "x"; loop { s += s; }', "string size limit exceeded: .* 16777216 bytes", {}),
        # Rhai measures the whole array at every push: a smaller limit keeps the case quick
        (
            "let v = []; loop { v.push(1); }",
            "array size limit exceeded: more than 10000",
            {"max_array_size": 10_000},
        ),
        ("let v = [[]]; loop { v = [v, v]; }", "array size limit exceeded", {}),
        (
            "let m = #{}; let i = 0; loop { m[`k${i}`] = i; if m.len() < 0 { break; } i += 1; }",
            "map size limit exceeded: more than 5000 properties",
            {"max_map_size": 5000},
        ),
        # Rhai measures a map grown by index assignment only when it is passed to a
        # function: the memory limit stops it
        ("let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; }", "memory limit exceeded", {}),
        ('let s = "x"; let v = []; loop { v.push(s); s += s; }', "size limit exceeded", {}),
    ],
)
def test_huge_values_hit_the_size_limits(body: str, pattern: str, limits: dict[str, int]) -> None:
    assert_fails(hostile(body, max_operations=0, time_ms=10_000, **limits), pattern)


def test_size_limits_are_configurable() -> None:
    s = hostile('let s = "x"; loop { s += s; }', max_string_size=1024)
    assert_fails(s, "longer than 1024 bytes")
    assert_fails(hostile("let v = []; v.pad(11, 0);", max_array_size=10), "more than 10")
    assert_fails(hostile("let m = #{}; m.a = 1; m.b = 2; m.c = 3;", max_map_size=2), "more than 2")
    with pytest.raises(ScriptError, match="object map literal exceeds the maximum limit"):
        hostile("let m = #{a: 1, b: 2, c: 3};", max_map_size=2)  # found when compiling


def test_memory_limit_is_configurable_and_released_between_calls() -> None:
    s = hostile("let m = #{}; let i = 0; loop { m[`k${i}`] = `${i}`; i += 1; }", memory_mb=2)
    err = assert_fails(s, "memory limit exceeded: the call allocated more than 2 MB")
    assert err.line is None  # Rhai reports no position for limits
    for _ in range(3):  # what a failed call held was freed: the next one fails the same way
        assert_fails(s, "memory limit exceeded")
    big = script("fn transform(d, a) { d.copy = d.items; result(d) }", memory_mb=2)
    [(out, _)] = big.transform({"items": ["x" * 100] * 1000}, {})
    assert len(out["copy"]) == 1000


def test_deep_expressions_hit_the_expression_depth_limit() -> None:
    nested = "(" * 40 + "1" + ")" * 40
    with pytest.raises(ScriptError, match="syntax error: Expression exceeds maximum complexity"):
        hostile(f"let x = {nested};")
    hostile(f"let x = {nested};", max_expr_depth=100)


def test_the_gil_is_released_while_a_script_runs() -> None:
    s = hostile("loop {}", max_operations=0, time_ms=300)
    done = threading.Event()
    ticks = 0

    def run() -> None:
        with pytest.raises(ScriptError):
            s.transform({"ok": False}, {})
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    thread.join()
    assert ticks > 10  # the main thread kept running Python code meanwhile (0 if held)


def test_engine_defaults_live_in_one_place() -> None:
    loaded = RhaiEngineSchema().load({"kind": "rhai"})
    assert loaded == {"kind": "rhai", **RhaiLimits().__dict__}


# -- through the udf provider and a connector ----------------------------------------------


def step(name: str, resource: str) -> dict[str, Any]:
    return {"service_name": name, "resource": resource, "output_encoding": "json"}


def run(tmp_path: Path, udf: dict[str, Any], resource: str, docs: list[Any]) -> Any:
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    cfg = parse_config(
        {
            "services": [
                {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
                {"name": "udf-rhai", "provider": "udf", **udf},
            ],
            "connectors": [
                {
                    "name": "job",
                    "source": step("files", "in.jsonl"),
                    "middlewares": [step("udf-rhai", resource)],
                    "sinks": [step("files", "out.jsonl")],
                    "dead_letter": {"service_name": "files", "resource": "dead.jsonl"},
                }
            ],
        },
        "test.toml",
        {},
    )
    connector = Connector(
        cfg.connectors[0], {s.name: s for s in cfg.services}, Stores.in_memory().checkpoints
    )
    connector.start()
    assert connector.wait(60), "connector did not finish"

    def read(name: str) -> list[Any]:
        path = tmp_path / name
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    return connector, read("out.jsonl"), read("dead.jsonl")


def test_upstream_scripts_in_a_connector(tmp_path: Path) -> None:
    users = [{**sample("user_event.json"), "loyalty_points": p} for p in (50, 500, 5000, 50_000)]
    udf = {"engine": {"kind": "rhai"}, "script_path": str(SCRIPTS)}
    connector, out, dead = run(tmp_path, udf, "json_transform", users)  # suffix optional
    assert connector.state == "completed", connector.reason
    assert [u["tier"] for u in out] == ["member", "bronze", "gold", "platinum"]
    assert all("password" not in u and u["full_name"] == "John Doe" for u in out)
    assert dead == [] and connector.counters.events_out == 4


def test_inline_rhai_sources_filter_fan_out_and_dead_letter_in_a_connector(
    tmp_path: Path,
) -> None:
    source = (
        "fn transform(d, a) {\n"
        "    if d.n == 0 { return (); }\n"
        '    if d.n == 3 { throw "three"; }\n'
        "    let out = [];\n"
        "    for i in 0..d.n { out.push(result(#{n: d.n, i: i})); }\n"
        "    out\n"
        "}\n"
    )
    udf = {"engine": {"kind": "rhai"}, "sources": [{"filename": "split.rhai", "content": source}]}
    connector, out, dead = run(tmp_path, udf, "split.rhai", [{"n": n} for n in range(5)])
    assert connector.state == "completed", connector.reason
    assert out == [{"n": n, "i": i} for n in (1, 2, 4) for i in range(n)]
    assert [(d["payload"], d["stage"]) for d in dead] == [({"n": 3}, "middleware")]
    assert dead[0]["reason"] == "split.rhai:3:19: Runtime error: three"
    snap = connector.counters.snapshot()
    assert snap["filtered"] == 1 and snap["dead_lettered"] == 1 and snap["events_out"] == 7


def test_limits_come_from_the_engine_table(tmp_path: Path) -> None:
    source = (
        "fn transform(d, a) { let x = 0; for i in 0..d.steps { x += i; } d.sum = x; result(d) }"
    )
    udf = {
        "engine": {"kind": "rhai", "max_operations": 10_000, "time_ms": 10_000},
        "sources": [{"filename": "busy.rhai", "content": source}],
    }
    connector, out, dead = run(tmp_path, udf, "busy", [{"steps": 10}, {"steps": 100_000}])
    assert connector.state == "completed", connector.reason
    assert out == [{"steps": 10, "sum": 45}]
    assert "operations limit exceeded: more than 10000 operations" in dead[0]["reason"]


def test_a_syntax_error_fails_the_start_with_file_line_and_column(tmp_path: Path) -> None:
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "broken.rhai").write_text("fn transform(d, a) {\n  result(d\n}\n")
    udf = {"engine": {"kind": "rhai"}, "script_path": str(folder)}
    connector, _, _ = run(tmp_path, udf, "broken", [{"n": 1}])
    assert connector.state == "failed"
    assert f"{folder}/broken.rhai:3:1: syntax error" in (connector.reason or "")
    with pytest.raises(ConfigError, match=r"not found in .* \(available: broken\.rhai\)"):
        compile_resource(folder, "nope", RhaiLimits(), kind="rhai")
