"""The control loop: the one thread on which job lifecycle and job tables change.

The rule, for every newcomer to the runtime:

* The job manager's tables (jobs, desired states, operations in progress) are read and
  written **only on the control loop** - the Tornado IOLoop that also serves the REST API
  and the dashboard. Nothing guards them but that; there is no lock to take.
* Blocking work (store I/O, waiting for a connector to stop) never runs on the loop: a
  coroutine on the loop hands it to the executor with :meth:`ControlLoop.io` and continues
  when it is done.
* Other threads (connector threads, client callbacks, a script) reach the loop only
  through ``IOLoop.add_callback`` (its one thread-safe method): :meth:`ControlLoop.post`
  to notify, :meth:`ControlLoop.call` to run something there and wait for its result.

When mstream runs as a service the loop is the service's; a script or a notebook that
builds a manager without one gets a loop on a thread of its own.

Example:
    >>> control = ControlLoop()              # its own loop thread
    >>> async def double(x):
    ...     return 2 * await control.io(abs, -x)
    >>> control.call(double, 21)              # from this (non-loop) thread
    42
    >>> control.close()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from tornado.ioloop import IOLoop

T = TypeVar("T")


class ControlLoop:
    """Where the control plane runs, and the only ways other threads reach it.

    Args:
        loop: the IOLoop to use; ``None`` starts one on a thread of its own. A given loop
            must be the current thread's (construct it on the loop).
        executor: where :meth:`io` runs blocking calls (the loop's default executor when
            omitted).
    """

    def __init__(
        self, loop: IOLoop | None = None, executor: concurrent.futures.Executor | None = None
    ) -> None:
        self.executor = executor
        self._own: threading.Thread | None = None
        if loop is not None:
            self.loop = loop
            self._ident = threading.get_ident()
            return
        ready = threading.Event()
        holder: list[IOLoop] = []

        def serve() -> None:
            asyncio.set_event_loop(asyncio.new_event_loop())
            holder.append(IOLoop.current())
            ready.set()
            holder[0].start()
            holder[0].close(all_fds=False)

        # a daemon: the loop holds no data (connectors save their own checkpoints)
        self._own = threading.Thread(target=serve, name="mstream-control", daemon=True)
        self._own.start()
        ready.wait()
        self.loop = holder[0]
        self._ident = self._own.ident or 0

    def on_loop(self) -> bool:
        """Whether the calling thread is the control loop's."""
        return threading.get_ident() == self._ident

    def assert_on_loop(self) -> None:
        """Raise unless called on the control loop (the tables' only guard)."""
        if not self.on_loop():
            raise RuntimeError(
                "job lifecycle runs on the control loop; from another thread use ControlLoop.call"
            )

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon (thread-safe, returns at once)."""
        self.loop.add_callback(fn, *args)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """Run ``fn(*args)`` (a function or a coroutine function) on the loop and wait.

        From the loop itself a plain function runs at once; a coroutine function cannot be
        waited for there (``await`` it instead).

        Raises:
            Exception: whatever ``fn`` raised.
            TimeoutError: no result within ``timeout`` seconds.
        """
        if self.on_loop():
            if inspect.iscoroutinefunction(fn):
                raise RuntimeError(f"await {fn.__name__}() on the control loop; call() blocks")
            return fn(*args)
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()

        async def run() -> None:
            try:
                value = fn(*args)
                if inspect.isawaitable(value):
                    value = await value
            except BaseException as exc:  # handed to the waiting thread
                result.set_exception(exc)
            else:
                result.set_result(value)

        self.loop.add_callback(run)
        return result.result(timeout)

    async def io(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking ``fn`` off the loop and return its result to the awaiting coroutine."""
        return await self.loop.run_in_executor(
            self.executor, functools.partial(fn, *args, **kwargs)
        )

    def close(self) -> None:
        """Stop the loop this object started (a given loop is left alone)."""
        if self._own is not None:
            self.loop.add_callback(self.loop.stop)
            self._own.join(5)
            self._own = None
