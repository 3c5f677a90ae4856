"""Start each test server on free loopback ports and wait until it answers.

Each ``start_*`` function returns a ready :class:`~tests.servers.process.ServerProcess` whose
``address`` is the connection string for tests, or raises
:class:`~tests.servers.process.ServerUnavailable` (a tool is missing) or
:class:`~tests.servers.process.ServerStartError` (the server died or timed out).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.servers import artifacts
from tests.servers.process import (
    ServerProcess,
    ServerStartError,
    free_port,
    port_open,
)

__all__ = ["Started", "start_kafka", "start_mongodb", "start_pubsub"]

HOST = "127.0.0.1"
START_TIMEOUT = float(os.environ.get("MSTREAM_TEST_SERVER_START_TIMEOUT", "120"))
"""Seconds a server may take to become ready."""
BIND_RETRIES = 3
"""Launch attempts when a picked port was taken by someone else in the meantime."""
_BIND_ERROR = re.compile(r"BindException|Address already in use")


@dataclass
class Started:
    """A ready server and how long it took.

    Attributes:
        server: The running process (``server.address`` is the connection string).
        prepare_seconds: Time spent fetching/compiling artifacts (0 when cached).
        start_seconds: Time from launch until the server answered.
    """

    server: ServerProcess
    prepare_seconds: float
    start_seconds: float


def _workdir(name: str) -> Path:
    """Create a fresh scratch directory for one server."""
    return Path(tempfile.mkdtemp(prefix=f"mstream-test-{name}-"))


def _kafka_cluster_id() -> str:
    """Return a random Kafka cluster id (URL-safe base64 of a UUID, no padding)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _kafka_properties(workdir: Path, port: int, controller_port: int) -> str:
    """Return ``server.properties`` for a single combined broker/controller node."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(workdir / "data"),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "background.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "log.segment.bytes": str(64 * 1024 * 1024),
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _kafka_ready(bootstrap: str, port: int) -> bool:
    """Tell whether the broker serves metadata that lists at least one broker."""
    if not port_open(HOST, port):
        return False
    from kafka import KafkaAdminClient  # imported lazily: only Kafka tests need it

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="mstream-test-probe",
        request_timeout_ms=5000,
    )
    try:
        return bool(admin.describe_cluster().get("brokers"))
    finally:
        admin.close()


def start_kafka() -> Started:
    """Start Apache Kafka in KRaft mode (one broker+controller process).

    Returns:
        The ready broker; its address is ``127.0.0.1:PORT``.

    Raises:
        ServerUnavailable: Java/Maven missing or the jars could not be fetched.
        ServerStartError: The broker failed to format, start or answer.
    """
    began = time.monotonic()
    prepared = artifacts.prepare_kafka()
    java = artifacts.find_java()
    prepare_seconds = time.monotonic() - began

    for attempt in range(1, BIND_RETRIES + 1):
        workdir = _workdir("kafka")
        port, controller_port = free_port(HOST), free_port(HOST)
        while controller_port == port:
            controller_port = free_port(HOST)
        config = workdir / "server.properties"
        config.write_text(_kafka_properties(workdir, port, controller_port))
        jvm = [
            java,
            "-Djava.awt.headless=true",
            "-Djava.net.preferIPv4Stack=true",
            f"-Dlog4j2.configurationFile={artifacts.KAFKA_LOG4J}",
            "-cp",
            prepared.classpath,
        ]
        started = time.monotonic()
        fmt = subprocess.run(
            [
                *jvm[:1],
                "-Xmx256m",
                "-XX:TieredStopAtLevel=1",
                *jvm[1:],
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                _kafka_cluster_id(),
                "--config",
                str(config),
            ],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if fmt.returncode != 0:
            raise ServerStartError(
                f"kafka storage format failed (exit {fmt.returncode}):\n"
                f"{fmt.stdout[-4000:]}{fmt.stderr[-4000:]}"
            )
        server = ServerProcess(
            "kafka",
            [*jvm[:1], "-Xms128m", "-Xmx512m", *jvm[1:], "kafka.Kafka", str(config)],
            workdir,
        )
        bootstrap = f"{HOST}:{port}"
        try:
            server.wait_until(
                lambda bootstrap=bootstrap, port=port: _kafka_ready(bootstrap, port),
                START_TIMEOUT,
                "a broker answering metadata requests",
                interval=0.2,
            )
        except ServerStartError:
            log = server.log_text()
            server.stop(grace=2.0, keep_files=True)
            if attempt < BIND_RETRIES and _BIND_ERROR.search(log):
                continue
            raise
        server.address = bootstrap
        return Started(server, prepare_seconds, time.monotonic() - started)
    raise AssertionError("unreachable")  # pragma: no cover


_MONGO_READY = re.compile(r"^MONGODB READY (\S+):(\d+)", re.MULTILINE)


def start_mongodb(version: str = "5.0.0", wire_version: int = 13) -> Started:
    """Start mongo-java-server (memory backend, oplog on) on a free port.

    Args:
        version: Server version reported by ``hello``/``buildInfo``.
        wire_version: ``maxWireVersion`` reported by ``hello`` (PyMongo 4.20 needs >= 9).

    Returns:
        The ready server; its address is ``mongodb://127.0.0.1:PORT/``.

    Raises:
        ServerUnavailable: Java/javac/Maven missing or the jars could not be fetched.
        ServerStartError: The server failed to start or answer.
    """
    began = time.monotonic()
    prepared = artifacts.prepare_mongodb()
    java = artifacts.find_java()
    prepare_seconds = time.monotonic() - began

    started = time.monotonic()
    server = ServerProcess(
        "mongodb",
        [
            java,
            "-Xms64m",
            "-Xmx512m",
            "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp",
            prepared.classpath,
            "MongoServerMain",
            HOST,
            "0",
            version,
            str(wire_version),
        ],
        _workdir("mongodb"),
    )
    found: list[tuple[str, int]] = []

    def ready() -> bool:
        match = _MONGO_READY.search(server.log_text())
        if not match:
            return False
        host, port = match.group(1), int(match.group(2))
        if not port_open(host, port):
            return False
        found.append((host, port))
        return True

    try:
        server.wait_until(ready, START_TIMEOUT, "the MONGODB READY line and an open port")
    except ServerStartError:
        server.stop(grace=2.0, keep_files=True)
        raise
    host, port = found[-1]
    server.address = f"mongodb://{host}:{port}/"
    return Started(server, prepare_seconds, time.monotonic() - started)


def _pubsub_ready(port: int) -> bool:
    """Tell whether the emulator answers its HTTP health check (``GET /`` -> ``Ok``)."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=2) as response:
        return response.status == 200


