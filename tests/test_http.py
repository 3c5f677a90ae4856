"""HTTP sink and middleware against a local test server: retries, backoff, dead letters."""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bson
import pytest

from mstream.config import ServiceConfig, StepConfig, parse_config
from mstream.core import Batch, Event
from mstream.errors import ConfigError, DeliveryError
from mstream.providers.base import StepContext
from mstream.providers.http import (
    HttpMiddleware,
    HttpServiceSchema,
    HttpSink,
    _sessions,
    keepalive_socket_options,
)
from mstream.registry import mask_service
from mstream.runtime import Connector
from mstream.stores import Stores
from mstream.udf import load_scripts

pytestmark = [pytest.mark.http, pytest.mark.udf]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "udf"


# -- the test server ----------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering
    hold: bool = False  # answer only once the server's ``release`` event is set


@dataclass
class Request:
    at: float
    body: bytes
    headers: dict[str, str]
    port: int
    status: int = 0


Route = Callable[[int, bytes], Reply]


class TestServer:
    """A threaded HTTP/1.1 server whose routes are functions of (request number, body)."""

    __test__ = False

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: dict[str, list[Request]] = defaultdict(list)
        self.lock = threading.Lock()
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = -1  # one write per response (no Nagle delay between header and body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                request = Request(
                    time.monotonic(), body, dict(self.headers.items()), self.client_address[1]
                )
                with server.lock:
                    n = len(server.requests[self.path])
                    server.requests[self.path].append(request)
                    route = server.routes.get(self.path)
                reply = route(n, body) if route else Reply(404, b"no route")
                if reply.hold:
                    server.release.wait(10)
                if reply.drop:
                    self.close_connection = True
                    return
                request.status = reply.status
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def delivered(self, path: str) -> list[Any]:
        """Bodies (parsed JSON) of the requests to ``path`` answered with 2xx."""
        with self.lock:
            return [json.loads(r.body) for r in self.requests[path] if 200 <= r.status < 300]

    def count(self, path: str) -> int:
        with self.lock:
            return len(self.requests[path])


@pytest.fixture
def server() -> Iterator[TestServer]:
    srv = TestServer()
    srv.thread.start()
    yield srv
    srv.release.set()
    srv.httpd.shutdown()
    srv.httpd.server_close()


def ok_json(transform: Callable[[Any], Any] = lambda doc: doc) -> Callable[[bytes], Reply]:
    def answer(body: bytes) -> Reply:
        doc = json.loads(body)
        out = [transform(d) for d in doc] if isinstance(doc, list) else transform(doc)
        return Reply(200, json.dumps(out).encode(), {"Content-Type": "application/json"})

    return answer


FAILURES = [
    Reply(503, b"busy"),
    Reply(429, b"slow down", {"Retry-After": "0"}),
    Reply(drop=True),
]


def flaky(failures: int, then: Callable[[bytes], Reply]) -> Route:
    """Fail the first ``failures`` requests (503, 429 + Retry-After: 0, dropped...)."""

    def route(n: int, body: bytes) -> Reply:
        return FAILURES[n % len(FAILURES)] if n < failures else then(body)

    return route


def enrich(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "enriched": True, "name_length": len(doc.get("full_name", ""))}


