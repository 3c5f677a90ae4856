"""Shared pytest configuration: the real-server fixtures live in ``tests/servers``."""

pytest_plugins = ["tests.servers.fixtures"]


def pytest_sessionfinish(session: object, exitstatus: object) -> None:
    """Stop jobs a test left running, at once (the exit hook would drain them for 30 s)."""
    from mstream.runtime.connector import _live

    left = list(_live)
    for connector in left:
        connector.stop(drain=False, timeout=0)
    for connector in left:
        connector.wait(5)
    if left:
        print(f"\njobs left running by tests, stopped: {', '.join(sorted(c.name for c in left))}")
