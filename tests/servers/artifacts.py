"""Maven artifacts and compiled launchers for the test servers, kept in a user cache directory.

Each server's jars are copied by ``mvn dependency:copy-dependencies`` from its ``pom.xml`` into
``<cache>/<name>-<hash>/lib`` where ``<hash>`` covers the pom (and any Java source), so an edited
pom gets a fresh directory. Maven keeps the downloads in ``~/.m2`` as usual. A file lock makes
concurrent test runs wait for one another instead of fetching twice.

The cache root is ``$MSTREAM_TEST_SERVERS_CACHE``, else ``$XDG_CACHE_HOME/mstream-test-servers``,
else ``~/.cache/mstream-test-servers``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers.process import ServerStartError, ServerUnavailable

__all__ = [
    "HERE",
    "PUBSUB_EMULATOR_DEFAULT",
    "Prepared",
    "cache_root",
    "find_java",
    "find_pubsub_emulator",
    "prepare_kafka",
    "prepare_mongodb",
]

HERE = Path(__file__).resolve().parent
KAFKA_POM = HERE / "kafka" / "pom.xml"
KAFKA_LOG4J = HERE / "kafka" / "log4j2.properties"
MONGODB_POM = HERE / "mongodb" / "pom.xml"
MONGODB_MAIN = HERE / "mongodb" / "MongoServerMain.java"
PUBSUB_EMULATOR_DEFAULT = Path(
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
)
MAVEN_TIMEOUT = 900.0
"""Seconds one ``mvn`` run may take (a cold ``~/.m2`` downloads about 60 MB for Kafka)."""


@dataclass(frozen=True)
class Prepared:
    """What a server needs on disk to start.

    Attributes:
        classpath: Java class path (jar directory wildcard, plus compiled classes if any).
        home: The cache directory holding ``lib/`` (and ``classes/``).
        fetched: True when this call ran Maven or javac, False when the cache was reused.
    """

    classpath: str
    home: Path
    fetched: bool


def cache_root() -> Path:
    """Return (and create) the cache directory for test-server artifacts."""
    explicit = os.environ.get("MSTREAM_TEST_SERVERS_CACHE")
    if explicit:
        root = Path(explicit)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) if xdg else Path.home() / ".cache"
        root = base / "mstream-test-servers"
    root.mkdir(parents=True, exist_ok=True)
    return root


def find_java() -> str:
    """Return the ``java`` executable (``$JAVA_HOME/bin/java`` first, then ``PATH``).

    Raises:
        ServerUnavailable: No Java runtime was found.
    """
    return _find_jdk_tool("java")


def _find_jdk_tool(tool: str) -> str:
    """Return a JDK tool from ``$JAVA_HOME/bin`` or ``PATH``.

    Args:
        tool: Executable name, e.g. ``java`` or ``javac``.

    Raises:
        ServerUnavailable: The tool was not found.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(tool)
    if not found:
        raise ServerUnavailable(f"`{tool}` not found (install a JDK 17+, e.g. openjdk-17-jdk)")
    return found


def find_pubsub_emulator() -> str:
    """Return the Pub/Sub emulator launcher script.

    Looked up in ``$MSTREAM_PUBSUB_EMULATOR``, the Debian google-cloud-sdk location, then next
    to a ``gcloud`` found on ``PATH``.

    Raises:
        ServerUnavailable: The emulator is not installed.
    """
    candidates: list[Path] = []
    explicit = os.environ.get("MSTREAM_PUBSUB_EMULATOR")
    if explicit:
        candidates.append(Path(explicit))
    candidates.append(PUBSUB_EMULATOR_DEFAULT)
    gcloud = shutil.which("gcloud")
    if gcloud:
        sdk = Path(gcloud).resolve().parent.parent
        candidates.append(sdk / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ServerUnavailable(
        "Pub/Sub emulator not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); install the google-cloud-cli-pubsub-emulator package or set "
        "MSTREAM_PUBSUB_EMULATOR"
    )


def _digest(*paths: Path) -> str:
    """Return a short hash of the given files' contents."""
    sha = hashlib.sha256()
    for path in paths:
        sha.update(path.name.encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the duration of the block."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _copy_dependencies(pom: Path, lib_dir: Path) -> None:
    """Run Maven to copy ``pom``'s dependencies (transitively) into ``lib_dir``.

    Raises:
        ServerUnavailable: ``mvn`` is missing or failed (e.g. the repository was unreachable).
    """
    mvn = shutil.which("mvn")
    if not mvn:
        raise ServerUnavailable("`mvn` not found (install Maven, e.g. the maven package)")
    staging = Path(tempfile.mkdtemp(prefix=lib_dir.name + "-", dir=lib_dir.parent))
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=MAVEN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ServerUnavailable(f"`mvn` timed out after {MAVEN_TIMEOUT:.0f}s for {pom}") from exc
    if result.returncode != 0 or not any(staging.glob("*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        output = (result.stdout + result.stderr).strip().splitlines()[-25:]
        raise ServerUnavailable(
            f"`mvn dependency:copy-dependencies` failed for {pom} (exit {result.returncode}):\n"
            + "\n".join(output)
        )
    shutil.rmtree(lib_dir, ignore_errors=True)
    staging.rename(lib_dir)


def prepare_kafka() -> Prepared:
    """Make sure the Kafka broker jars are in the cache, fetching them if needed.

    Returns:
        The class path and cache directory.

    Raises:
        ServerUnavailable: Java or Maven is missing, or the fetch failed.
    """
    find_java()
    home = cache_root() / f"kafka-{_digest(KAFKA_POM)}"
    home.mkdir(parents=True, exist_ok=True)
    marker = home / ".complete"
    fetched = False
    with _locked(home / ".lock"):
        if not marker.exists():
            _copy_dependencies(KAFKA_POM, home / "lib")
            marker.write_text("ok\n")
            fetched = True
    return Prepared(classpath=str(home / "lib" / "*"), home=home, fetched=fetched)


def prepare_mongodb() -> Prepared:
    """Make sure mongo-java-server's jars and the compiled launcher are in the cache.

    Returns:
        The class path (jars plus compiled ``MongoServerMain``) and cache directory.

    Raises:
        ServerUnavailable: Java, javac or Maven is missing, or the fetch failed.
        ServerStartError: ``MongoServerMain.java`` did not compile.
    """
    find_java()
    home = cache_root() / f"mongodb-{_digest(MONGODB_POM, MONGODB_MAIN)}"
    home.mkdir(parents=True, exist_ok=True)
    marker = home / ".complete"
    lib = home / "lib"
    classes = home / "classes"
    fetched = False
    with _locked(home / ".lock"):
        if not marker.exists():
            javac = _find_jdk_tool("javac")
            _copy_dependencies(MONGODB_POM, lib)
            shutil.rmtree(classes, ignore_errors=True)
            classes.mkdir()
            result = subprocess.run(
                [javac, "-cp", str(lib / "*"), "-d", str(classes), str(MONGODB_MAIN)],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if result.returncode != 0:
                raise ServerStartError(
                    f"javac failed for {MONGODB_MAIN}:\n{result.stdout}{result.stderr}"
                )
            marker.write_text("ok\n")
            fetched = True
    return Prepared(
        classpath=f"{classes}{os.pathsep}{lib / '*'}",
        home=home,
        fetched=fetched,
    )
