"""``GET /logs`` and ``GET /logs/stream`` (Server-Sent Events), in the original's shapes.

Both read the service's :class:`~mstream.log_buffer.LogBuffer`: entries are already masked
and capped by the secret log filter. The stream first sends the newest ``initial`` entries
(``[system.logs] stream_preload_count``, 100), then every new one as it is logged. A
follower that cannot keep up loses entries rather than holding memory: its queue holds
1000, and a ``dropped`` event says how many were skipped.

Example:
    >>> sse_event({"id": 3, "message": "hi"})
    'id: 3\\nevent: log\\ndata: {"id":3,"message":"hi"}\\n\\n'
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import orjson
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

from mstream.api.base import ApiContext, ApiError, ApiHandler
from mstream.log_buffer import Entry, LogBuffer, matches, parse_level, public

QUEUE_LIMIT = 1000
KEEPALIVE_SECONDS = 15.0


def sse_event(entry: Entry, event: str = "log") -> str:
    """One Server-Sent Event carrying ``entry`` as JSON."""
    data = orjson.dumps(entry).decode("utf-8")
    head = f"id: {entry['id']}\n" if "id" in entry else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


class _LogQuery(ApiHandler):
    """Shared query parsing: ``job_name``, ``level``."""

    def buffer(self) -> LogBuffer:
        if self.ctx.logs is None:
            raise ApiError(404, "logs are not kept by this process (no log buffer)")
        return self.ctx.logs

    def filters(self) -> tuple[str | None, int]:
        job = self.get_query_argument("job_name", None)
        raw_level = self.get_query_argument("level", "trace")
        try:
            level = parse_level(raw_level)
        except ValueError as exc:
            raise ApiError(400, f"level {exc}", {"level": str(exc)}) from None
        return job, level

    def count(self, name: str, default: int, top: int) -> int:
        raw = self.get_query_argument(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if not 0 <= value <= top:
            raise ApiError(
                400, f"{name} must be an integer from 0 to {top}", {name: f"got {raw[:20]!r}"}
            )
        return value


class LogsHandler(_LogQuery):
    """``GET /logs?job_name=&level=&limit=&since=``: recent entries, oldest first."""

    def get(self) -> None:
        """Read the buffer on the loop (a copy; logging threads keep appending)."""
        buffer = self.buffer()
        job, level = self.filters()
        limit = self.count("limit", 100, buffer.capacity)
        since = None
        raw_since = self.get_query_argument("since", None)
        if raw_since is not None:
            try:
                since = datetime.fromisoformat(raw_since.strip()).timestamp()
            except ValueError:
                raise ApiError(
                    400,
                    "since must be an RFC 3339 timestamp (e.g. 2026-12-03T10:00:00Z)",
                    {"since": f"got {raw_since[:40]!r}"},
                ) from None
        entries = buffer.query(job_name=job, min_level=level, since=since, limit=limit)
        self.send_json({"entries": entries, "count": len(entries)})


class LogStreamHandler(_LogQuery):
    """``GET /logs/stream?job_name=&level=&initial=``: the log as Server-Sent Events."""

    def initialize(self, ctx: ApiContext) -> None:
        """Receive the context; the stream ends when :attr:`_closed` is set."""
        super().initialize(ctx)
        self._closed = asyncio.Event()

    async def get(self) -> None:
        """Send the newest entries, then follow until the client goes away."""
        buffer = self.buffer()
        job, level = self.filters()
        initial = self.count("initial", self.ctx.logs_preload, buffer.capacity)
        loop = IOLoop.current()
        queue: asyncio.Queue[Entry] = asyncio.Queue(QUEUE_LIMIT)
        dropped = 0

        def push(entry: Entry) -> None:  # on the loop
            nonlocal dropped
            try:
                queue.put_nowait(entry)
            except asyncio.QueueFull:
                dropped += 1

        def on_entry(entry: Entry) -> None:  # on the logging thread: hand on, never block
            if matches(entry, job, level, None):
                loop.add_callback(push, public(entry))

        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        buffer.follow(on_entry)
        try:
            for entry in buffer.query(job_name=job, min_level=level, limit=initial):
                self.write(sse_event(entry))
            await self.flush()
            closed = asyncio.ensure_future(self._closed.wait())
            try:
                while True:
                    getter = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait(
                        {getter, closed},
                        timeout=KEEPALIVE_SECONDS,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if getter not in done:
                        getter.cancel()
                    if closed in done:
                        break
                    if getter in done:
                        if dropped:
                            self.write(sse_event({"dropped": dropped}, "dropped"))
                            dropped = 0
                        self.write(sse_event(getter.result()))
                    else:
                        self.write(": keep-alive\n\n")
                    await self.flush()
            finally:
                closed.cancel()
        except StreamClosedError:
            pass
        finally:
            buffer.unfollow(on_entry)

    def on_connection_close(self) -> None:
        """The client went away: end the stream."""
        self._closed.set()