def config(tmp_path: Path, server: TestServer, **connector: Any) -> Any:
    http_opts = connector.pop("http", {})
    raw = {
        "services": [
            {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
            {"name": "scripts", "provider": "udf", "engine": {"kind": "lua"},
             "script_path": str(EXAMPLES)},
            {"name": "api", "provider": "http", "host": server.url, "base_backoff_ms": 10,
             **http_opts},
            *connector.pop("services", []),
        ],
        "connectors": [{"name": "job", **connector}],
    }  # fmt: skip
    return parse_config(raw, "test.toml", {})


def run(cfg: Any, stores: Stores | None = None, max_restarts: int = 0) -> Connector:
    connector = Connector(
        cfg.connectors[0],
        {s.name: s for s in cfg.services},
        (stores or Stores.in_memory()).checkpoints,
        max_restarts=max_restarts,
    )
    connector.start()
    assert connector.wait(60), "connector did not finish"
    return connector


def lines(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def users(n: int) -> list[dict[str, Any]]:
    return [
        {
            "user_id": i,
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "email": f"User{i}@Example.COM",
            "loyalty_points": i * 700,
            "password": "hunter2",
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, docs: list[Any]) -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))


def step(service: str, resource: str = "", **extra: Any) -> dict[str, Any]:
    return {"service_name": service, "resource": resource, "output_encoding": "json", **extra}


# -- end to end ---------------------------------------------------------------------------


def test_generator_udf_http_middleware_http_sink_delivers_everything_with_retries(
    tmp_path: Path, server: TestServer
) -> None:
    docs = users(20)
    write_jsonl(tmp_path / "in.jsonl", docs)
    server.routes["/enrich"] = flaky(3, ok_json(enrich))
    server.routes["/records"] = flaky(2, ok_json())
    cfg = config(
        tmp_path,
        server,
        source=step("files", "in.jsonl"),
        middlewares=[step("scripts", "json_transform.lua"), step("api", "enrich")],
        sinks=[step("api", "records")],
        dead_letter={"service_name": "files", "resource": "dead.jsonl"},
    )
    connector = run(cfg)
    assert connector.state == "completed", connector.reason
    script = load_scripts(EXAMPLES)["json_transform.lua"]
    expected = [enrich(script.transform(doc, {})[0][0]) for doc in docs]
    assert server.delivered("/records") == expected
    assert all("password" not in d and d["enriched"] for d in expected)
    assert server.delivered("/enrich") == [script.transform(d, {})[0][0] for d in docs]
    assert connector.counters.retries == 5  # 3 middleware + 2 sink failures, each retried once
    assert connector.counters.events_out == 20 and lines(tmp_path / "dead.jsonl") == []
    sink_requests = server.requests["/records"]
    assert {r.headers["Content-Type"] for r in sink_requests} == {"application/json"}
    # keep-alive: the 22 sink requests used few connections (one new after the dropped one)
    assert len({r.port for r in sink_requests}) <= 3


def test_batched_mode_posts_arrays_and_reads_arrays(tmp_path: Path, server: TestServer) -> None:
    server.routes["/enrich"] = flaky(2, ok_json(lambda d: {**d, "doubled": d["n"] * 2}))
    server.routes["/records"] = flaky(1, ok_json())
    cfg = config(
        tmp_path,
        server,
        services=[{"name": "gen", "provider": "generator", "count": 10}],
        source=step("gen", "counter"),
        middlewares=[step("api", "enrich")],
        sinks=[step("api", "records")],
        batch={"kind": "count", "size": 4},
    )
    connector = run(cfg)
    assert connector.state == "completed", connector.reason
    sent = server.delivered("/enrich")
    assert [len(body) for body in sent] == [4, 4, 2]
    arrays = server.delivered("/records")
    assert all(isinstance(body, list) for body in arrays)
    assert [len(body) for body in arrays] == [4, 4, 2]
    assert [d for body in arrays for d in body] == [{"n": i, "doubled": 2 * i} for i in range(10)]
    assert connector.counters.retries == 3


def test_batched_middleware_non_array_response_dead_letters_the_batch(
    tmp_path: Path, server: TestServer
) -> None:
    server.routes["/enrich"] = lambda n, body: Reply(200, b'{"not": "an array"}')
    server.routes["/records"] = lambda n, body: Reply(200)
    cfg = config(
        tmp_path,
        server,
        services=[{"name": "gen", "provider": "generator", "count": 6}],
        source=step("gen", "counter"),
        middlewares=[step("api", "enrich")],
        sinks=[step("api", "records")],
        batch={"kind": "count", "size": 3},
        dead_letter={"service_name": "files", "resource": "dead.jsonl"},
    )
    connector = run(cfg)
    assert connector.state == "completed", connector.reason
    dead = lines(tmp_path / "dead.jsonl")
    assert [d["payload"] for d in dead] == [{"n": i} for i in range(6)]
    assert {d["stage"] for d in dead} == {"middleware"}
    assert "must be an array in json" in dead[0]["reason"]
    assert '{"not": "an array"}' in dead[0]["reason"]
    assert server.count("/records") == 0


def test_sink_400_dead_letters_that_event_with_status_and_body_excerpt(
    tmp_path: Path, server: TestServer
) -> None:
    def picky(n: int, body: bytes) -> Reply:
        if json.loads(body)["n"] == 3:
            return Reply(400, b"n=3 is not allowed: " + b"x" * 500)
        return Reply(200)

    server.routes["/records"] = picky
    cfg = config(
        tmp_path,
        server,
        services=[{"name": "gen", "provider": "generator", "count": 10}],
        source=step("gen", "counter"),
        sinks=[step("api", "records")],
        dead_letter={"service_name": "files", "resource": "dead.jsonl"},
    )
    connector = run(cfg)
    assert connector.state == "completed", connector.reason
    assert server.delivered("/records") == [{"n": i} for i in range(10) if i != 3]
    [dead] = lines(tmp_path / "dead.jsonl")
    assert dead["stage"] == "sink" and dead["payload"] == {"n": 3}
    prefix = f"sinks[0] (api): HTTP 400 from {server.url}/records: n=3 is not allowed: "
    assert dead["reason"].startswith(prefix)
    assert dead["reason"].endswith("x" * 180 + "…")  # 200-character excerpt
    assert len(dead["reason"]) == len(f"sinks[0] (api): HTTP 400 from {server.url}/records: ") + 201
    assert connector.counters.retries == 0  # a 400 is not retried
    assert server.count("/records") == 10


def test_middleware_4xx_dead_letters_the_event_and_the_job_goes_on(
    tmp_path: Path, server: TestServer
) -> None:
    def odd_refused(n: int, body: bytes) -> Reply:
        doc = json.loads(body)
        if doc["n"] % 2:
            return Reply(422, b"odd numbers are not welcome")
        return ok_json(lambda d: {**d, "even": True})(body)

    server.routes["/enrich"] = odd_refused
    server.routes["/records"] = lambda n, body: Reply(200)
    cfg = config(
        tmp_path,
        server,
        services=[{"name": "gen", "provider": "generator", "count": 6}],
        source=step("gen", "counter"),
        middlewares=[step("api", "enrich")],
        sinks=[step("api", "records")],
        dead_letter={"service_name": "files", "resource": "dead.jsonl"},
    )
    connector = run(cfg)
    assert connector.state == "completed", connector.reason
    assert server.delivered("/records") == [{"n": i, "even": True} for i in (0, 2, 4)]
    dead = lines(tmp_path / "dead.jsonl")
    assert [d["payload"] for d in dead] == [{"n": 1}, {"n": 3}, {"n": 5}]
    assert dead[0]["stage"] == "middleware"
    assert dead[0]["reason"] == f"HTTP 422 from {server.url}/enrich: odd numbers are not welcome"


def test_retries_exhausted_fail_the_job_without_acknowledging(
    tmp_path: Path, server: TestServer
) -> None:
    server.routes["/records"] = lambda n, body: Reply(503, b"down for maintenance")
    stores = Stores.in_memory()
    cfg = config(
        tmp_path,
        server,
        http={"max_retries": 2},
        services=[{"name": "gen", "provider": "generator", "count": 5}],
        source=step("gen", "counter"),
        sinks=[step("api", "records")],
        checkpoint={"enabled": True, "interval_ms": 10},
    )
    connector = run(cfg, stores)
    assert connector.state == "failed"
    assert connector.reason is not None
    assert f"HTTP 503 from {server.url}/records: down for maintenance" in connector.reason
    assert "gave up after 3 attempts" in connector.reason
    assert server.count("/records") == 3
    assert connector.counters.retries == 2
    assert connector.counters.events_out == 0
    assert stores.checkpoints.latest("job") is None  # nothing was acknowledged


def test_failed_job_restarts_from_checkpoint_and_loses_nothing(
    tmp_path: Path, server: TestServer
) -> None:
    server.routes["/records"] = flaky(3, ok_json())  # 503, 429, dropped: one run's attempts
    stores = Stores.in_memory()
    cfg = config(
        tmp_path,
        server,
        http={"max_retries": 2},
        services=[{"name": "gen", "provider": "generator", "count": 5}],
        source=step("gen", "counter"),
        sinks=[step("api", "records")],
        checkpoint={"enabled": True, "interval_ms": 10},
    )
    connector = run(cfg, stores, max_restarts=2)
    assert connector.state == "completed", connector.reason
    assert connector.restarts == 1
    assert server.delivered("/records") == [{"n": i} for i in range(5)]
    saved = stores.checkpoints.latest("job")
    assert saved is not None and saved.position == 5


def test_retry_after_is_honoured(tmp_path: Path, server: TestServer) -> None:
    server.routes["/slow"] = lambda n, body: (
        Reply(429, b"later", {"Retry-After": "1"}) if n == 0 else Reply(200)
    )
    server.routes["/fast"] = lambda n, body: Reply(503) if n == 0 else Reply(200)
    cfg = config(
        tmp_path,
        server,
        services=[{"name": "gen", "provider": "generator", "count": 1}],
        source=step("gen", "counter"),
        sinks=[step("api", "slow"), step("api", "fast")],
    )
    connector = run(cfg)
    assert connector.state == "completed", connector.reason
    slow, fast = server.requests["/slow"], server.requests["/fast"]
    assert len(slow) == 2 and len(fast) == 2
    assert slow[1].at - slow[0].at >= 0.95  # Retry-After: 1
    assert fast[1].at - fast[0].at < 0.5  # without it: base_backoff_ms = 10


def test_backoff_doubles_from_base(tmp_path: Path, server: TestServer) -> None:
    server.routes["/records"] = lambda n, body: Reply(503) if n < 4 else Reply(200)
    cfg = config(
        tmp_path,
        server,
        http={"base_backoff_ms": 40},
        services=[{"name": "gen", "provider": "generator", "count": 1}],
        source=step("gen", "counter"),
        sinks=[step("api", "records")],
    )
    connector = run(cfg)
    assert connector.state == "completed", connector.reason
    times = [r.at for r in server.requests["/records"]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 4
    for i, gap in enumerate(gaps):
        assert gap >= 0.9 * 0.040 * 2**i, gaps  # 40, 80, 160, 320 ms (±10 % jitter)
    assert sum(gaps) < 3.0
    assert connector.counters.retries == 4


def test_read_timeout_is_retried(tmp_path: Path, server: TestServer) -> None:
    server.routes["/records"] = lambda n, body: Reply(200, hold=True) if n == 0 else Reply(200)
    cfg = config(
        tmp_path,
        server,
        http={"timeout_sec": 0.5},
        services=[{"name": "gen", "provider": "generator", "count": 1}],
        source=step("gen", "counter"),
        sinks=[step("api", "records")],
    )
    connector = run(cfg)
    server.release.set()
    assert connector.state == "completed", connector.reason
    assert server.count("/records") == 2
    assert connector.counters.retries == 1


def test_connection_refused_is_retried_then_fails(tmp_path: Path, server: TestServer) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = config(
        tmp_path,
        server,
        http={"host": f"http://127.0.0.1:{port}", "max_retries": 1},
        services=[{"name": "gen", "provider": "generator", "count": 1}],
        source=step("gen", "counter"),
        sinks=[step("api", "records")],
    )
    connector = run(cfg)
    assert connector.state == "failed"
    assert connector.reason is not None and "ConnectionError" in connector.reason
    assert connector.counters.retries == 1


def test_bson_sink_posts_bson_and_headers_are_secret(
    tmp_path: Path, server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.routes["/records"] = flaky(1, lambda body: Reply(200))
    token = "Bearer s3cr3t-t0ken"
    cfg = config(
        tmp_path,
        server,
        http={"headers": {"Authorization": token, "X-Team": "data"}},
        services=[{"name": "gen", "provider": "generator", "count": 2}],
        source=step("gen", "counter"),
        sinks=[{**step("api", "records"), "output_encoding": "bson"}],
    )
    connector = run(cfg)
    assert connector.state == "completed", connector.reason
    ok = [r for r in server.requests["/records"] if r.status == 200]
    assert [bson.decode(r.body) for r in ok] == [{"n": 0}, {"n": 1}]
    assert {r.headers["Content-Type"] for r in ok} == {"application/bson"}
    assert {r.headers["Authorization"] for r in ok} == {token}
    assert connector.counters.retries == 1  # a retry was logged
    assert "retry 1/5" in caplog.text
    assert "s3cr3t" not in caplog.text
    api = cfg.service("api")
    assert mask_service(api)["headers"] == "****"


# -- units --------------------------------------------------------------------------------


def service(url: str, **options: Any) -> ServiceConfig:
    return ServiceConfig("api", "http", HttpServiceSchema().load({"host": url, **options}))


def test_middleware_keeps_attributes_and_metadata_of_each_event(server: TestServer) -> None:
    server.routes["/enrich"] = lambda n, body: (
        Reply(204) if json.loads(body)["n"] == 1 else ok_json(lambda d: {**d, "x": 1})(body)
    )
    m = HttpMiddleware(
        service(server.url), StepConfig("api", "enrich"), StepContext("t", "middleware")
    )
    m.open()
    try:
        events = [
            Event(b'{"n": %d}' % i, "json", attributes={"k": str(i)}, metadata={"offset": i})
            for i in range(3)
        ]
        out = m.process(Batch.of(events, batched=False), lambda *a: pytest.fail(str(a)))
    finally:
        m.close()
    assert [(e.doc, e.attributes, e.metadata) for e in out] == [
        ({"n": 0, "x": 1}, {"k": "0"}, {"offset": 0}),
        ({"n": 2, "x": 1}, {"k": "2"}, {"offset": 2}),
    ]  # 204 No Content dropped the second event


def test_middleware_invalid_json_response_is_rejected(server: TestServer) -> None:
    server.routes["/enrich"] = lambda n, body: Reply(200, b"<html>oops</html>")
    m = HttpMiddleware(
        service(server.url), StepConfig("api", "enrich"), StepContext("t", "middleware")
    )
    rejected: list[tuple[Any, str, str]] = []
    m.open()
    try:
        out = m.process(
            Batch.of([Event(b'{"n": 1}', "json")], batched=False),
            lambda e, r, s: rejected.append((e.doc, r, s)),
        )
    finally:
        m.close()
    assert out == []
    [(doc, reason, stage)] = rejected
    assert doc == {"n": 1} and stage == "middleware"
    assert reason.startswith(f"invalid json response from {server.url}/enrich")
    assert "<html>oops</html>" in reason


def test_steps_of_one_service_share_one_pool() -> None:
    svc = service("http://127.0.0.1:9", tcp_keepalive_sec=120)
    sink = HttpSink(svc, StepConfig("api", "a"), StepContext("t", "sink"))
    middleware = HttpMiddleware(svc, StepConfig("api", "b"), StepContext("t", "middleware"))
    other = HttpSink(
        service("http://127.0.0.1:9"), StepConfig("api", "a"), StepContext("t", "sink")
    )
    for item in (sink, middleware, other):
        item.open()
    assert sink.client.session is middleware.client.session
    assert other.client.session is not sink.client.session  # other options, other pool
    session = sink.client.session
    assert session is not None
    adapter = session.get_adapter("http://127.0.0.1:9/")
    options = adapter.poolmanager.connection_pool_kw["socket_options"]  # type: ignore[attr-defined]
    assert (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1) in options
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 120) in options
    before = len(_sessions)
    sink.close()
    assert len(_sessions) == before  # still used by the middleware
    middleware.close()
    other.close()
    assert len(_sessions) == before - 2
    assert not any(o[1] == socket.SO_KEEPALIVE for o in keepalive_socket_options(0))


def test_stopping_interrupts_a_backoff_wait(server: TestServer) -> None:
    answered = threading.Event()

    def busy(n: int, body: bytes) -> Reply:
        answered.set()
        return Reply(503, headers={"Retry-After": "3600"})

    server.routes["/records"] = busy
    ctx = StepContext("t", "sink")
    sink = HttpSink(service(server.url), StepConfig("api", "records"), ctx)
    sink.open()
    failure: list[BaseException] = []

    def write() -> None:
        try:
            sink.write_batch(Batch.of([Event(b"{}", "json")], batched=False))
        except DeliveryError as exc:
            failure.append(exc)

    worker = threading.Thread(target=write)
    began = time.monotonic()
    worker.start()
    assert answered.wait(10)
    ctx.stopping.set()  # the sink is about to wait (or waiting) 3600 s before retrying
    worker.join(10)
    sink.close()
    assert not worker.is_alive() and time.monotonic() - began < 10
    assert failure and "connector stopping" in str(failure[0])
    assert server.count("/records") == 1


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"host": "http://h", "retries": 3}, "services[0].retries: unknown field"),
        ({"host": "ftp://h"}, "services[0].host: must be an http:// or https:// URL"),
        ({}, "services[0].host: missing required field"),
        ({"host": "http://h", "max_retries": -1}, "services[0].max_retries"),
        ({"host": "http://h", "headers": {"X": 1}}, "services[0].headers"),
    ],
)
def test_service_options_are_validated(options: dict[str, Any], expected: str) -> None:
    raw = {"services": [{"name": "api", "provider": "http", **options}]}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "test.toml", {})
    assert expected in str(info.value)


