"""The REST API over real HTTP: the whole job lifecycle, services, and every error shape.

The service runs on a background thread (``mstream.api.testing.ServiceThread``) with a real
Tornado server on a free port; requests go through ``requests``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from mstream.api import ROUTES, openapi_document
from mstream.api.base import ApiHandler
from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.service import ServiceOptions
from tests.waiting import wait_for

pytestmark = pytest.mark.api

KEY = "11" * 32


def make_config(tmp: Path, extra: dict[str, Any] | None = None) -> Any:
    """A config with no jobs, state and key under ``tmp``."""
    raw: dict[str, Any] = {
        "services": [{"name": "files", "provider": "file", "base_dir": str(tmp / "out")}],
        "system": {
            "data_dir": str(tmp / "data"),
            "encryption_key_path": str(tmp / "mstream.key"),
            "file_roots": [str(tmp)],
        },
    }
    raw.update(extra or {})
    return parse_config(raw, "test.toml", {})


class Client:
    """A tiny JSON client for the API under test."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["Content-Type"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        if body is not None and "data" not in kwargs:
            kwargs["data"] = json.dumps(body)
        return self.session.request(method, self.base + path, timeout=60, **kwargs)

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        response = self.call(method, path, body)
        assert response.status_code == status, response.text
        return response.json() if response.content else None


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Client]:
    options = ServiceOptions(api_port=0, environ={"MSTREAM_ENC_KEY": KEY}, progress_interval=60)
    with ServiceThread(make_config(tmp_path), options) as service:
        yield Client(service.url)


