"""The attacks of the API security issue, each against the real service over HTTP.

Requests go through ``http.client`` so that every header (``Host``, ``Origin``,
``Content-Type``) is exactly what the test says.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from mstream.api.access import ensure_token
from mstream.api.testing import ServiceThread
from mstream.cli import _parser
from mstream.config import parse_config
from mstream.errors import ConfigError
from mstream.service import ServiceOptions
from tests.waiting import wait_for

pytestmark = pytest.mark.security

KEY = "22" * 32
TOKEN = "sec-token-8d1f"
SERVICE = {"name": "gen", "provider": "generator", "count": 1, "rate": 10}


def make_config(tmp: Path) -> Any:
    """A config with no jobs, state and key under ``tmp``."""
    raw = {"system": {"data_dir": str(tmp / "data"), "encryption_key_path": str(tmp / "k")}}
    return parse_config(raw, "test.toml", {})


def options(token: str | None = None, host: str = "127.0.0.1") -> ServiceOptions:
    return ServiceOptions(
        api_host=host,
        api_port=0,
        api_token=token,
        environ={"MSTREAM_ENC_KEY": KEY},
        progress_interval=60,
    )


class Raw:
    """One HTTP request per call, with exactly the headers given."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.origin = f"http://127.0.0.1:{self.port}"

    def __call__(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            sent = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
            if body is not None:
                sent["Content-Length"] = str(len(body))
            for name, value in sent.items():
                conn.putheader(name, value)
            conn.endheaders(body)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


def error_of(answer: tuple[int, dict[str, str], bytes], status: int) -> str:
    """Assert the JSON error shape with ``status``; return its message."""
    got, headers, body = answer
    assert got == status, body[:300]
    assert headers["Content-Type"].startswith("application/json")
    error = json.loads(body)
    assert set(error) == {"error"} and error["error"]["status"] == status
    assert b"Traceback" not in body
    return str(error["error"]["message"])


@pytest.fixture
def open_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Raw]:
    """The default set-up: loopback, no token; one extra origin and host allowed."""
    monkeypatch.setenv("MSTREAM_API_ALLOWED_ORIGINS", "https://ops.example")
    monkeypatch.setenv("MSTREAM_API_ALLOWED_HOSTS", "mstream.lan")
    with ServiceThread(make_config(tmp_path), options()) as service:
        yield Raw(service.url)


JSON = {"Content-Type": "application/json"}


