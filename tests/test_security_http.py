"""Where an ``http`` service may send events, against the real service and real servers.

* An ``http`` service created through the API may only name hosts in
  ``[system] http_allowed_hosts`` (none by default): 400 naming ``host``.
* No ``http`` service follows a redirect to another origin: the event is dead-lettered with
  the reason, and the other server never sees a request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.service import ServiceOptions
from tests.waiting import wait_for

pytestmark = [pytest.mark.security, pytest.mark.http]

JSON = {"Content-Type": "application/json"}


def system(tmp: Path, **extra: Any) -> dict[str, Any]:
    return {
        "data_dir": str(tmp / "data"),
        "encryption_key_path": str(tmp / "mstream.key"),
        **extra,
    }


@pytest.mark.parametrize(
    ("allowed", "host", "status"),
    [
        ([], "http://127.0.0.1:9", 400),
        (["hooks.internal"], "http://evil.example/x", 400),
        (["127.0.0.1"], "http://127.0.0.1:9", 201),
    ],
)
def test_api_http_services_only_reach_allowed_hosts(
    tmp_path: Path, allowed: list[str], host: str, status: int
) -> None:
    cfg = parse_config({"system": system(tmp_path, http_allowed_hosts=allowed)}, "t.toml", {})
    with ServiceThread(cfg, ServiceOptions(api_port=0, progress_interval=60)) as svc:
        body = {"name": "hook", "provider": "http", "host": host}
        response = requests.post(
            f"{svc.url}/services", data=json.dumps(body), headers=JSON, timeout=30
        )
        assert response.status_code == status, response.text
        if status == 400:
            assert "http_allowed_hosts" in response.json()["error"]["fields"]["host"]


class Recorder(BaseHTTPRequestHandler):
    """Answers every POST with ``self.server.answer``; records the paths it saw."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        status, location = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


def serve(answer: tuple[int, str | None]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.seen = []  # type: ignore[attr-defined]
    server.answer = answer  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def elsewhere() -> Iterator[ThreadingHTTPServer]:
    server = serve((200, None))
    yield server
    server.shutdown()


def test_a_redirect_to_another_host_is_not_followed(
    tmp_path: Path, elsewhere: ThreadingHTTPServer
) -> None:
    # "localhost" is another origin than "127.0.0.1", though the same machine
    target = f"http://localhost:{elsewhere.server_address[1]}/stolen"
    redirector = serve((307, target))
    try:
        cfg = parse_config(
            {
                "services": [
                    {"name": "gen", "provider": "generator", "count": 3},
                    {
                        "name": "hook",
                        "provider": "http",
                        "host": f"http://127.0.0.1:{redirector.server_address[1]}",
                        "max_retries": 0,
                    },
                    {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
                ],
                "connectors": [
                    {
                        "name": "out",
                        "source": {
                            "service_name": "gen",
                            "resource": "counter",
                            "output_encoding": "json",
                        },
                        "sinks": [
                            {"service_name": "hook", "resource": "/in", "output_encoding": "json"}
                        ],
                        "dead_letter": {"service_name": "files", "resource": "dead.jsonl"},
                    }
                ],
                "system": system(tmp_path),
            },
            "t.toml",
            {},
        )
        with ServiceThread(cfg, ServiceOptions(api_port=0, progress_interval=60)) as svc:
            wait_for(
                lambda: (
                    requests.get(f"{svc.url}/jobs/out", timeout=30).json()["state"]
                    in ("completed", "failed")
                ),
                30,
                "the job to finish",
            )
        assert redirector.seen  # type: ignore[attr-defined]
        assert elsewhere.seen == []  # type: ignore[attr-defined]
        dead = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
        assert len(dead) == 3
        assert all("not followed" in d["reason"] for d in dead), dead[0]["reason"]
    finally:
        redirector.shutdown()
