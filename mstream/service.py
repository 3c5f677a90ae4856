"""The ``mstream`` service: connectors, the REST API and progress logging on one IOLoop.

The IOLoop is the control plane: job lifecycle and states (:mod:`mstream.runtime.control`),
the REST API and the dashboard. Connectors run on their own threads and report to it with
``IOLoop.add_callback``; everything that blocks (waiting for jobs, store I/O) runs in an
executor.

Start-up order: open the stores, load the encryption key, decrypt the stored services
(a wrong key or tampered data stops start-up with a clear error), merge the config file's
services, listen on ``MSTREAM_API_HOST:MSTREAM_API_PORT`` (default ``127.0.0.1:8719``; a
port conflict is reported before any job has run), then restore and start the jobs
(``[system.job_lifecycle] startup_state``; with ``safe_mode`` none is started).

Stopping: the API stops accepting work, every job drains (in-flight events delivered and
acknowledged, final checkpoint saved) within ``stop_timeout``; jobs still draining then are
stopped without draining (5 s more), and only when every job has finished are the stores
closed. Under :meth:`Service.run` the first SIGINT/SIGTERM drains; a second one
stops the jobs without draining and the process exits within 2 seconds, keeping every
checkpoint already saved.

Example:
    >>> opts = ServiceOptions.from_env({"MSTREAM_API_PORT": "9000", "MSTREAM_API_TOKEN": "t"})
    >>> opts.api_port, opts.api_host, opts.api_token
    (9000, '127.0.0.1', 't')
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop, PeriodicCallback

from mstream import file_access
from mstream.config.model import Config
from mstream.config.schema import INSTANCE_ID_ERROR, INSTANCE_ID_PATTERN
from mstream.crypto import ENV_KEY, ENV_KEY_FILE, Cipher, load_key
from mstream.errors import ConfigError
from mstream.log_buffer import LogBuffer
from mstream.registry import SecretLogFilter, ServiceRegistry
from mstream.runtime import ControlLoop, JobManager
from mstream.runtime.cluster import Coordinator, cluster_stores
from mstream.stores import Stores

log = logging.getLogger("mstream")

DEFAULT_API_PORT = 8719
DEFAULT_API_HOST = "127.0.0.1"


@dataclass
class ServiceOptions:
    """How the service runs.

    Attributes:
        progress_interval: seconds between progress log lines.
        exit_when_done: stop the process once every job has finished (finite sources).
        data_dir: where embedded state lives (``MSTREAM_DATA_DIR`` or ``[system].data_dir``).
        api: whether to serve the REST API.
        api_host: bind address (``MSTREAM_API_HOST``, default ``127.0.0.1``).
        api_port: port (``MSTREAM_API_PORT``, default 8719; 0 picks a free one).
        api_token: bearer token every API call needs (``MSTREAM_API_TOKEN``), if set.
        max_body_size: request bodies above this many bytes get 413.
        stop_timeout: seconds a job may take to drain when stopped.
        safe_mode: start with every stored job stopped (``mstream --safe-mode``).
        instance_id: this instance's id among several (``MSTREAM_INSTANCE_ID``; wins over
            ``[system] instance_id``).
        start_timeout: seconds a job may take to open its steps before the start watchdog
            fails it.
        environ: the environment to read keys from (``os.environ`` when omitted).
    """

    progress_interval: float = 5.0
    exit_when_done: bool = False
    data_dir: str | None = None
    api: bool = True
    api_host: str = DEFAULT_API_HOST
    api_port: int = DEFAULT_API_PORT
    api_token: str | None = None
    max_body_size: int = 1024 * 1024
    stop_timeout: float = 30.0
    safe_mode: bool = False
    instance_id: str | None = None
    start_timeout: float = 60.0
    environ: Mapping[str, str] | None = field(default=None, repr=False)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> ServiceOptions:
        """Options from ``MSTREAM_API_HOST``, ``MSTREAM_API_PORT`` and ``MSTREAM_API_TOKEN``.

        Raises:
            ConfigError: ``MSTREAM_API_PORT`` is not a port number.
        """
        env = os.environ if environ is None else environ
        raw_port = env.get("MSTREAM_API_PORT", "").strip() or str(DEFAULT_API_PORT)
        try:
            port = int(raw_port)
        except ValueError:
            port = -1
        if not 0 <= port <= 65535:
            raise ConfigError(
                f"MSTREAM_API_PORT: expected a port number 0-65535 (got {raw_port!r})"
            )
        instance_id = env.get("MSTREAM_INSTANCE_ID", "").strip() or None
        if instance_id is not None and not re.match(INSTANCE_ID_PATTERN, instance_id):
            raise ConfigError(
                "MSTREAM_INSTANCE_ID: " + INSTANCE_ID_ERROR.format(input=instance_id[:100])
            )
        opts = cls(
            instance_id=instance_id,
            api_host=env.get("MSTREAM_API_HOST", "").strip() or DEFAULT_API_HOST,
            api_port=port,
            api_token=env.get("MSTREAM_API_TOKEN") or None,
            environ=environ,
        )
        for key, value in overrides.items():
            if value is not None:
                setattr(opts, key, value)
        return opts


def open_stores(config: Config, data_dir: str | None = None) -> Stores:
    """The stores a service uses, as ``[system]`` says.

    Each of checkpoints, jobs and services lives in the MongoDB collection its
    ``[system.checkpoints]`` / ``[system.job_lifecycle]`` / ``[system.service_lifecycle]``
    ref names, and otherwise in the embedded SQLite file under the data directory
    (``data_dir``, ``MSTREAM_DATA_DIR`` or ``[system].data_dir``).

    Raises:
        ConfigError: a ref's service lacks ``connection_string`` or ``db_name``.
        StoreError: a store cannot be opened; for an unreachable MongoDB server the message
            names the store (``system.checkpoints``...) and the host, password masked.
    """
    directory = data_dir or os.environ.get("MSTREAM_DATA_DIR") or config.system.data_dir
    return Stores.from_config(config, directory)


def file_policy(config: Config, data_dir: str | None = None) -> file_access.FileAccessPolicy:
    """The file access policy of a service: ``[system] file_roots`` (or the start directory
    and the config file's ``base_dir`` values), with the key file, the data directory and
    the config file protected."""
    env = os.environ
    return file_access.FileAccessPolicy.for_service(
        file_roots=config.system.file_roots,
        config_base_dirs=[
            s.options["base_dir"]
            for s in config.services
            if s.provider == "file" and s.options.get("base_dir")
        ],
        key_file=env.get(ENV_KEY_FILE) or config.system.encryption_key_path,
        data_dir=data_dir or env.get("MSTREAM_DATA_DIR") or config.system.data_dir,
        config_path=config.path,
    )


def open_registry(
    config: Config, stores: Stores, environ: Mapping[str, str] | None = None
) -> ServiceRegistry:
    """Load the key, decrypt the stored services and merge the config file's services.

    Raises:
        ConfigError: a malformed key or an unusable key file.
        DecryptError: stored services were written with another key, or were tampered with.
    """
    env = os.environ if environ is None else environ
    key = load_key(config.system.encryption_key_path, env)
    if env.get(ENV_KEY):
        source = ENV_KEY
    else:
        source = f"key file {env.get(ENV_KEY_FILE) or config.system.encryption_key_path}"
    registry = ServiceRegistry(stores.services, Cipher(key), key_source=source)
    loaded = registry.load()
    registry.apply_file(config.services, config.system.startup_state)
    log.info(
        "services: %d stored, %d in total (encrypted with the %s)",
        loaded,
        len(registry.all()),
        source,
    )
    return registry


class Service:
    """The whole service: stores, registry, job manager and the API server.

    Build it, ``await start()``, then ``await stop()`` (or ``await run()`` for both plus
    signal handling). Tests build it twice on the same data directory to restart it.

    Example:
        >>> import asyncio, tempfile
        >>> from mstream.config import parse_config
        >>> d = tempfile.mkdtemp()
        >>> cfg = parse_config({"system": {"data_dir": d, "encryption_key_path": d + "/k"}})
        >>> async def demo():
        ...     svc = Service(cfg, ServiceOptions(api_port=0))
        ...     await svc.start(); port = svc.port; await svc.stop()
        ...     return port > 0
        >>> asyncio.run(demo())
        True
    """

    def __init__(self, config: Config, options: ServiceOptions | None = None) -> None:
        self.config = config
        self.options = options or ServiceOptions()
        self.stores: Stores | None = None
        self.registry: ServiceRegistry | None = None
        self.manager: JobManager | None = None
        self.server: HTTPServer | None = None
        self.port: int | None = None
        self.executor = ThreadPoolExecutor(16, thread_name_prefix="mstream-api")
        self._callbacks: list[PeriodicCallback] = []
        self._heartbeat: PeriodicCallback | None = None
        self._log_filter: SecretLogFilter | None = None
        self.logs: LogBuffer | None = None

    @property
    def url(self) -> str:
        """The API's base URL."""
        host = self.options.api_host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{self.port}"

    async def start(self) -> None:
        """Open state, restore services and jobs, and start serving.

        Raises:
            ConfigError: bad key, bad options, or the API port cannot be bound.
            StoreError: the state store cannot be opened or decrypted.
        """
        loop = IOLoop.current()
        opts = self.options
        file_access.install(file_policy(self.config, opts.data_dir))
        self.stores = await loop.run_in_executor(
            self.executor, open_stores, self.config, opts.data_dir
        )
        try:
            self.registry = await loop.run_in_executor(
                self.executor, open_registry, self.config, self.stores, opts.environ
            )
        except BaseException:
            self.stores.close()
            raise
        self._log_filter = SecretLogFilter(self.registry)
        self.logs = LogBuffer(self.config.system.logs.buffer_capacity)
        logging.getLogger().addHandler(self.logs)  # before the filter: it masks this one too
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._log_filter)
        self.manager = JobManager(
            self.config,
            self.stores,
            control=ControlLoop(loop, self.executor),
            registry=self.registry,
            start_timeout=opts.start_timeout,
        )
        if opts.api:
            from mstream.api import ApiContext, make_app, start_server

            ctx = ApiContext(
                self.manager,
                executor=self.executor,
                token=opts.api_token,
                max_body_size=opts.max_body_size,
                stop_timeout=opts.stop_timeout,
                logs=self.logs,
                logs_preload=self.config.system.logs.stream_preload_count,
            )
            try:
                self.server, self.port = start_server(make_app(ctx), opts.api_host, opts.api_port)
            except OSError as exc:
                await self.stop()
                raise ConfigError(
                    f"cannot listen on {opts.api_host}:{opts.api_port} ({exc.strerror}); "
                    "set MSTREAM_API_PORT / MSTREAM_API_HOST"
                ) from None
            log.info(
                "API listening on %s%s",
                self.url,
                " (bearer token required)" if opts.api_token else "",
            )
        manager = self.manager
        if opts.instance_id is not None:
            manager.instance_id = opts.instance_id
        shared = cluster_stores(self.stores)
        if shared is not None:
            manager.cluster = Coordinator(
                manager,
                shared,
                manager.instance_id,
                self.config.system.cluster,
                self.url if self.port is not None else None,
            )
            log.info(
                "instance %s: jobs shared with the other instances using these stores "
                "(lease %d ms)",
                manager.instance_id,
                self.config.system.cluster.lease_ttl_ms,
            )
        started = await manager.bootstrap(None, safe_mode=opts.safe_mode)
        log.info(
            "mstream started: %d job(s), %d running (startup_state = %s%s) from %s",
            len(manager.connectors) + len(manager.broken),
            len(started),
            self.config.system.startup_state,
            "; safe mode: no job started" if opts.safe_mode else "",
            self.config.path,
        )
        self._callbacks = [
            PeriodicCallback(self.manager.sample, 1000),
            PeriodicCallback(
                lambda: log.info(
                    "progress: %s", self.manager.progress_line() if self.manager else ""
                ),
                opts.progress_interval * 1000,
            ),
        ]
        if manager.cluster is not None:
            self._heartbeat = PeriodicCallback(
                manager.cluster.tick, self.config.system.cluster.heartbeat_interval_ms
            )
            self._callbacks.append(self._heartbeat)
        for callback in self._callbacks:
            callback.start()

    async def stop(self) -> None:
        """Stop serving, drain every job (their desired states are kept) and close the stores."""
        # the cluster heartbeat keeps renewing the leases while the jobs drain
        beat = self._heartbeat
        for callback in self._callbacks:
            if callback is not beat:
                callback.stop()
        self._callbacks = []
        if self.server is not None:
            self.server.stop()
            await self.server.close_all_connections()
            self.server = None
        loop = IOLoop.current()
        if self.manager is not None:
            manager = self.manager
            timeout = self.options.stop_timeout
            log.info("mstream stopping: draining jobs")
            still = await manager.stop_all(timeout=timeout)
            if still:
                log.error(
                    "job(s) %s did not drain within %.0fs; stopping them without draining "
                    "(each resumes from its last saved checkpoint)",
                    ", ".join(still),
                    timeout,
                )
                manager.abandon_all()
                still = await manager.stop_all(drain=False, timeout=5.0)
            if beat is not None:
                beat.stop()
                self._heartbeat = None
            if manager.cluster is not None:
                await manager.cluster.leave()
                manager.cluster.close()
            manager.sample()
            log.info("final: %s", manager.progress_line())
            await loop.run_in_executor(self.executor, manager.close)
            if still:
                # a step ignores every stop signal: its thread may still save a checkpoint,
                # so the stores stay open (the process exit closes them)
                log.error("job(s) %s still running; the stores are left open", ", ".join(still))
                self.stores = None
        if self.stores is not None:
            await loop.run_in_executor(self.executor, self.stores.close)
            self.stores = None
        file_access.install(file_access.FileAccessPolicy())
        if self._log_filter is not None:
            for handler in logging.getLogger().handlers:
                handler.removeFilter(self._log_filter)
            self._log_filter = None
        if self.logs is not None:
            logging.getLogger().removeHandler(self.logs)
        self.executor.shutdown(wait=False)

    async def run(self) -> int:
        """Start, wait for SIGINT/SIGTERM (or every job done), stop; returns an exit code."""
        loop = IOLoop.current()
        finished = asyncio.Event()

        signals = 0

        def request_stop(*_: object) -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                loop.add_callback(first_signal)
            elif signals == 2:
                loop.add_callback(second_signal)

        def first_signal() -> None:
            running = 0 if self.manager is None else len(self.manager.running_jobs())
            log.warning("draining %d job(s); press Ctrl-C again to stop now", running)
            finished.set()

        def second_signal() -> None:
            log.warning("stopping now without draining; saved checkpoints are kept")
            if self.manager is not None:
                self.manager.abandon_all()
            loop.call_later(2.0, exit_now)

        def exit_now() -> None:
            log.error("jobs did not stop within 2s of the second signal; exiting")
            logging.shutdown()
            os._exit(130)

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                asyncio.get_running_loop().add_signal_handler(sig, request_stop)
            except (NotImplementedError, RuntimeError):
                signal.signal(sig, lambda *_: loop.add_callback_from_signal(request_stop))

        await self.start()
        assert self.manager is not None
        manager = self.manager
        watcher = None
        if self.options.exit_when_done:

            def check_done() -> None:
                if manager.all_finished():
                    finished.set()

            watcher = PeriodicCallback(check_done, 200)
            watcher.start()
        try:
            await finished.wait()
        finally:
            if watcher is not None:
                watcher.stop()
            await self.stop()
        failed = [c.name for c in manager.connectors.values() if c.state == "failed"]
        return 1 if failed and self.options.exit_when_done else 0


async def run_service(config: Config, options: ServiceOptions | None = None) -> int:
    """Run the service until SIGINT/SIGTERM (or until every job is done); returns an exit code."""
    return await Service(config, options).run()
