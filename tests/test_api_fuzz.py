"""Fuzzing the REST API: generated methods, paths, query strings, headers and bodies.

Hypothesis sends at least 1,000 requests to a running service (a real Tornado server with
jobs, services and a bearer token). No response may be a 5xx, every error must have the
JSON error shape, and no body may contain a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.service import ServiceOptions
from tests.waiting import wait_for

pytestmark = pytest.mark.api

TOKEN = "fuzz-token"
EXAMPLES = 1100
SENT = {"count": 0, "resent": 0}

METHODS = st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"])
SEGMENTS = st.one_of(
    st.sampled_from(
        [
            "jobs",
            "services",
            "health",
            "metrics",
            "openapi.json",
            "stop",
            "restart",
            "checkpoints",
            "demo",
            "gen",
            "files",
            "nope",
            "",
            ".",
            "..",
            "%00",
            "%ff",
            "%2F",
        ]
    ),
    st.text(min_size=1, max_size=12).map(lambda s: quote(s, safe="")),
)
PATHS = st.one_of(
    st.sampled_from(
        ["/jobs", "/services", "/jobs/demo", "/services/gen", "/jobs/demo/checkpoints"]
    ),
    st.lists(SEGMENTS, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)),
)
QUERIES = st.one_of(
    st.just(""),
    st.builds(
        lambda k, v: f"?{k}={quote(v, safe='')}",
        st.sampled_from(["limit", "keep_checkpoints", "x"]),
        st.text(max_size=8),
    ),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(
        [
            "json",
            "bson",
            "avro",
            "gen",
            "files",
            "demo",
            "generator",
            "file",
            "stdout",
            "mongodb",
            "kafka",
            "counter",
            "count",
            "env:HOME",
        ]
    ),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "name",
        "provider",
        "source",
        "sinks",
        "middlewares",
        "schemas",
        "batch",
        "checkpoint",
        "dead_letter",
        "enabled",
        "service_name",
        "resource",
        "output_encoding",
        "input_encoding",
        "schema_id",
        "count",
        "rate",
        "base_dir",
        "size",
        "kind",
        "interval_ms",
        "chunk_size",
    ]
)
NEAR_VALID = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=20,
)
BODIES = st.one_of(
    st.none(),
    JSON.map(lambda v: json.dumps(v).encode()),
    NEAR_VALID.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.sampled_from(
        [b"{", b"[]", b"null", b"NaN", b'{"a": Infinity}', b"\xff\xfe", b"[" * 5000, b'"\\ud800"']
    ),
)
NAMES = st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True)
VALID_SERVICES = st.one_of(
    st.builds(lambda n: {"name": n, "provider": "stdout"}, NAMES),
    st.builds(
        lambda n, c, r: {"name": n, "provider": "generator", "count": c, "rate": r},
        NAMES,
        st.integers(min_value=-2, max_value=50),
        st.floats(min_value=-1, max_value=1e8, allow_nan=False),
    ),
)
VALID_JOBS = st.builds(
    lambda n, shape, enc, extra: {
        "name": n,
        "source": {"service_name": "gen", "resource": shape, "output_encoding": enc},
        "sinks": [
            {"service_name": "files", "resource": f"{n}.jsonl", "output_encoding": "json", **extra}
        ],
    },
    NAMES,
    st.sampled_from(["counter", "users", "orders", "nope"]),
    st.sampled_from(["json", "bson", "avro"]),
    st.dictionaries(st.sampled_from(["batch_layout", "schema_id", "x"]), SCALARS, max_size=1),
)
HEADERS = st.fixed_dictionaries(
    {
        # mostly the right token, so that requests get past authentication
        "Authorization": st.sampled_from(
            [f"Bearer {TOKEN}"] * 4 + ["Bearer nope", "Basic abc", f"bearer  {TOKEN}", ""]
        ),
    },
    optional={
        "Content-Type": st.sampled_from(
            [
                "application/json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
            ]
        ),
    },
)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    config = parse_config(
        {
            "services": [
                {"name": "gen", "provider": "generator", "rate": 100},
                {"name": "files", "provider": "file", "base_dir": str(tmp / "out")},
            ],
            "connectors": [
                {
                    "name": "demo",
                    "checkpoint": {"enabled": True, "interval_ms": 100},
                    "source": {
                        "service_name": "gen",
                        "resource": "counter",
                        "output_encoding": "json",
                    },
                    "sinks": [
                        {
                            "service_name": "files",
                            "resource": "demo.jsonl",
                            "output_encoding": "json",
                        }
                    ],
                }
            ],
            "system": {"data_dir": str(tmp / "data"), "encryption_key_path": str(tmp / "k")},
        },
        "fuzz.toml",
        {},
    )
    options = ServiceOptions(
        api_port=0,
        api_token=TOKEN,
        environ={"MSTREAM_ENC_KEY": "33" * 32},
        progress_interval=600,
        stop_timeout=5,
    )
    with ServiceThread(config, options) as service:
        yield service.url


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def send(session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    """Send one request; a kept-alive connection the server had just closed is retried once.

    A client may reuse a pooled connection in the instant the server closes it (a race that
    widens under load; urllib3 does not resend non-idempotent requests by itself). The
    request then goes again on a fresh connection: a server that crashed or stopped
    answering fails the second attempt too.
    """
    try:
        return session.request(method, url, timeout=30, **kwargs)
    except requests.ConnectionError:
        SENT["resent"] += 1
        with requests.Session() as fresh:
            return fresh.request(method, url, timeout=30, **kwargs)


def check(response: requests.Response, method: str) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    assert "Traceback" not in response.text and 'File "' not in response.text
    if response.status_code >= 400 and method != "HEAD":
        body = response.json()
        assert set(body) == {"error"} and body["error"]["status"] == response.status_code
        assert isinstance(body["error"]["message"], str)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(method=METHODS, path=PATHS, query=QUERIES, body=BODIES, headers=HEADERS)
def test_fuzz_requests(
    base_url: str,
    session: requests.Session,
    method: str,
    path: str,
    query: str,
    body: bytes | None,
    headers: dict[str, str],
) -> None:
    response = send(session, method, base_url + path + query, data=body, headers=headers)
    SENT["count"] += 1
    check(response, method)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(["jobs", "services"]),
    body=st.one_of(NEAR_VALID, VALID_SERVICES, VALID_JOBS),
)
def test_fuzz_authorised_create_bodies(
    base_url: str, session: requests.Session, kind: str, body: Any
) -> None:
    """Structured bodies with the right token reach the validators (and never crash them)."""
    response = send(
        session,
        "POST",
        f"{base_url}/{kind}",
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    SENT["count"] += 1
    check(response, "POST")
    assert response.status_code in (201, 400, 409), response.text


def test_fuzz_sent_enough_and_service_is_healthy(base_url: str, session: requests.Session) -> None:
    assert SENT["count"] >= 1000, SENT
    assert SENT["resent"] <= 10, SENT  # a rare race, not a server that drops connections
    assert session.get(f"{base_url}/health", timeout=10).status_code == 200
    auth = {"Authorization": f"Bearer {TOKEN}"}
    jobs = session.get(f"{base_url}/jobs", headers=auth, timeout=10).json()["jobs"]
    assert isinstance(jobs, list)
    wait_for(
        lambda: session.get(f"{base_url}/metrics", headers=auth, timeout=10).status_code == 200
    )
