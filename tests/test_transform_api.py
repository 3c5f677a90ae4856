"""The transform playground over HTTP: run, validate, generate and run test cases."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.service import ServiceOptions

JSON = {"Content-Type": "application/json"}
MASK = """
function transform(data, attributes)
  data.email = mask_email(data.email)
  attributes.processed = "true"
  return result(data, attributes)
end
"""


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    data = tmp_path_factory.mktemp("data")
    config = parse_config({"system": {"data_dir": str(data)}}, "t.toml", {})
    with ServiceThread(config, ServiceOptions(api_port=0, data_dir=Path(data))) as svc:
        yield svc.url


def post(url: str, path: str, body: dict[str, Any], status: int = 200) -> Any:
    answer = requests.post(f"{url}{path}", data=json.dumps(body), headers=JSON, timeout=30)
    assert answer.status_code == status, answer.text
    return answer.json()


def test_run_masks_and_reports_attributes_and_time(url: str) -> None:
    body = {
        "script": MASK,
        "payload": '{"email": "john@example.com"}',
        "attributes": {"source": "playground"},
    }
    answer = post(url, "/transform/run", body)
    assert answer["message"] == "success" and answer["errors"] == []
    assert answer["item"] == {
        "document": {"email": "j***@example.com"},
        "attributes": {"source": "playground", "processed": "true"},
    }
    assert answer["duration_ms"] >= 0


def test_run_reports_the_failing_line_and_holds_the_sandbox_limits(url: str) -> None:
    failing = "function transform(data, attributes)\n  local x = nil\n  return x.y\nend"
    answer = post(url, "/transform/run", {"script": failing, "payload": {}})
    assert answer["message"] == "error" and answer["errors"][0]["line"] == 3
    began = time.monotonic()
    endless = "function transform(data, attributes)\n  while true do end\nend"
    stuck = post(url, "/transform/run", {"script": endless, "payload": {}})
    assert stuck["message"] == "error" and time.monotonic() - began < 10
    assert "limit" in stuck["errors"][0]["message"]


def test_validate_and_a_filtering_script(url: str) -> None:
    assert post(url, "/transform/validate", {"script": MASK})["valid"] is True
    broken = post(url, "/transform/validate", {"script": "function transform(\n  oops"})
    assert broken["valid"] is False and broken["errors"][0]["line"] is not None
    drop = "function transform(data, attributes) return nil end"
    answer = post(url, "/transform/run", {"script": drop, "payload": {"a": 1}})
    assert answer["message"] == "success" and answer["item"] is None and answer["items"] == []


def test_generated_cases_pass_then_a_changed_script_fails_them(url: str) -> None:
    sample = {"email": "john@example.com", "name": "John", "age": 30}
    generated = post(url, "/transform/test/generate", {"script": MASK, "sample_input": sample})
    assert generated["input_schema"]["properties"]["age"] == {"type": "integer"}
    names = [c["name"] for c in generated["cases"]]
    assert "sample as given" in names and "name is missing" in names and "age is null" in names
    null_email = next(c for c in generated["cases"] if c["name"] == "email is null")
    assert null_email["input"]["email"] is None and generated["errors"] == []
    cases = generated["cases"]
    ran = post(url, "/transform/test/run", {"script": MASK, "cases": cases})
    assert ran["summary"] == {"passed": len(cases), "failed": 0, "total": len(cases)}
    changed = MASK.replace("mask_email(data.email)", '"hidden"')
    failed = post(url, "/transform/test/run", {"script": changed, "cases": cases})
    assert failed["summary"]["failed"] >= 1
    first = next(r for r in failed["results"] if not r["passed"])
    assert first["failures"][0]["path"] == "email" and "hidden" in first["failures"][0]["message"]


def test_assertion_types_and_strict_output(url: str) -> None:
    cases = [
        {
            "name": "typed",
            "input": {"email": "ann@example.com", "age": 30, "tags": ["x"]},
            "assertions": [
                {"path": "email", "assert_type": "contains", "expected_value": "***"},
                {"path": "age", "assert_type": "gte", "expected_value": 30},
                {"path": "age", "assert_type": "lt", "expected_value": 31},
                {"path": "tags", "assert_type": "contains", "expected_value": "x"},
                {"path": "tags", "assert_type": "type_matches", "expected_value": "array"},
            ],
        }
    ]
    assert (
        post(url, "/transform/test/run", {"script": MASK, "cases": cases})["summary"]["passed"] == 1
    )
    strict = post(
        url, "/transform/test/run", {"script": MASK, "cases": cases[:1], "strict_output": True}
    )
    assert strict["summary"]["failed"] == 0  # every output field is asserted
    cases[0]["assertions"] = cases[0]["assertions"][:1]
    strict = post(
        url, "/transform/test/run", {"script": MASK, "cases": cases, "strict_output": True}
    )
    fields = {f["path"] for f in strict["results"][0]["failures"]}
    assert fields == {"age", "tags"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/transform/run", {"payload": {}}, "script"),
        ("/transform/run", {"script": MASK}, "payload"),
        ("/transform/run", {"script": MASK, "payload": "{no"}, "payload"),
        ("/transform/run", {"script": MASK, "payload": {}, "engine": "js"}, "engine"),
        ("/transform/run", {"script": MASK, "payload": {}, "attributes": {"a": 1}}, "attributes"),
        ("/transform/run", {"script": MASK, "payload": {}, "extra": 1}, "extra"),
        ("/transform/test/generate", {"script": MASK, "sample_input": [1]}, "sample_input"),
        ("/transform/test/run", {"script": MASK, "cases": []}, "cases"),
        ("/transform/test/run", {"script": MASK, "cases": [{"name": "x"}]}, "cases[0].input"),
        (
            "/transform/test/run",
            {"script": MASK, "cases": [{"input": {}, "assertions": [{"assert_type": "near"}]}]},
            "cases[0].assertions[0].assert_type",
        ),
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    url: str, path: str, body: dict[str, Any], field: str
) -> None:
    answer = post(url, path, body, 400)
    assert field in answer["error"]["fields"]


def test_suites_and_workspaces_are_saved_listed_and_deleted(url: str) -> None:
    suite = {
        "name": "masking",
        "script": MASK,
        "cases": [
            {
                "name": "masks",
                "input": {"email": "ann@example.com"},
                "assertions": [
                    {"path": "email", "assert_type": "equals", "expected_value": "a***@example.com"}
                ],
            }
        ],
    }
    saved = post(url, "/test-suites", suite, 201)
    assert saved["id"] and saved["name"] == "masking"
    listed = requests.get(f"{url}/test-suites", timeout=10).json()["test_suites"]
    assert {"id": saved["id"], "name": "masking", "cases": 1} in listed
    replaced = post(url, "/test-suites", {**suite, "id": saved["id"], "name": "masking v2"}, 201)
    assert (
        requests.get(f"{url}/test-suites/{saved['id']}", timeout=10).json()["name"] == "masking v2"
    )
    assert replaced["id"] == saved["id"]

    workspace = post(
        url, "/workspaces", {"name": "PII", "input": '{"a": 1}', "test_suite_id": saved["id"]}, 201
    )
    changed = requests.put(
        f"{url}/workspaces/{workspace['id']}",
        data=json.dumps({"name": "PII 2"}),
        headers=JSON,
        timeout=10,
    )
    assert changed.status_code == 200 and changed.json() == {"name": "PII 2", "id": workspace["id"]}
    assert requests.get(f"{url}/workspaces", timeout=10).json()["workspaces"] == [
        {"id": workspace["id"], "name": "PII 2"}
    ]
    for path in (f"/workspaces/{workspace['id']}", f"/test-suites/{saved['id']}"):
        assert requests.delete(f"{url}{path}", timeout=10).status_code == 204
        assert requests.get(f"{url}{path}", timeout=10).status_code == 404
    assert post(url, "/workspaces", {"input": "x"}, 400)["error"]["fields"] == {"name": "required"}
    assert "colour" in post(url, "/test-suites", {"name": "x", "colour": 1}, 400)["error"]["fields"]
    put_missing = requests.put(
        f"{url}/workspaces/nope", data=json.dumps({"name": "x"}), headers=JSON, timeout=10
    )
    assert put_missing.status_code == 404


def test_mstream_test_runs_a_suite_file_with_an_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mstream.cli import main

    (tmp_path / "mask.lua").write_text(MASK)
    case = {"name": "masks", "input": {"email": "ann@example.com"}}
    good = {
        **case,
        "assertions": [
            {"path": "email", "assert_type": "equals", "expected_value": "a***@example.com"}
        ],
    }
    bad = {
        **case,
        "name": "wrong",
        "assertions": [{"path": "email", "assert_type": "equals", "expected_value": "x"}],
    }
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"name": "masking", "script_path": "mask.lua", "cases": [good]}))
    assert main(["test", str(suite)]) == 0
    assert "PASS  masks" in capsys.readouterr().out
    suite.write_text(
        json.dumps({"name": "masking", "script_path": "mask.lua", "cases": [good, bad]})
    )
    assert main(["test", str(suite)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  wrong" in out and 'expected "x"' in out and "1 passed, 1 failed" in out
    assert main(["test", str(tmp_path / "missing.json")]) == 2
    assert "cannot read the suite" in capsys.readouterr().err


def test_the_playground_runs_the_originals_rhai_scripts(url: str) -> None:
    from mstream.udf import rhai_available

    if not rhai_available():
        pytest.skip("the mstream_rhai extension is not installed (bash rust/install-rhai.sh)")
    script = "fn transform(data, attributes) { data.email = mask_email(data.email); result(data, attributes) }"
    answer = post(
        url,
        "/transform/run",
        {"script": script, "engine": "rhai", "payload": '{"email": "john@example.com"}'},
    )
    assert answer["item"]["document"] == {"email": "j***@example.com"}
    broken = post(
        url,
        "/transform/validate",
        {"script": "fn transform(data, attributes) { let x = ; }", "engine": "rhai"},
    )
    assert broken["valid"] is False and broken["errors"][0]["line"] == 1


def test_a_misspelled_kafka_key_is_named_plainly_in_the_api_error(url: str) -> None:
    body = {"name": "k", "provider": "kafka", "bootstrap.servers": "h:1", "sasl.pasword": "x"}
    fields = post(url, "/services", body, 400)["error"]["fields"]
    assert "did you mean 'sasl.password'?" in fields["sasl.pasword"]
