"""Script engine behaviour: helpers, filter, fan-out, MongoDB types, limits API."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time

import pytest
from bson import Binary, Decimal128, Int64, ObjectId

from mstream.errors import ConfigError, ScriptError
from mstream.udf import PythonUDF, ScriptLimits, compile_script, load_scripts

pytestmark = pytest.mark.udf


def run_expr(expr: str, data: object = None) -> object:
    """Evaluate a Lua expression in a script and return the resulting data."""
    script = compile_script(
        f"function transform(data, attributes) return result({{v = {expr}}}, attributes) end",
        "expr.lua",
    )
    [(out, _)] = script.transform({"x": data}, {})
    return out.get("v")


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("alice@example.com", "a***@example.com"),
        ("a@example.com", "*@example.com"),
        ("@example.com", "*@example.com"),
        ("no-at-sign", "no-at-sign"),
        ("élodie@example.fr", "é***@example.fr"),
        ("a.b@c@d", "a***@c@d"),
    ],
)
def test_mask_email(email: str, masked: str) -> None:
    assert run_expr("mask_email(data.x)", email) == masked


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+1 555-123-4567", "+* ***-***-4567"),
        ("5551234567", "******4567"),
        ("1234", "1234"),
        ("(030) 12", "(*30) 12"),
        ("(03) 12", "(03) 12"),
        ("", ""),
    ],
)
def test_mask_phone(phone: str, masked: str) -> None:
    assert run_expr("mask_phone(data.x)", phone) == masked


def test_mask_phone_integer_and_non_string() -> None:
    assert run_expr("mask_phone(data.x)", 5551234567) == "******4567"
    assert run_expr("mask_phone(data.x)", True) is True


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("1990-05-17", "1990-01-01"),
        ("1990-05-17T10:00:00Z", "1990-01-01T00:00:00Z"),
        ("1990-05-17T10:00:00.123+00:00", "1990-01-01T00:00:00Z"),
        ("2000-01-01T01:00:00+05:00", "1999-01-01T00:00:00Z"),  # the UTC instant's year
        ("1990-05-17T10:00:00", "1990-01-01T00:00:00"),
        ("1990-13-45", "1990-13-45"),
        ("not a date", "not a date"),
    ],
)
def test_mask_year_only_strings(value: str, masked: str) -> None:
    assert run_expr("mask_year_only(data.x)", value) == masked


def test_mask_year_only_extended_json_dates() -> None:
    # relaxed form: {"$date": "ISO"} stays that form and converts back to a datetime
    out = run_expr("mask_year_only(data.x)", dt.datetime(1990, 5, 17, 10, 0))
    assert out == dt.datetime(1990, 1, 1)
    script = compile_script(
        """function transform(d, a)
             local long = {["$date"] = {["$numberLong"] = "642902400000"}}
             return result({iso = mask_year_only({["$date"] = "1990-05-17T10:00:00Z"}),
                            canon = mask_year_only(long),
                            raw = mask_year_only(long)["$date"]["$numberLong"]}, a)
           end""",
        "dates.lua",
    )
    [(out, _)] = script.transform({}, {})
    assert out["iso"] == dt.datetime(1990, 1, 1)
    assert out["canon"] == dt.datetime(1990, 1, 1)
    assert out["raw"] == "631152000000"
    # a date before 1970 arrives as $numberLong and keeps that form
    assert run_expr("mask_year_only(data.x)", dt.datetime(1960, 7, 1)) == dt.datetime(1960, 1, 1)
    assert run_expr("data.x['$date']['$numberLong']", dt.datetime(1960, 1, 1)) == "-315619200000"


def test_hash_sha256() -> None:
    def sha(s: str) -> str:
        return hashlib.sha256(s.encode()).hexdigest()

    assert run_expr("hash_sha256(data.x)", "abc") == sha("abc")
    assert run_expr("hash_sha256(data.x)", 42) == sha("42")
    assert run_expr("hash_sha256(data.x)", 1.5) == sha("1.5")
    assert run_expr("hash_sha256(data.x)", True) == sha("true")
    assert run_expr("hash_sha256(data.x)", "é") == sha("é")
    oid = ObjectId("65a1b2c3d4e5f60718293a4b")
    assert run_expr("hash_sha256(data.x)", oid) == sha('{"$oid":"65a1b2c3d4e5f60718293a4b"}')
    assert run_expr("hash_sha256(data.x)", {"b": 1, "a": [1, None]}) == sha('{"a":[1,null],"b":1}')
    with pytest.raises(ScriptError, match="hash_sha256"):
        run_expr("hash_sha256(nil)")


def test_timestamp_ms() -> None:
    before = time.time_ns() // 1_000_000
    value = run_expr("timestamp_ms()")
    after = time.time_ns() // 1_000_000
    assert isinstance(value, int)
    assert before <= value <= after


def test_filter_returns_empty_list() -> None:
    script = compile_script(
        "function transform(d, a) if d.keep then return result(d, a) end end", "f.lua"
    )
    assert script.transform({"keep": False}, {}) == []
    assert script.transform({"keep": True}, {"k": "v"}) == [({"keep": True}, {"k": "v"})]
    empty = compile_script("function transform(d, a) return {} end", "e.lua")
    assert empty.transform({"x": 1}, {}) == []


def test_fan_out_and_default_attributes() -> None:
    script = compile_script(
        """function transform(d, a)
             local out = {}
             for i, v in ipairs(d.items) do out[i] = result({n = v}, i == 2 and {i = i} or nil) end
             return out
           end""",
        "fan.lua",
    )
    assert script.transform({"items": [1, 2, 3]}, {"src": "x"}) == [
        ({"n": 1}, {"src": "x"}),
        ({"n": 2}, {"i": "2"}),
        ({"n": 3}, {"src": "x"}),
    ]


def test_attributes_are_not_mutated_and_values_are_stringified() -> None:
    script = compile_script(
        "function transform(d, a) a.n = 1.5; a.b = true; a.k = nil; return result(d, a) end",
        "attrs.lua",
    )
    attrs = {"k": "v"}
    assert script.transform({}, attrs) == [({}, {"n": "1.5", "b": "true"})]
    assert attrs == {"k": "v"}


def test_mongodb_types_round_trip() -> None:
    doc = {
        "_id": ObjectId("65a1b2c3d4e5f60718293a4b"),
        "at": dt.datetime(2024, 1, 2, 3, 4, 5, 123000),
        "old": dt.datetime(1900, 1, 1),
        "price": Decimal128("19.99"),
        "count": Int64(2**40),
        "blob": Binary(b"\x00\x01\xff", 0),
        "nested": {"ids": [ObjectId("65a1b2c3d4e5f60718293a4c")], "none": None},
        "empty_list": [],
        "empty_obj": {},
        "text": "héllo",
        "f": 1.0,
        "big": 2**62,
    }
    script = compile_script(
        """function transform(d, a)
             local seen = {
               oid = d._id["$oid"], date = d.at["$date"], dec = d.price["$numberDecimal"],
               count = d.count, old = d.old["$date"]["$numberLong"],
               blob = d.blob["$binary"].base64, null_is_null = d.nested.none == null,
               empty_is_array = is_array(d.empty_list), f_type = math.type(d.f)
             }
             return {result(d, a), result(seen, a)}
           end""",
        "types.lua",
    )
    [(back, _), (seen, _)] = script.transform(doc, {})
    # Binary subtype 0 comes back as bytes, exactly as the bson decoder returns it
    assert back == {**doc, "blob": b"\x00\x01\xff"}
    assert list(back) == list(doc)  # key order of the input is kept
    assert seen == {
        "oid": "65a1b2c3d4e5f60718293a4b",
        "date": "2024-01-02T03:04:05.123Z",
        "dec": "19.99",
        "count": 2**40,
        "old": "-2208988800000",
        "blob": "AAH/",
        "null_is_null": True,
        "empty_is_array": True,
        "f_type": "float",
    }


def test_arrays_and_objects_from_scripts() -> None:
    script = compile_script(
        """function transform(d, a)
             return result({list = {1, 2, null}, obj = {}, arr = array(), tagged = array({"x"}),
                            nested = {{a = 1}, {b = array()}}}, a)
           end""",
        "shapes.lua",
    )
    [(out, _)] = script.transform({}, {})
    assert out == {
        "arr": [],
        "list": [1, 2, None],
        "nested": [{"a": 1}, {"b": []}],
        "obj": {},
        "tagged": ["x"],
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return d", "must return result"),
        ("return 42", "returned a number"),
        ("return {result(d, a), 5}", "item 2"),
        ("return result({f = print}, a)", "function cannot be part"),
        ("return result({[1] = 1, [3] = 3}, a)", "without holes"),
        ("return result({1, x = 2}, a)", "mixes|without holes"),
        ("return result(d, {k = {}})", "attribute 'k'"),
        ("local t = {} t.self = t return result(t, a)", "nested deeper"),
        ("return result({b = string.char(255)}, a)", "UTF-8"),
        ("return result(nil, a)", "data is nil"),
        ("return result({x = {['$date'] = 'garbage'}}, a)", "Extended JSON"),
    ],
)
def test_invalid_return_values(body: str, message: str) -> None:
    script = compile_script(f"function transform(d, a)\n  {body}\nend", "ret.lua")
    with pytest.raises(ScriptError, match=message) as info:
        script.transform({"x": 1}, {})
    assert info.value.script == "ret.lua"
    assert script.transform is not None
    ok = compile_script("function transform(d, a) return result(d, a) end", "ok.lua")
    assert ok.transform({"x": 1}, {}) == [({"x": 1}, {})]


def test_runtime_error_has_line_and_script_stays_usable() -> None:
    script = compile_script(
        "function transform(d, a)\n  if d.fail then\n    error('boom: ' .. d.fail)\n  end\n"
        "  return result(d, a)\nend",
        "err.lua",
    )
    with pytest.raises(ScriptError) as info:
        script.transform({"fail": "bad input"}, {})
    assert info.value.line == 3
    assert "boom: bad input" in str(info.value)
    assert str(info.value).startswith("err.lua:3: ")
    assert script.transform({"fail": False}, {}) == [({"fail": False}, {})]


def test_syntax_error_has_line() -> None:
    with pytest.raises(ScriptError, match="syntax error") as info:
        compile_script("function transform(d, a)\n  return result(d a)\nend", "syn.lua")
    assert info.value.line == 2


def test_missing_transform() -> None:
    with pytest.raises(ScriptError, match="transform"):
        compile_script("local x = 1", "none.lua")


def test_globals_are_locked_after_loading() -> None:
    script = compile_script(
        "limit = 3\nfunction transform(d, a)\n  total = limit + 1\n  return result(d, a)\nend",
        "g.lua",
    )
    with pytest.raises(ScriptError, match="declare it local") as info:
        script.transform({}, {})
    assert info.value.line == 3


def test_scripts_are_isolated_from_each_other() -> None:
    a = compile_script("string.upper = nil\nfunction transform(d, a) return nil end", "a.lua")
    b = compile_script("function transform(d, a) return result(string.upper(d), a) end", "b.lua")
    a.transform({}, {})
    assert b.transform("x", {}) == [("X", {})]


def test_concurrent_calls_are_serialised() -> None:
    script = compile_script(
        "function transform(d, a) local s = 0 for i = 1, d.n do s = s + i end "
        "return result(s, a) end",
        "sum.lua",
    )
    results: list[object] = []

    def work() -> None:
        for _ in range(50):
            results.append(script.transform({"n": 1000}, {})[0][0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [500500] * 200


def test_limits_validation() -> None:
    with pytest.raises(ValueError):
        ScriptLimits(time_ms=0)
    with pytest.raises(ValueError):
        ScriptLimits(max_instructions=-1)
    unlimited = ScriptLimits(max_instructions=None, time_ms=None)
    script = compile_script(
        "function transform(d, a) local s = 0 for i = 1, 2e7 do s = s + 1 end "
        "return result(s, a) end",
        "big.lua",
        limits=unlimited,
    )
    assert script.transform({}, {}) == [(20_000_000, {})]


def test_load_scripts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.lua").write_text("function transform(d, a) return result(d, a) end")
    (tmp_path / "b.lua").write_text("function transform(d, a) return nil end")
    (tmp_path / "notes.txt").write_text("not a script")
    lib = load_scripts(tmp_path)
    assert lib.names == ["a.lua", "b.lua"]
    assert lib["b"].transform({}, {}) == []
    assert "a.lua" in lib and "a" in lib and "c.lua" not in lib
    with pytest.raises(ConfigError) as info:
        lib.get("missing.lua")
    assert str(tmp_path) in str(info.value)
    assert "a.lua, b.lua" in str(info.value)


def test_load_scripts_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="not a folder"):
        load_scripts(tmp_path / "nope")
    (tmp_path / "bad.lua").write_text("function transform(d, a)\n  return = 1\nend")
    with pytest.raises(ConfigError, match=r"bad\.lua:2: syntax error"):
        load_scripts(tmp_path)


def test_python_udf_contract() -> None:
    def fn(data, attributes):  # type: ignore[no-untyped-def]
        if data.get("drop"):
            return None
        if data.get("many"):
            return [({"i": i}, None) for i in range(2)]
        return {**data, "ok": True}, {**attributes, "by": "py"}

    udf = PythonUDF(fn)
    assert udf.transform({"drop": True}, {}) == []
    assert udf.transform({"many": True}, {"k": "v"}) == [
        ({"i": 0}, {"k": "v"}),
        ({"i": 1}, {"k": "v"}),
    ]
    assert udf.transform({"x": 1}, {}) == [({"x": 1, "ok": True}, {"by": "py"})]
    with pytest.raises(ScriptError, match="ZeroDivisionError"):
        PythonUDF(lambda d, a: 1 / 0).transform({}, {})
    with pytest.raises(ScriptError, match="invalid return value"):
        PythonUDF(lambda d, a: {"x": 1}).transform({}, {})  # type: ignore[arg-type,return-value]