def test_example_config_validates_and_runs(tmp_path: Path, server: TestServer) -> None:
    from mstream.config import load_config

    example = Path(__file__).resolve().parent.parent / "examples" / "udf-http.toml"
    assert load_config(example, {}).service("enricher") is not None
    text = (
        example.read_text()
        .replace("http://127.0.0.1:8080", server.url)
        .replace("count = 1000\nrate = 200", "count = 120")
        .replace('script_path = "examples/udf"', f"script_path = {json.dumps(str(EXAMPLES))}")
        .replace('base_dir = "."', f"base_dir = {json.dumps(str(tmp_path))}")
        .replace("base_backoff_ms = 1000", "base_backoff_ms = 10")
        .replace("base_backoff_ms = 500", "base_backoff_ms = 10")
    )
    local = tmp_path / "udf-http.toml"
    local.write_text(text)
    server.routes["/enrich"] = flaky(2, ok_json(enrich))
    server.routes["/events"] = flaky(1, ok_json())
    connector = run(load_config(local, {}))
    assert connector.state == "completed", connector.reason
    arrays = server.delivered("/events")
    assert [len(a) for a in arrays] == [50, 50, 20]
    first = arrays[0][0]
    assert first["version"] == "1.0" and first["enriched"] is True and first["user_id"] == 0
    assert first["email"] == "user0@example.com"
    assert {r.headers["X-Source"] for r in server.requests["/enrich"]} == {"mstream"}
    assert connector.counters.retries == 3
