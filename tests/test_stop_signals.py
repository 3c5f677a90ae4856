"""Ctrl-C on a real ``mstream`` process whose sink has stalled.

The first SIGINT starts a drain and says how to skip it; the second stops the jobs without
draining, and the process exits within 2 seconds even though the sink never answers.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.waiting import wait_for

pytestmark = pytest.mark.api


class StalledServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def stalled() -> Iterator[StalledServer]:
    server = StalledServer()
    yield server
    server.close()


def test_second_ctrl_c_exits_within_two_seconds(tmp_path: Path, stalled: StalledServer) -> None:
    cfg = tmp_path / "stall.toml"
    cfg.write_text(
        f"""
[system]
data_dir = "{tmp_path / "data"}"
encryption_key_path = "{tmp_path / "mstream.key"}"

[[services]]
name = "gen"
provider = "generator"
rate = 100

[[services]]
name = "stuck"
provider = "http"
host = "http://127.0.0.1:{stalled.port}"
timeout_sec = 120
max_retries = 0

[[connectors]]
name = "to-stuck"
source = {{ service_name = "gen", resource = "counter", output_encoding = "json" }}
sinks = [{{ service_name = "stuck", resource = "/events", output_encoding = "json" }}]
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mstream.cli", "--config", str(cfg), "--api-port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")))
    reader.start()
    try:
        wait_for(lambda: bool(stalled.accepted), 30, "the sink's request to reach the server")
        proc.send_signal(signal.SIGINT)
        wait_for(
            lambda: any("press Ctrl-C again" in line for line in lines),
            10,
            "the drain message:\n" + json.dumps(lines[-5:]),
        )
        second = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        took = time.monotonic() - second
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
    text = "".join(lines)
    assert "draining 1 job(s); press Ctrl-C again to stop now" in text
    assert "stopping now without draining" in text
    assert took < 3.0, f"exited {took:.1f}s after the second Ctrl-C"
    assert "Traceback" not in text