def test_default_local_flow_with_json_still_works(open_api: Raw) -> None:
    status, _, body = open_api("POST", "/services", json.dumps(SERVICE).encode(), JSON)
    assert status == 201 and json.loads(body)["name"] == "gen"
    same_origin = {**JSON, "Origin": open_api.origin}
    second = json.dumps({**SERVICE, "name": "gen2"}).encode()
    assert open_api("POST", "/services", second, same_origin)[0] == 201
    assert open_api("DELETE", "/services/gen2")[0] == 204  # bodiless: no content type needed
    assert json.loads(open_api("GET", "/jobs")[2]) == {"jobs": []}


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"],
)
def test_writes_need_a_json_content_type(open_api: Raw, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps(SERVICE).encode()
    message = error_of(open_api("POST", "/services", body, headers), 415)
    assert "application/json" in message
    error_of(open_api("DELETE", "/services/gen", b"x=1", headers), 415)
    assert open_api("GET", "/services/gen")[0] == 404  # nothing was created


def test_bodiless_writes_need_no_content_type(open_api: Raw) -> None:
    error_of(open_api("POST", "/jobs/nope/stop"), 404)
    error_of(open_api("POST", "/jobs/nope/stop", b""), 404)
    error_of(open_api("POST", "/jobs/nope/stop", b"", {"Content-Type": "text/plain"}), 415)


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:1"])
def test_foreign_origin_is_403(open_api: Raw, origin: str) -> None:
    body = json.dumps(SERVICE).encode()
    message = error_of(open_api("POST", "/services", body, {**JSON, "Origin": origin}), 403)
    assert "cross-site" in message
    error_of(open_api("GET", "/jobs", None, {"Origin": origin}), 403)


def test_allowed_origin_is_accepted(open_api: Raw) -> None:
    body = json.dumps(SERVICE).encode()
    headers = {**JSON, "Origin": "https://ops.example"}
    assert open_api("POST", "/services", body, headers)[0] == 201


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", ""])
def test_foreign_host_on_loopback_is_403(open_api: Raw, host: str) -> None:
    body = json.dumps(SERVICE).encode()
    headers = {**JSON, "Host": host.format(port=open_api.port)}
    assert "is not this API" in error_of(open_api("POST", "/services", body, headers), 403)
    error_of(open_api("GET", "/", None, {"Host": headers["Host"]}), 403)


@pytest.mark.parametrize("host", ["localhost:{port}", "[::1]:{port}", "mstream.lan:{port}"])
def test_loopback_and_allowed_hosts_are_accepted(open_api: Raw, host: str) -> None:
    status, _, body = open_api("GET", "/jobs", None, {"Host": host.format(port=open_api.port)})
    assert status == 200 and json.loads(body) == {"jobs": []}


@pytest.mark.parametrize(
    "path",
    [
        "/static/%00",
        "/static/..%2Fmstream.key",
        "/static/%2e%2e%2fk",
        "/static/a%2Fb",
        "/static/%2F",
        "/static/.hidden",
        "/static/" + "a" * 5000,
    ],
)
def test_odd_static_paths_are_400(open_api: Raw, path: str) -> None:
    assert error_of(open_api("GET", path), 400) == "bad static file name"


def test_unknown_static_file_is_404_and_assets_are_served(open_api: Raw) -> None:
    error_of(open_api("GET", "/static/nope.js"), 404)
    status, headers, _ = open_api("GET", "/static/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")


def test_access_log_never_shows_a_token(open_api: Raw, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tornado.access"):
        open_api("GET", f"/jobs?token={TOKEN}&x=1", None, {"Authorization": f"Bearer {TOKEN}"})
        open_api("GET", f"/health?TOKEN={TOKEN}")

        def access_lines() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.name == "tornado.access"]

        # the server logs a request just after the client has its answer
        wait_for(lambda: len(access_lines()) >= 2, 10, "both requests in the access log")
    lines = access_lines()
    assert any("/jobs?token=***&x=1" in line for line in lines), lines
    assert any("/health?TOKEN=***" in line for line in lines), lines
    assert TOKEN not in caplog.text and "Bearer" not in caplog.text


def test_echoed_errors_are_capped_at_8_kib(open_api: Raw) -> None:
    body = json.dumps({**SERVICE, "provider": "p" * 20000}).encode()
    message = error_of(open_api("POST", "/services", body, JSON), 400)
    assert len(message.encode()) <= 8 * 1024 and "[truncated:" in message


def test_with_a_token_only_the_shell_and_a_bare_health_are_open(tmp_path: Path) -> None:
    with ServiceThread(make_config(tmp_path), options(TOKEN)) as service:
        raw = Raw(service.url)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        status, _, body = raw("GET", "/health")
        assert status == 200 and json.loads(body) == {"status": "healthy"}
        detail = json.loads(raw("GET", "/health", None, auth)[2])
        assert detail["status"] == "healthy" and detail["jobs"] == {} and "uptime_seconds" in detail
        assert raw("GET", "/", None, {"Accept": "text/html"})[0] == 200
        assert raw("GET", "/static/app.js")[0] == 200
        for method, path in (("GET", "/jobs"), ("GET", "/metrics"), ("POST", "/jobs/x/stop")):
            error_of(raw(method, path), 401)
        # the cross-site rules hold for token holders too
        error_of(raw("POST", "/services", b"{}", {**auth, "Content-Type": "text/plain"}), 415)
        error_of(raw("GET", "/jobs", None, {**auth, "Origin": "https://evil.example"}), 403)


def test_network_bound_api_without_a_token_is_never_served(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MSTREAM_API_TOKEN"):
        ServiceThread(make_config(tmp_path), options(host="0.0.0.0")).start()


def test_network_bound_api_gets_a_generated_token(tmp_path: Path) -> None:
    opts, out = options(host="0.0.0.0"), io.StringIO()
    token = ensure_token(opts, out)
    assert token and opts.api_token == token and out.getvalue().count(token) == 2
    assert f"/?token={token}" in out.getvalue()
    with ServiceThread(make_config(tmp_path), opts) as service:
        raw = Raw(service.url)
        host = {"Host": f"box.example:{raw.port}"}  # any Host: the token guards it
        error_of(raw("GET", "/jobs", None, host), 401)
        auth = {**host, "Authorization": f"Bearer {token}"}
        assert raw("GET", "/jobs", None, auth)[0] == 200


def test_safe_mode_flag_sets_the_option() -> None:
    assert _parser().parse_args(["--safe-mode"]).safe_mode is True
    assert _parser().parse_args([]).safe_mode is False
    assert ServiceOptions.from_env({}, safe_mode=True).safe_mode is True
    assert ServiceOptions().safe_mode is False