def start_pubsub() -> Started:
    """Start Google's Pub/Sub emulator on a free port.

    Returns:
        The ready emulator; its address is ``127.0.0.1:PORT`` (for ``PUBSUB_EMULATOR_HOST``).

    Raises:
        ServerUnavailable: The emulator or Java is missing.
        ServerStartError: The emulator failed to start or answer.
    """
    began = time.monotonic()
    emulator = artifacts.find_pubsub_emulator()
    artifacts.find_java()
    prepare_seconds = time.monotonic() - began

    for attempt in range(1, BIND_RETRIES + 1):
        port = free_port(HOST)
        started = time.monotonic()
        server = ServerProcess(
            "pubsub",
            [emulator, f"--host={HOST}", f"--port={port}"],
            _workdir("pubsub"),
            env={"JAVA_OPTS": "-Xms64m -Xmx512m -Djava.awt.headless=true"},
        )
        try:
            server.wait_until(
                lambda port=port: port_open(HOST, port) and _pubsub_ready(port),
                START_TIMEOUT,
                "an HTTP answer on its port",
            )
        except ServerStartError:
            log = server.log_text()
            server.stop(grace=2.0, keep_files=True)
            if attempt < BIND_RETRIES and _BIND_ERROR.search(log):
                continue
            raise
        server.address = f"{HOST}:{port}"
        return Started(server, prepare_seconds, time.monotonic() - started)
    raise AssertionError("unreachable")  # pragma: no cover
