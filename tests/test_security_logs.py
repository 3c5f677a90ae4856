"""Masking and logging cannot be used to stall the process, nor to leak a secret.

* Masking is linear: the adversarial inputs that made the old regex quadratic (long runs of
  letters, ``@``, ``:``, ``://``, ``&``) are masked in bounded time.
* Every log record is capped (8 KiB, with a mark) before it is masked, so one record costs
  a bounded amount whatever its size, and a secret cut by the cap is never half shown.
* The log filter reads an immutable snapshot of the secrets: a registry write stuck in a
  slow store blocks neither logging nor reads.
* Against the real service: an unauthenticated ``GET /`` + 60,000 characters (the reported
  attack) leaves ``/health`` answering within 1 s.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
import requests

from mstream.api.testing import ServiceThread
from mstream.config import parse_config
from mstream.config.model import ServiceConfig
from mstream.crypto import Cipher
from mstream.masking import MAX_MESSAGE_CHARS, mask_and_cap, mask_text
from mstream.registry import SecretLogFilter, ServiceRegistry
from mstream.service import ServiceOptions
from mstream.stores import MemoryServiceStore
from tests.waiting import wait_for

pytestmark = pytest.mark.security

ADVERSARIAL = {
    "letters": "L" * 1_000_000,
    "at-colon": "a:b@" * 250_000,
    "schemes": "x://" * 250_000,
    "params": "http://h/?" + "&a" * 500_000,
    "mixed": "ab://c:d@e?f=g&token=" * 50_000,
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_masking_is_linear_on_adversarial_text(name: str) -> None:
    text = ADVERSARIAL[name]
    began = time.perf_counter()
    mask_text(text, ["some-secret"])
    took = time.perf_counter() - began
    assert took < 2.0, f"{name}: {took:.2f}s for 1 MB"  # linear: ~0.05 s; quadratic: minutes
    began = time.perf_counter()
    mask_and_cap(text * 10, ["some-secret"])  # 10 MB, capped: a bounded window
    assert time.perf_counter() - began < 0.5


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("x", logging.INFO, "f", 1, "%s", (message,), None)


def test_a_log_record_is_capped_with_a_mark_and_a_cut_secret_is_not_shown() -> None:
    secret = "pw-" + "s" * 40
    registry = ServiceRegistry.in_memory([ServiceConfig("k", "kafka", {"sasl.password": secret})])
    filt = SecretLogFilter(registry)
    rec = record("x" * (MAX_MESSAGE_CHARS - 10) + secret + "y" * 10_000_000)
    began = time.perf_counter()
    filt.filter(rec)
    assert time.perf_counter() - began < 0.5
    message = rec.getMessage()
    assert len(message) < MAX_MESSAGE_CHARS + 100
    assert "[truncated" in message and "chars]" in message
    assert "pw-sss" not in message  # the part of the secret before the cut is masked too
    assert message.startswith("x" * (MAX_MESSAGE_CHARS - 10) + "**")


class SlowStore(MemoryServiceStore):
    """A service store whose writes block until released (a stalled MongoDB)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def put(self, name: str, blob: bytes) -> None:
        self.entered.set()
        self.release.wait(30)
        super().put(name, blob)


def test_a_stalled_store_write_blocks_neither_reads_nor_logging() -> None:
    store = SlowStore()
    registry = ServiceRegistry(store, Cipher(b"\x01" * 32))
    filt = SecretLogFilter(registry)
    writer = threading.Thread(
        target=registry.add, args=(ServiceConfig("slow", "kafka", {"sasl.password": "pw-1"}),)
    )
    writer.start()
    try:
        assert store.entered.wait(10)
        began = time.perf_counter()
        assert "slow" not in registry.all()  # not visible before it is stored
        filt.filter(record("a line while the store is stuck"))
        with pytest.raises(Exception, match="being changed"):
            registry.add(ServiceConfig("slow", "generator", {}))
        assert time.perf_counter() - began < 0.1
    finally:
        store.release.set()
        writer.join(10)
    assert "slow" in registry.all()
    rec = record("login with pw-1")
    filt.filter(rec)
    assert rec.getMessage() == "login with ****"


def test_a_huge_request_line_does_not_stall_health(tmp_path: Path) -> None:
    cfg = parse_config(
        {"system": {"data_dir": str(tmp_path / "d"), "encryption_key_path": str(tmp_path / "k")}},
        "test.toml",
        {},
    )
    options = ServiceOptions(api_port=0, environ={"MSTREAM_ENC_KEY": "44" * 32})
    with ServiceThread(cfg, options) as service:
        url = service.url
        worst: list[float] = []
        done = threading.Event()

        def probe() -> None:
            while not done.is_set():
                began = time.perf_counter()
                response = requests.get(f"{url}/health", timeout=10)
                worst.append(time.perf_counter() - began)
                assert response.status_code == 200

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            wait_for(lambda: len(worst) >= 3, 10, "health probes answering")
            for _ in range(5):
                attack = requests.get(url + "/" + "A" * 60_000, timeout=30)
                assert attack.status_code in (404, 414, 431), attack.status_code
            seen = len(worst)
            wait_for(lambda: len(worst) >= seen + 3, 10, "health probes after the attack")
        finally:
            done.set()
            prober.join(10)
        assert max(worst) < 1.0, f"slowest /health: {max(worst):.2f}s"