def assert_error(response: requests.Response, status: int) -> dict[str, Any]:
    """The response is ``{"error": {"status", "message", "fields"?}}`` with ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["status"] == status
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.text
    return error


def job_definition(name: str, source: str, sink: str, resource: str) -> dict[str, Any]:
    return {
        "name": name,
        "checkpoint": {"enabled": True, "interval_ms": 100},
        "source": {"service_name": source, "resource": "counter", "output_encoding": "json"},
        "sinks": [{"service_name": sink, "resource": resource, "output_encoding": "json"}],
    }


def test_job_lifecycle_over_http(api: Client, tmp_path: Path) -> None:
    total = 3000
    # services: a slow generator and a file sink, created through the API
    created = api.ok(
        "POST",
        "/services",
        {"name": "gen", "provider": "generator", "count": total, "rate": 1000},
        201,
    )
    assert created["name"] == "gen" and created["origin"] == "api" and created["used_by"] == []
    api.ok(
        "POST",
        "/services",
        {"name": "sink", "provider": "file", "base_dir": str(tmp_path / "o")},
        201,
    )
    names = [s["name"] for s in api.ok("GET", "/services")["services"]]
    assert names == ["files", "gen", "sink"]

    # create and start the job
    response = api.call("POST", "/jobs", job_definition("g2f", "gen", "sink", "g2f.jsonl"))
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == "/jobs/g2f"
    job = response.json()
    assert job["state"] in ("starting", "running")
    assert job["definition"]["source"]["service_name"] == "gen"

    # counters grow
    first = wait_for(lambda: api.ok("GET", "/jobs/g2f")["counters"]["events_out"])
    later = wait_for(
        lambda: (n := api.ok("GET", "/jobs/g2f")["counters"]["events_out"]) > first and n
    )
    assert later > first
    listed = api.ok("GET", "/jobs")["jobs"]
    assert [j["name"] for j in listed] == ["g2f"] and "definition" not in listed[0]
    metrics = api.call("GET", "/metrics")
    assert metrics.status_code == 200 and metrics.headers["Content-Type"].startswith("text/plain")
    assert 'mstream_events_out_total{job="g2f"}' in metrics.text

    # the service is in use: 409, and it says by whom
    assert api.ok("GET", "/services/sink")["used_by"] == ["g2f"]
    error = assert_error(api.call("DELETE", "/services/sink"), 409)
    assert "g2f" in error["message"]

    # stop (once some checkpoints exist): drains, saves the final checkpoint
    wait_for(lambda: len(api.ok("GET", "/jobs/g2f/checkpoints")["checkpoints"]) >= 2)
    stopped = api.ok("POST", "/jobs/g2f/stop")
    assert stopped["state"] == "stopped" and stopped["desired_state"] == "stopped"
    assert stopped["stopped_at"] >= stopped["started_at"]
    delivered = stopped["counters"]["events_out"]
    assert 0 < delivered < total
    out = tmp_path / "o" / "g2f.jsonl"
    assert len(out.read_text().splitlines()) == delivered
    # stopped jobs still hold their services
    assert_error(api.call("DELETE", "/services/sink"), 409)

    # checkpoints, newest first
    history = api.ok("GET", "/jobs/g2f/checkpoints")["checkpoints"]
    assert len(history) >= 2
    assert history[0]["position"] == delivered
    stamps = [c["created_at"] for c in history]
    positions = [c["position"] for c in history]
    assert stamps == sorted(stamps, reverse=True) and positions == sorted(positions, reverse=True)
    assert len(api.ok("GET", "/jobs/g2f/checkpoints?limit=1")["checkpoints"]) == 1

    # restart: resumes from the checkpoint and completes; nothing lost, nothing repeated
    restarted = api.ok("POST", "/jobs/g2f/restart")
    assert (
        restarted["state"] in ("starting", "running", "completed")
        and restarted["desired_state"] == "running"
    )
    done = wait_for(lambda: (j := api.ok("GET", "/jobs/g2f"))["state"] == "completed" and j)
    assert done["counters"]["events_out"] == total - delivered
    numbers = [json.loads(line)["n"] for line in out.read_text().splitlines()]
    assert numbers == list(range(total))

    # a job must be stopped before it is deleted; deleting it frees the service
    api.ok("DELETE", "/jobs/g2f", status=204)
    assert_error(api.call("GET", "/jobs/g2f"), 404)
    assert api.ok("GET", "/services/sink")["used_by"] == []
    api.ok("DELETE", "/services/sink", status=204)
    assert_error(api.call("GET", "/services/sink"), 404)


def test_running_job_cannot_be_deleted(api: Client) -> None:
    api.ok("POST", "/services", {"name": "endless", "provider": "generator", "rate": 50}, 201)
    api.ok("POST", "/jobs", job_definition("forever", "endless", "files", "f.jsonl"), 201)
    error = assert_error(api.call("DELETE", "/jobs/forever"), 409)
    assert "stop it" in error["message"]
    api.ok("POST", "/jobs/forever/stop")
    api.ok("DELETE", "/jobs/forever", status=204)


def test_validation_errors_name_the_field(api: Client) -> None:
    bad = job_definition("bad", "files", "files", "x.jsonl")
    bad["sinks"][0]["output_encoding"] = "xml"
    error = assert_error(api.call("POST", "/jobs", bad), 400)
    assert "sinks[0].output_encoding" in error["fields"]
    assert "json, bson, avro" in error["fields"]["sinks[0].output_encoding"]
    assert "sinks[0].output_encoding" in error["message"]
    unknown = job_definition("bad", "nope", "files", "x.jsonl")
    error = assert_error(api.call("POST", "/jobs", unknown), 400)
    assert "no service named 'nope'" in error["fields"]["source.service_name"]

    error = assert_error(api.call("POST", "/jobs", {"name": "x", "sinks": [], "extra": 1}), 400)
    assert {"source", "sinks", "extra"} <= set(error["fields"])

    error = assert_error(
        api.call("POST", "/services", {"name": "g", "provider": "generator", "count": -1}), 400
    )
    assert error["fields"] == {"count": "must be at least 0"}
    error = assert_error(api.call("POST", "/services", {"name": "g", "provider": "nosuch"}), 400)
    assert "unknown provider" in error["fields"]["provider"]
    error = assert_error(
        api.call("POST", "/services", {"name": "bad name!", "provider": "stdout"}), 400
    )
    assert "name" in error["fields"]

    for body in ("{not json", "[1, 2]", "", '"text"', "NaN", "\udcff"):
        error = assert_error(
            api.call("POST", "/jobs", data=body.encode("utf-8", "surrogatepass")), 400
        )
        assert "body" in error["fields"]
    error = assert_error(api.call("GET", "/jobs/x/checkpoints?limit=zero"), 400)
    assert "limit" in error["fields"]


def test_not_found_conflict_and_method_errors(api: Client) -> None:
    for path in ("/jobs/nope", "/jobs/nope/checkpoints", "/services/nope", "/nope", "/jobs/a/b/c"):
        assert_error(api.call("GET", path), 404)
    for path in ("/jobs/nope/stop", "/jobs/nope/restart"):
        assert_error(api.call("POST", path), 404)
    assert_error(api.call("DELETE", "/jobs/nope"), 404)
    assert_error(api.call("DELETE", "/services/nope"), 404)

    api.ok("POST", "/services", {"name": "once", "provider": "stdout"}, 201)
    error = assert_error(api.call("POST", "/services", {"name": "once", "provider": "stdout"}), 409)
    assert "already exists" in error["message"]
    api.ok("POST", "/services", {"name": "few", "provider": "generator", "count": 5}, 201)
    api.ok("POST", "/jobs", job_definition("dup", "few", "files", "d.jsonl"), 201)
    assert_error(api.call("POST", "/jobs", job_definition("dup", "few", "files", "d.jsonl")), 409)

    response = api.call("PUT", "/jobs", {})
    assert_error(response, 405)
    assert response.headers["Allow"] == "GET, POST"
    assert_error(api.call("DELETE", "/jobs"), 405)
    assert_error(api.call("PATCH", "/services/once", {}), 405)


def test_body_over_the_cap_is_413(api: Client) -> None:
    big = json.dumps({"name": "x", "pad": "a" * (1024 * 1024)})
    error = assert_error(api.call("POST", "/services", data=big), 413)
    assert "larger than 1048576 bytes" in error["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(20):
            yield b" " * 100_000

    assert_error(api.call("POST", "/jobs", data=chunks()), 413)
    # the connection and the service are fine afterwards
    assert api.ok("GET", "/health")["status"] == "healthy"


def test_token_required_when_configured(tmp_path: Path) -> None:
    options = ServiceOptions(
        api_port=0, api_token="s3cr3t-token", environ={"MSTREAM_ENC_KEY": KEY}, progress_interval=60
    )
    with ServiceThread(make_config(tmp_path), options) as service:
        anonymous = Client(service.url)
        for method, path in (
            ("GET", "/jobs"),
            ("POST", "/jobs"),
            ("GET", "/services"),
            ("DELETE", "/services/files"),
            ("GET", "/metrics"),
            ("GET", "/openapi.json"),
            ("POST", "/jobs/x/stop"),
            ("PUT", "/jobs"),
        ):
            response = anonymous.call(method, path, {})
            assert_error(response, 401)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert_error(Client(service.url, "wrong").call("GET", "/jobs"), 401)
        assert anonymous.ok("GET", "/health")["status"] == "healthy"
        authorised = Client(service.url, "s3cr3t-token")
        assert authorised.ok("GET", "/jobs") == {"jobs": []}
        assert authorised.ok("GET", "/services/files")["provider"] == "file"


def test_root_health_and_openapi(api: Client) -> None:
    root = api.ok("GET", "/")
    assert root["api"]["openapi"] == "/openapi.json"
    health = api.ok("GET", "/health")
    assert health["status"] == "healthy" and health["uptime_seconds"] >= 0
    assert api.ok("GET", "/openapi.json") == openapi_document()


def test_openapi_matches_the_handlers() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {path for path, _ in ROUTES}
    for path, handler in ROUTES:
        own = [k for k in handler.__mro__ if issubclass(k, ApiHandler) and k is not ApiHandler]
        implemented = {
            m
            for m in ("get", "post", "delete", "put", "patch")
            if any(m in k.__dict__ for k in own)
        }
        documented = {k for k in doc["paths"][path] if k != "parameters"}
        assert implemented == documented, path
    # every $ref resolves
    text = json.dumps(doc)
    for name in {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}:
        assert name in doc["components"]["schemas"], name


def test_responses_match_the_openapi_schemas(api: Client) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    doc = openapi_document()

    def check(value: Any, path: str, method: str, status: str) -> None:
        schema = doc["paths"][path][method]["responses"][status]["content"]["application/json"][
            "schema"
        ]
        wrapped = {**schema, "components": doc["components"]}
        jsonschema.Draft202012Validator(wrapped).validate(value)

    api.ok("POST", "/services", {"name": "few", "provider": "generator", "count": 5}, 201)
    check(api.ok("GET", "/services"), "/services", "get", "200")
    check(api.ok("GET", "/services/few"), "/services/{name}", "get", "200")
    check(
        api.ok("POST", "/jobs", job_definition("j", "few", "files", "j.jsonl"), 201),
        "/jobs",
        "post",
        "201",
    )
    wait_for(lambda: api.ok("GET", "/jobs/j")["state"] == "completed")
    check(api.ok("GET", "/jobs"), "/jobs", "get", "200")
    check(api.ok("GET", "/jobs/j"), "/jobs/{name}", "get", "200")
    check(api.ok("GET", "/jobs/j/checkpoints"), "/jobs/{name}/checkpoints", "get", "200")
    check(api.ok("GET", "/health"), "/health", "get", "200")
    check(api.call("GET", "/jobs/zz").json(), "/jobs/{name}", "get", "404")
    check(api.call("POST", "/jobs", {"name": 1}).json(), "/jobs", "post", "400")


def test_client_errors_are_not_logged_as_server_problems(
    api: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    assert_error(api.call("GET", "/jobs/no-such-job"), 404)
    ours = [
        r for r in caplog.records if r.name == "mstream.api" and "no-such-job" in r.getMessage()
    ]
    assert [r.levelname for r in ours] == ["DEBUG"]  # the handler's own log_exception ran
    noisy = [
        r
        for r in caplog.records
        if r.levelno >= 30 and r.name != "tornado.access" and "no-such-job" in r.getMessage()
    ]
    assert noisy == []


def test_an_instance_on_the_embedded_store_shares_nothing(api: Client) -> None:
    cluster = api.ok("GET", "/cluster")
    assert cluster["enabled"] is False
    assert cluster["instances"] == [] and cluster["leases"] == []
    api.ok("POST", "/services", {"name": "endless", "provider": "generator", "rate": 50}, 201)
    api.ok("POST", "/jobs", job_definition("forever", "endless", "files", "f.jsonl"), 201)
    assert "instance" not in api.ok("GET", "/jobs/forever")
