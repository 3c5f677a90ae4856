"""Pre-fetch and compile everything the test servers need: ``python -m tests.servers.prepare``.

Fetches the Kafka broker jars and mongo-java-server with Maven (into the user cache, see
``tests/servers/artifacts.py``), compiles the MongoDB launcher, and checks that the Pub/Sub
emulator is installed. The fixtures do the same lazily, so running this is optional; CI runs it
first so that download time is not charged to the first test that needs a server.

Exit status: 0 when every server is ready to start; 1 when something is missing, unless
``--allow-missing`` is given (then the missing servers' tests will be skipped).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from tests.servers import artifacts
from tests.servers.process import ServerStartError, ServerUnavailable


def _step(label: str, action: Callable[[], str]) -> bool:
    """Run one preparation step and print what it did.

    Args:
        label: Server name for the output.
        action: Callable doing the work and returning a description of the result.

    Returns:
        True on success.
    """
    began = time.monotonic()
    try:
        detail = action()
    except (ServerUnavailable, ServerStartError) as exc:
        print(f"{label}: NOT READY after {time.monotonic() - began:.1f}s: {exc}", flush=True)
        return False
    print(f"{label}: {detail} ({time.monotonic() - began:.1f}s)", flush=True)
    return True


def _kafka() -> str:
    """Fetch the Kafka jars."""
    prepared = artifacts.prepare_kafka()
    verb = "fetched jars into" if prepared.fetched else "jars already cached in"
    return f"{verb} {prepared.home / 'lib'}"


def _mongodb() -> str:
    """Fetch mongo-java-server and compile the launcher."""
    prepared = artifacts.prepare_mongodb()
    verb = "fetched jars and compiled launcher into" if prepared.fetched else "already cached in"
    return f"{verb} {prepared.home}"


def _pubsub() -> str:
    """Check that the emulator and Java are installed."""
    emulator = artifacts.find_pubsub_emulator()
    java = artifacts.find_java()
    return f"emulator {emulator}, java {java}"


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare all test servers.

    Args:
        argv: Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns:
        Process exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m tests.servers.prepare", description=__doc__)
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="exit 0 even when a server cannot be prepared (its tests will be skipped)",
    )
    args = parser.parse_args(argv)
    print(f"test-server cache: {artifacts.cache_root()}", flush=True)
    results = [_step("kafka", _kafka), _step("mongodb", _mongodb), _step("pubsub", _pubsub)]
    if all(results) or args.allow_missing:
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
