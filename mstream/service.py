"""The ``mstream`` service: connectors, progress logging (and the REST API) on one IOLoop.

Connectors run on their own threads; the IOLoop only schedules control work and never
blocks: stopping jobs runs in an executor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass

from tornado.ioloop import IOLoop, PeriodicCallback

from mstream.config.model import Config
from mstream.runtime import JobManager
from mstream.stores import Stores

log = logging.getLogger("mstream")


@dataclass
class ServiceOptions:
    """How the service runs.

    Attributes:
        progress_interval: seconds between progress log lines.
        exit_when_done: stop the process once every job has finished (finite sources).
        data_dir: where embedded state lives (``MSTREAM_DATA_DIR`` or ``[system].data_dir``).
    """

    progress_interval: float = 5.0
    exit_when_done: bool = False
    data_dir: str | None = None


def open_stores(config: Config, data_dir: str | None = None) -> Stores:
    """The stores a service uses: embedded SQLite under the data directory."""
    directory = data_dir or os.environ.get("MSTREAM_DATA_DIR") or config.system.data_dir
    return Stores.embedded(directory)


async def run_service(config: Config, options: ServiceOptions | None = None) -> int:
    """Run the service until SIGINT/SIGTERM (or until every job is done); returns an exit code."""
    opts = options or ServiceOptions()
    loop = IOLoop.current()
    stores = open_stores(config, opts.data_dir)
    manager = JobManager(config, stores)
    finished = asyncio.Event()

    def request_stop(*_: object) -> None:
        loop.add_callback(finished.set)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            asyncio.get_running_loop().add_signal_handler(sig, request_stop)
        except (NotImplementedError, RuntimeError):
            signal.signal(sig, lambda *_: loop.add_callback_from_signal(finished.set))

    manager.start_enabled()
    log.info("mstream started: %d job(s) from %s", len(manager.connectors), config.path)

    sampler = PeriodicCallback(manager.sample, 1000)
    sampler.start()
    progress = PeriodicCallback(lambda: log.info("progress: %s", manager.progress_line()), opts.progress_interval * 1000)
    progress.start()

    def check_done() -> None:
        if manager.all_finished():
            finished.set()

    watcher = PeriodicCallback(check_done, 200) if opts.exit_when_done else None
    if watcher is not None:
        watcher.start()
    try:
        await finished.wait()
    finally:
        for callback in (sampler, progress, watcher):
            if callback is not None:
                callback.stop()
        log.info("mstream stopping: draining jobs")
        await loop.run_in_executor(None, manager.stop_all)
        manager.sample()
        log.info("final: %s", manager.progress_line())
        stores.close()
    failed = [c.name for c in manager.connectors.values() if c.state == "failed"]
    return 1 if failed and opts.exit_when_done else 0
