"""Server processes for the test fixtures: spawning, readiness polling, log access, stopping.

Every server runs in its own process group (so a launcher script and its Java child are
stopped together) and, where ``setpriv`` exists, with a parent-death signal so that a killed
pytest does not leave Java processes behind. An ``atexit`` handler stops whatever is still
running when the interpreter exits (including after Ctrl-C).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "ServerProcess",
    "ServerStartError",
    "ServerUnavailable",
    "free_port",
    "port_open",
    "stop_all",
]

LOG_TAIL_LINES = 60
"""How many log lines a failure report shows."""


class ServerUnavailable(Exception):
    """A server cannot be started on this machine (a tool is missing or a download failed).

    The fixtures turn this into a skip, or into a failure when ``MSTREAM_REQUIRE_SERVERS=1``.
    """


class ServerStartError(RuntimeError):
    """A server was launched but died or did not become ready in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    Args:
        host: Address to bind the probe socket to.

    Returns:
        The port number the kernel picked.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Tell whether a TCP connection to ``host:port`` succeeds.

    Args:
        host: Address to connect to.
        port: Port to connect to.
        timeout: Connect timeout in seconds.

    Returns:
        True when something accepted the connection.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_LIVE: set[ServerProcess] = set()
_LIVE_LOCK = threading.Lock()


class ServerProcess:
    """One running server process, its log file and its scratch directory.

    Attributes:
        name: Short server name (``kafka``, ``mongodb``, ``pubsub``).
        workdir: Scratch directory holding the server's data and its log file.
        log_path: File receiving the process's stdout and stderr.
        address: Connection string handed to tests, set once the server is ready.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        workdir: Path,
        env: Mapping[str, str] | None = None,
        log_name: str | None = None,
    ) -> None:
        """Spawn the process in a new process group, output appended to a log file.

        Args:
            name: Short server name, used in messages.
            argv: Command line to run.
            workdir: Scratch directory (must exist); also the process's working directory.
            env: Extra environment variables on top of ``os.environ``.
            log_name: Log file name inside ``workdir``; defaults to ``<name>.log``.
        """
        self.name = name
        self.workdir = workdir
        self.log_path = workdir / (log_name or f"{name}.log")
        self.address = ""
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        command = list(argv)
        setpriv = shutil.which("setpriv")
        if setpriv:
            # Kill the server if the test process dies without running its cleanup.
            command = [setpriv, "--pdeathsig", "KILL", "--", *command]
        self._log_file = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            command,
            cwd=workdir,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def pid(self) -> int:
        """Process id (also the process-group id)."""
        return self.popen.pid

    def alive(self) -> bool:
        """Tell whether the process is still running."""
        return self.popen.poll() is None

    def log_text(self) -> str:
        """Return the whole log written so far (empty if unreadable)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last ``lines`` lines of the log.

        Args:
            lines: Number of lines to return.

        Returns:
            The log tail, prefixed with the log file's path.
        """
        tail = self.log_text().splitlines()[-lines:]
        return f"(log file: {self.log_path})\n" + "\n".join(tail)

    def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float,
        what: str,
        interval: float = 0.1,
    ) -> None:
        """Poll ``condition`` until it is true, failing early if the process exits.

        Args:
            condition: Callable returning True once the awaited state is reached; exceptions
                it raises count as "not yet".
            timeout: Seconds to wait before giving up.
            what: Description of the awaited state, for the error message.
            interval: Seconds between polls.

        Raises:
            ServerStartError: The process exited or the timeout passed; the message carries
                the log tail.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise ServerStartError(
                    f"{self.name} exited with code {self.popen.returncode} while waiting for "
                    f"{what}\n{self.log_tail()}"
                )
            try:
                if condition():
                    return
            except Exception:  # any probe error means "not ready yet"
                pass
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"{self.name} did not reach {what} within {timeout:.0f}s\n{self.log_tail()}"
                )
            time.sleep(interval)

    def stop(self, grace: float = 10.0, keep_files: bool = False) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after ``grace`` seconds.

        Args:
            grace: Seconds to wait for a clean exit before SIGKILL.
            keep_files: Keep ``workdir`` (data and log) instead of deleting it.
        """
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if self.popen.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # The group may still hold children even when the leader is gone.
        _signal_group(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._log_file.close()
        if not keep_files:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to a process group, ignoring a group that no longer exists."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_all(keep_files: bool = False) -> None:
    """Stop every server process that is still running.

    Args:
        keep_files: Keep the servers' scratch directories.
    """
    with _LIVE_LOCK:
        live = list(_LIVE)
    for server in live:
        server.stop(grace=5.0, keep_files=keep_files)


atexit.register(stop_all, keep_files=True)
