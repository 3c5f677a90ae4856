"""Pytest plugin: session-scoped real servers for Kafka, MongoDB and Pub/Sub tests.

Loaded from ``tests/conftest.py``. Servers start lazily, once per session, the first time a
test asks for their fixture, and stop when the session ends (an ``atexit`` handler and a
parent-death signal cover Ctrl-C and a killed pytest).

Fixtures:
    kafka_bootstrap: ``"127.0.0.1:PORT"`` of an Apache Kafka broker (KRaft mode).
    mongodb_uri: ``"mongodb://127.0.0.1:PORT/"`` of the mongo-java-server stand-in, or
        ``$MSTREAM_TEST_MONGODB_URI`` when that is set (no stand-in is started then).
    pubsub_emulator_host: ``"127.0.0.1:PORT"`` of Google's Pub/Sub emulator.
    pubsub_env: same value, with ``PUBSUB_EMULATOR_HOST`` set for the test (function scope).
    unique_name: ``"t-<8 hex digits>"``, a fresh name for topics, collections, subscriptions.

A server that cannot be started here (Java, Maven or the emulator missing, a download refused)
makes its tests skip with the reason, or fail when ``MSTREAM_REQUIRE_SERVERS=1``. A server that
was launched but died or never answered is an error either way. When a test that used a server
fails, the tail of that server's log is attached to the failure report. The terminal summary
ends with one line giving each server's start time.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.servers import launchers
from tests.servers.process import ServerProcess, ServerUnavailable

__all__ = [
    "kafka_bootstrap",
    "mongodb_uri",
    "pubsub_emulator_host",
    "pubsub_env",
    "unique_name",
]

REQUIRE_ENV = "MSTREAM_REQUIRE_SERVERS"
MONGODB_URI_ENV = "MSTREAM_TEST_MONGODB_URI"
_FIXTURE_SERVERS = {
    "kafka_bootstrap": "kafka",
    "mongodb_uri": "mongodb",
    "pubsub_emulator_host": "pubsub",
}


@dataclass
class _SessionServers:
    """What happened to each server during this session (for reports and the summary)."""

    running: dict[str, ServerProcess] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    kept_dirs: list[str] = field(default_factory=list)


_STATE = _SessionServers()


def servers_required() -> bool:
    """Tell whether a server that cannot start must fail the test instead of skipping it."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _unavailable(name: str, reason: str) -> None:
    """Skip the test, or fail it when servers are required.

    Args:
        name: Server name.
        reason: Why the server cannot be started.
    """
    message = f"{name} test server unavailable: {reason}"
    if servers_required():
        pytest.fail(f"{message} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(message)


def _serve(
    name: str, start: Callable[[], launchers.Started], request: pytest.FixtureRequest
) -> Iterator[str]:
    """Start one server, yield its address, stop it when the session ends.

    Args:
        name: Server name (``kafka``, ``mongodb``, ``pubsub``).
        start: Launcher returning the ready server.
        request: The fixture request (used to learn whether the session had failures).

    Yields:
        The server's connection string.
    """
    try:
        started = start()
    except ServerUnavailable as exc:
        _STATE.notes[name] = f"{name} unavailable"
        _unavailable(name, str(exc))
        raise  # not reached: _unavailable always raises
    except Exception:
        _STATE.notes[name] = f"{name} FAILED to start"
        raise
    server = started.server
    note = f"{name} started in {started.start_seconds:.1f}s"
    if started.prepare_seconds >= 0.5:
        note += f" (+{started.prepare_seconds:.1f}s fetching/compiling)"
    _STATE.notes[name] = note
    _STATE.running[name] = server
    try:
        yield server.address
    finally:
        _STATE.running.pop(name, None)
        keep = request.session.testsfailed > 0
        if keep:
            _STATE.kept_dirs.append(str(server.workdir))
        server.stop(keep_files=keep)


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """Bootstrap address ``"127.0.0.1:PORT"`` of a single-node Kafka broker (KRaft mode).

    Auto topic creation is on (1 partition); create multi-partition topics with the admin
    client. Isolate tests with :func:`unique_name` topics and group ids.
    """
    yield from _serve("kafka", launchers.start_kafka, request)


@pytest.fixture(scope="session")
def mongodb_uri(request: pytest.FixtureRequest) -> Iterator[str]:
    """Connection string ``"mongodb://127.0.0.1:PORT/"`` of the MongoDB stand-in.

    When ``MSTREAM_TEST_MONGODB_URI`` is set, that URI is returned and nothing is started.
    Isolate tests with :func:`unique_name` databases or collections.
    """
    external = os.environ.get(MONGODB_URI_ENV, "").strip()
    if external:
        _STATE.notes["mongodb"] = f"mongodb external (${MONGODB_URI_ENV})"
        yield external
        return
    yield from _serve("mongodb", launchers.start_mongodb, request)


@pytest.fixture(scope="session")
def pubsub_emulator_host(request: pytest.FixtureRequest) -> Iterator[str]:
    """Address ``"127.0.0.1:PORT"`` of the Pub/Sub emulator (value for PUBSUB_EMULATOR_HOST).

    The emulator accepts any project id; resource ids need at least 3 characters.
    """
    yield from _serve("pubsub", launchers.start_pubsub, request)


@pytest.fixture
def pubsub_env(pubsub_emulator_host: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Set ``PUBSUB_EMULATOR_HOST`` for the duration of one test.

    Returns:
        The emulator address (same as :func:`pubsub_emulator_host`).
    """
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator_host)
    return pubsub_emulator_host


@pytest.fixture
def unique_name() -> str:
    """Return a fresh name such as ``"t-1a2b3c4d"`` for topics, collections, groups."""
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the log tail of each server a failed test used to its report."""
    report: pytest.TestReport = yield
    if report.failed:
        names = getattr(item, "fixturenames", ())
        for fixture_name, server_name in _FIXTURE_SERVERS.items():
            server = _STATE.running.get(server_name)
            if fixture_name in names and server is not None:
                report.sections.append((f"{server_name} server log (tail)", server.log_tail()))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print one line with each server's start time, and where failed runs kept their logs."""
    if _STATE.notes:
        terminalreporter.write_line("servers: " + ", ".join(_STATE.notes.values()))
    if _STATE.kept_dirs:
        terminalreporter.write_line("server data and logs kept in: " + " ".join(_STATE.kept_dirs))
