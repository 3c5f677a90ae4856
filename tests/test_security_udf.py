"""Script limits hold on every path an attacker found, in the sandbox and in a running job.

Each attack once ran unbounded (minutes, or for ever) with ``time_ms = 100``: a message
handler looping after the limit (Lua runs it from inside the limit hook, with hooks off),
``%b`` and back-reference patterns on long subjects (C code the hook cannot interrupt).
Now each fails with a limit error within the bound, and a job running such a script
dead-letters the event, keeps ``/health`` answering and can be stopped and deleted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.service import ServiceOptions
from tests.test_udf_sandbox import assert_fails, hostile
from tests.waiting import wait_for

pytestmark = [pytest.mark.security, pytest.mark.udf, pytest.mark.timeout(120)]

JSON = {"Content-Type": "application/json"}

ATTACKS = {
    "handler loops after an error": (
        'xpcall(function() error("x") end, function() while true do end end)',
        "limit exceeded",
    ),
    "handler loops after a limit": (
        "xpcall(function() while true do end end, function() while true do end end)",
        "limit exceeded",
    ),
    "nested handlers": (
        'xpcall(function() error("x") end, function() xpcall(function() error("y") end, '
        "function() while true do end end) while true do end end)",
        "limit exceeded",
    ),
    "__tostring of an error object loops": (
        "error(setmetatable({}, {__tostring = function() while true do end end}))",
        "limit exceeded",
    ),
    "__close loops": (
        "local x <close> = setmetatable({}, {__close = function() while true do end end}) "
        "while true do end",
        "limit exceeded",
    ),
    "%b on a long subject": ('string.find(string.rep("(", 200000), "%b()")', "too costly"),
    "back-reference on a long subject": (
        'string.find(string.rep("a", 30000), "(.-)%1b")',
        "too costly",
    ),
    "gsub with a looping replacement": (
        'string.gsub(string.rep("a", 100000), "a", function() while true do end end)',
        "limit exceeded",
    ),
    "sort with a looping comparator": (
        "local t = {} for i = 1, 100 do t[i] = i end "
        "table.sort(t, function(a, b) while true do end end)",
        "limit exceeded",
    ),
    "a gigabyte string": ('local s = string.rep("x", 1e9)', "memory limit"),
    "2^53 empty repetitions": ('string.rep("", 2^53, "") error("done")', "done"),
    "2^53 repetitions of a byte": (
        'local s = string.rep("x", 2^53)',
        "memory limit|not enough|too large",
    ),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_path_is_bounded(name: str) -> None:
    body, pattern = ATTACKS[name]
    assert_fails(hostile(body, time_ms=100), pattern)  # within 5 s, interpreter reusable


def test_short_patterns_still_work() -> None:
    script = hostile(
        'return result({string.find("f(a(b)c)", "%b()"), ("abab"):match("(ab)%1")}, a)'
    )
    [(found, _)] = script.transform({"ok": False}, {})
    assert found == [2, "ab"]  # find's first value (a table constructor keeps one)


def test_a_job_running_an_attack_dead_letters_and_stays_stoppable(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "attack.lua").write_text(
        "function transform(d, a)\n"
        "  xpcall(function() error('x') end, function() while true do end end)\n"
        "  return result(d, a)\n"
        "end\n"
    )
    cfg = parse_config(
        {
            "services": [
                {"name": "gen", "provider": "generator", "rate": 50},
                {
                    "name": "scripts",
                    "provider": "udf",
                    "engine": {"kind": "lua", "time_ms": 100},
                    "script_path": str(scripts),
                },
                {"name": "files", "provider": "file", "base_dir": str(tmp_path)},
            ],
            "connectors": [
                {
                    "name": "attack",
                    "source": {
                        "service_name": "gen",
                        "resource": "counter",
                        "output_encoding": "json",
                    },
                    "middlewares": [
                        {
                            "service_name": "scripts",
                            "resource": "attack.lua",
                            "output_encoding": "json",
                        }
                    ],
                    "sinks": [
                        {
                            "service_name": "files",
                            "resource": "out.jsonl",
                            "output_encoding": "json",
                        }
                    ],
                    "dead_letter": {"service_name": "files", "resource": "dead.jsonl"},
                }
            ],
            "system": {
                "data_dir": str(tmp_path / "data"),
                "encryption_key_path": str(tmp_path / "mstream.key"),
            },
        },
        "t.toml",
        {},
    )
    with ServiceThread(cfg, ServiceOptions(api_port=0, progress_interval=60)) as svc:
        url = svc.url
        dead = tmp_path / "dead.jsonl"
        wait_for(
            lambda: dead.exists() and len(dead.read_text().splitlines()) >= 3,
            30,
            "dead letters",
        )
        began = time.perf_counter()
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        assert time.perf_counter() - began < 1.0
        record = json.loads(dead.read_text().splitlines()[0])
        assert "limit exceeded" in record["reason"]
        stopped = requests.post(f"{url}/jobs/attack/stop", headers=JSON, timeout=30)
        assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
        deleted = requests.delete(f"{url}/jobs/attack", headers=JSON, timeout=30)
        assert deleted.status_code == 204
    assert not (tmp_path / "out.jsonl").exists() or not (tmp_path / "out.jsonl").read_text()
