"""Run the whole service (jobs + API) on a background thread: for tests and notebooks.

Example:
    >>> import tempfile, urllib.request, json
    >>> from mstream.config import parse_config
    >>> d = tempfile.mkdtemp()
    >>> cfg = parse_config({"system": {"data_dir": d, "encryption_key_path": d + "/k"}})
    >>> with ServiceThread(cfg) as svc:
    ...     json.load(urllib.request.urlopen(svc.url + "/health"))["status"]
    'healthy'
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from mstream.config.model import Config
from mstream.service import Service, ServiceOptions


class ServiceThread:
    """A :class:`~mstream.service.Service` on its own thread and event loop.

    Args:
        config: the configuration.
        options: service options (default: API on 127.0.0.1, a free port).
    """

    def __init__(self, config: Config, options: ServiceOptions | None = None) -> None:
        self.config = config
        self.options = options or ServiceOptions(api_port=0)
        self.service: Service | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        """The API's base URL."""
        assert self.service is not None
        return self.service.url

    def start(self, timeout: float = 60.0) -> ServiceThread:
        """Start and wait until the API listens.

        Raises:
            Exception: whatever the service raised while starting.
            TimeoutError: it did not start in time.
        """
        self._thread = threading.Thread(target=self._main, name="mstream-service", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the service did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.service = Service(self.config, self.options)
        try:
            await self.service.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.service.stop()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the service (draining jobs) and wait for its thread."""
        if self._loop is not None and self._stop is not None and self._error is None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError("the service did not stop in time")

    def __enter__(self) -> ServiceThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
