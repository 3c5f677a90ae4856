"""The Tornado application: routes, the HTTP server and its listening sockets.

Example:
    >>> from mstream.config import parse_config
    >>> from mstream.runtime import JobManager
    >>> from mstream.stores import Stores
    >>> app = make_app(ApiContext(JobManager(parse_config({}), Stores.in_memory())))
    >>> [path for path, _ in ROUTES][:3]
    ['/', '/health', '/metrics']
"""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from mstream.api.access import is_loopback, mask_token_query
from mstream.api.base import DISCARD_LIMIT, ApiContext
from mstream.api.dead_letters import DeadLetterReplayHandler, DeadLettersHandler
from mstream.api.handlers import (
    ClusterHandler,
    HealthHandler,
    JobCheckpointsHandler,
    JobHandler,
    JobMetricsHandler,
    JobMetricsHistoryHandler,
    JobRestartHandler,
    JobsHandler,
    JobStopHandler,
    MetricsHandler,
    NotFoundHandler,
    OpenApiHandler,
    RootHandler,
    ServiceHandler,
    ServicesHandler,
    StaticHandler,
    StatsHandler,
)
from mstream.api.logs import LogsHandler, LogStreamHandler
from mstream.api.resources import ResourceHandler, ResourceSchemaHandler, ResourcesHandler
from mstream.api.saved import (
    TestSuiteHandler,
    TestSuitesHandler,
    WorkspaceHandler,
    WorkspacesHandler,
)
from mstream.api.schemas import (
    SchemaConvertHandler,
    SchemaFillHandler,
    ServiceSchemaHandler,
    ServiceSchemasHandler,
)
from mstream.api.transform import (
    TransformRunHandler,
    TransformTestGenerateHandler,
    TransformTestRunHandler,
    TransformValidateHandler,
)

access_log = logging.getLogger("tornado.access")

ROUTES: list[tuple[str, type[RequestHandler]]] = [
    ("/", RootHandler),
    ("/health", HealthHandler),
    ("/metrics", MetricsHandler),
    ("/stats", StatsHandler),
    ("/cluster", ClusterHandler),
    ("/logs", LogsHandler),
    ("/test-suites", TestSuitesHandler),
    ("/test-suites/{name}", TestSuiteHandler),
    ("/workspaces", WorkspacesHandler),
    ("/workspaces/{name}", WorkspaceHandler),
    ("/transform/run", TransformRunHandler),
    ("/transform/validate", TransformValidateHandler),
    ("/transform/test/generate", TransformTestGenerateHandler),
    ("/transform/test/run", TransformTestRunHandler),
    ("/logs/stream", LogStreamHandler),
    ("/openapi.json", OpenApiHandler),
    ("/jobs", JobsHandler),
    ("/jobs/{name}", JobHandler),
    ("/jobs/{name}/stop", JobStopHandler),
    ("/jobs/{name}/restart", JobRestartHandler),
    ("/jobs/{name}/checkpoints", JobCheckpointsHandler),
    ("/jobs/{name}/metrics", JobMetricsHandler),
    ("/jobs/{name}/metrics/history", JobMetricsHistoryHandler),
    ("/jobs/{name}/dead-letters", DeadLettersHandler),
    ("/jobs/{name}/dead-letters/replay", DeadLetterReplayHandler),
    ("/services", ServicesHandler),
    ("/services/{name}", ServiceHandler),
    ("/services/{name}/schemas", ServiceSchemasHandler),
    ("/services/{name}/schemas/{resource}", ServiceSchemaHandler),
    ("/schema/fill", SchemaFillHandler),
    ("/schema/convert", SchemaConvertHandler),
    ("/services/{name}/resources", ResourcesHandler),
    ("/services/{name}/resources/{resource}", ResourceHandler),
    ("/services/{name}/resources/{resource}/schema", ResourceSchemaHandler),
]
"""The API's routes in OpenAPI notation (``{name}`` is one path segment)."""


def dashboard_dir() -> Path | None:
    """The dashboard's static folder (``mstream.ui.STATIC_DIR``) when it exists."""
    try:
        from mstream import ui  # type: ignore[attr-defined]
    except ImportError:
        return None
    static = getattr(ui, "STATIC_DIR", None)
    return Path(static) if static is not None and Path(static).is_dir() else None


def log_request(handler: RequestHandler) -> None:
    """One access-log line per request: status, method, URI (``token=`` masked), time.

    Headers (``Authorization`` included) are never logged.
    """
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    request = handler.request
    access_log.log(
        level,
        "%d %s %s (%s) %.2fms",
        status,
        request.method,
        mask_token_query(request.uri or ""),
        request.remote_ip,
        1000.0 * request.request_time(),
    )


def make_app(ctx: ApiContext, *, static_dir: Path | None = None, **settings: Any) -> Application:
    """The Tornado application of the REST API.

    Args:
        ctx: the handlers' dependencies.
        static_dir: the dashboard's folder (default: :func:`dashboard_dir`); when it holds
            files they are served under ``/static/``.
        settings: extra Tornado application settings.
    """
    static = static_dir if static_dir is not None else dashboard_dir()
    handlers: list[Any] = []
    for path, handler in ROUTES:
        pattern = (
            path.replace("{name}", "([^/]+)").replace("{resource}", "([^/]+)").replace(".", r"\.")
        )
        kwargs: dict[str, Any] = {"ctx": ctx}
        if handler is RootHandler:
            kwargs["static_dir"] = static
        handlers.append((pattern, handler, kwargs))
    if static is not None:
        folder = static.resolve()
        handlers.append((r"/static/(.*)", StaticHandler, {"ctx": ctx, "static_dir": folder}))
    return Application(
        handlers,
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx},
        compress_response=False,
        serve_traceback=False,
        log_function=log_request,
        mstream_context=ctx,
        **settings,
    )


def start_server(app: Application, host: str, port: int) -> tuple[HTTPServer, int]:
    """Listen on ``host:port`` (port 0 picks a free one); returns the server and its port.

    Raises:
        OSError: the address cannot be bound, or it is not loopback and the API has no
            token (``PermissionError``: an open API on the network is never served).
    """
    ctx = app.settings.get("mstream_context")
    if ctx is not None:
        ctx.loopback_only = is_loopback(host)
        if not ctx.loopback_only and not ctx.token:
            raise PermissionError(
                errno.EACCES,
                f"an API on the non-loopback address {host or '*'!r} needs MSTREAM_API_TOKEN",
            )
    sockets = bind_sockets(
        port, host, family=socket.AF_INET if host and ":" not in host else socket.AF_UNSPEC
    )
    server = HTTPServer(app, max_body_size=DISCARD_LIMIT, idle_connection_timeout=60)
    server.add_sockets(sockets)
    return server, int(sockets[0].getsockname()[1])
