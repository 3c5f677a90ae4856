"""The REST API's handlers: jobs, services, checkpoints, health, metrics, OpenAPI.

Blocking work (stopping and restarting jobs, store reads and writes, encryption) runs in
the context's executor; the IOLoop only parses, dispatches and writes.

Example:
    >>> sorted(m for m in ("get", "post", "delete", "put") if m in JobsHandler.__dict__)
    ['get', 'post']
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
import time
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mstream import __version__
from mstream.api.base import ApiError, ApiHandler
from mstream.api.metrics import metrics_registry
from mstream.api.openapi import openapi_document
from mstream.masking import cap_text
from mstream.runtime.monitoring import job_metrics, stats

NAME_HINT = "names are 1-100 characters: letters, digits, '_', '.', '-'"


class RootHandler(ApiHandler):
    """``GET /``: the dashboard for browsers, else a JSON pointer to the API.

    The dashboard (``ui/static/index.html``, when installed) is served when the client
    accepts HTML (browsers send ``Accept: text/html,...``); API clients get the JSON index.
    """

    open_access = True

    def initialize(self, ctx: Any, static_dir: Path | None = None) -> None:
        """Receive the context and the dashboard's folder (if any)."""
        super().initialize(ctx)
        self.static_dir = static_dir

    def get(self) -> None:
        """Serve the dashboard or describe the API."""
        self.set_header("Vary", "Accept")
        wants_html = "text/html" in self.request.headers.get("Accept", "")
        if (
            wants_html
            and self.static_dir is not None
            and (self.static_dir / "index.html").is_file()
        ):
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish((self.static_dir / "index.html").read_bytes())
            return
        self.send_json(
            {
                "name": "mstream",
                "api": {
                    "openapi": "/openapi.json",
                    "jobs": "/jobs",
                    "services": "/services",
                    "health": "/health",
                    "metrics": "/metrics",
                },
                "dashboard": "not installed",
            }
        )


class HealthHandler(ApiHandler):
    """``GET /health``: ``healthy`` or ``degraded`` (200), or 503 when the stores do not answer.

    ``degraded`` while any job is retrying or has failed, with one reason per such job;
    stopped and completed jobs do not count. A liveness probe uses ``/health`` (200 while
    the process serves); a readiness probe that should also fail while degraded uses
    ``/health?strict=true`` (503 when degraded).

    Open to probes without the token, but then only the status: version, uptime, job
    states and reasons need the token when one is set.
    """

    open_access = True

    async def get(self) -> None:
        """Probe the stores off the loop (with a timeout); read the job states on it."""
        stores = self.manager.stores
        strict = self.get_query_argument("strict", "false").lower() in ("1", "true", "yes")

        def probe() -> None:
            stores.checkpoints.latest("__health__")
            stores.jobs.get("__health__")
            stores.services.get("__health__")

        try:
            await asyncio.wait_for(self.blocking(probe), timeout=5.0)
        except (ApiError, TimeoutError) as exc:
            if not self.authenticated():
                raise ApiError(503, "unhealthy") from None
            reason = exc.message if isinstance(exc, ApiError) else "stores did not answer within 5s"
            raise ApiError(503, f"unhealthy: {reason}") from None
        states: dict[str, int] = {}
        reasons: list[str] = []
        for job in self.manager.list_jobs():
            state = job["state"]
            states[state] = states.get(state, 0) + 1
            if state == "retrying":
                retry = job.get("retry") or {}
                reasons.append(
                    f"job {job['name']} retrying (attempt {retry.get('attempt', '?')}/"
                    f"{retry.get('of', '?')}): {cap_text(str(retry.get('last_error')), 500)}"
                )
            elif state == "failed":
                reasons.append(f"job {job['name']} failed: {cap_text(str(job['reason']), 500)}")
        status = "degraded" if reasons else "healthy"
        code = 503 if strict and reasons else 200
        if not self.authenticated():
            self.send_json({"status": status}, code)
            return
        self.send_json(
            {
                "status": status,
                "healthy": not reasons,
                "version": __version__,
                "uptime_seconds": round(time.time() - self.ctx.started_at, 1),
                "jobs": states,
                "reasons": reasons,
            },
            code,
        )


class MetricsHandler(ApiHandler):
    """``GET /metrics``: every job's counters in the Prometheus text format."""

    def get(self) -> None:
        """Render the metrics (in-memory counters only: cheap enough for the loop)."""
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(metrics_registry(self.manager)))


class OpenApiHandler(ApiHandler):
    """``GET /openapi.json``: the OpenAPI 3.1 document of this API."""

    def get(self) -> None:
        """Return the document."""
        self.send_json(openapi_document())


class JobsHandler(ApiHandler):
    """``GET /jobs`` (all jobs) and ``POST /jobs`` (create and start one)."""

    def get(self) -> None:
        """Every job with state, reason, times and counters."""
        self.send_json({"jobs": self.manager.list_jobs()})

    async def post(self) -> None:
        """Validate the body like a ``[[connectors]]`` entry, create and start the job."""
        body = self.json_object()
        online = self._check_online()
        connector = await self.lifecycle(self.manager.create_from_dict(body, online=online))
        self.set_header("Location", f"/jobs/{connector.name}")
        self.send_json(self.call(self.manager.describe, connector.name), 201)


class JobHandler(ApiHandler):
    """``GET /jobs/{name}`` (definition, state, counters) and ``DELETE /jobs/{name}``."""

    def get(self, name: str) -> None:
        """One job."""
        self.send_json(self.call(self.manager.describe, name))

    async def delete(self, name: str) -> None:
        """Delete a job that is not running, with its checkpoints (409 while it runs)."""
        keep = self.get_query_argument("keep_checkpoints", "false").lower() in ("1", "true", "yes")
        await self.lifecycle(self.manager.delete(name, keep_checkpoints=keep))
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


class ClusterHandler(ApiHandler):
    """``GET /cluster``: the instances sharing the state stores and the job leases."""

    def get(self) -> None:
        """As of the last heartbeat (read on the loop)."""
        cluster = self.manager.cluster
        if cluster is not None:
            self.send_json(cluster.view())
            return
        self.send_json(
            {
                "enabled": False,
                "instance_id": self.manager.instance_id,
                "instances": [],
                "leases": [],
            }
        )


class StatsHandler(ApiHandler):
    """``GET /stats``: events and bytes processed across every job, jobs by state."""

    def get(self) -> None:
        """Read on the loop."""
        uptime = time.time() - self.ctx.started_at
        self.send_json(stats(self.manager.list_jobs(), uptime))


class JobMetricsHandler(ApiHandler):
    """``GET /jobs/{name}/metrics``: the job's processed events and bytes, lag, throughput."""

    def get(self, name: str) -> None:
        """Read on the loop (404 for an unknown job)."""
        self.send_json(job_metrics(self.call(self.manager.describe, name, definition=False)))


class JobMetricsHistoryHandler(ApiHandler):
    """``GET /jobs/{name}/metrics/history``: throughput and lag every 10 s, the last hour."""

    def get(self, name: str) -> None:
        """Read on the loop (404 for an unknown job)."""
        self.call(self.manager.describe, name, definition=False)
        self.send_json({"job": name, "points": self.manager.history.points(name)})


class JobStopHandler(ApiHandler):
    """``POST /jobs/{name}/stop``: drain in-flight events, save the checkpoint, stop."""

    async def post(self, name: str) -> None:
        """Stop (drains off the loop) and return the job."""
        self.call(self.manager.describe, name, definition=False)
        await self.lifecycle(self.manager.stop(name, timeout=self.ctx.stop_timeout))
        self.send_json(self.call(self.manager.describe, name))


class JobRestartHandler(ApiHandler):
    """``POST /jobs/{name}/restart``: stop (draining) and start again from the checkpoint."""

    async def post(self, name: str) -> None:
        """Restart and return the job (``?from=checkpoint|beginning`` for a completed one)."""
        self.call(self.manager.describe, name, definition=False)
        start_from = self.get_query_argument("from", None)
        await self.lifecycle(
            self.manager.restart(name, timeout=self.ctx.stop_timeout, start_from=start_from)
        )
        self.send_json(self.call(self.manager.describe, name))


class JobCheckpointsHandler(ApiHandler):
    """``GET /jobs/{name}/checkpoints?limit=N``: checkpoint history, newest first."""

    async def get(self, name: str) -> None:
        """Read the history off the loop."""
        raw = self.get_query_argument("limit", "50")
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise ApiError(
                400, "limit must be an integer from 1 to 100", {"limit": f"got {raw[:20]!r}"}
            )
        history = await self.lifecycle(self.manager.checkpoints(name, limit))
        self.send_json({"job": name, "checkpoints": history})


class ServicesHandler(ApiHandler):
    """``GET /services`` (all, masked) and ``POST /services`` (create one)."""

    def get(self) -> None:
        """Every service with secrets masked, and the jobs using it."""
        registry = self.manager.registry
        out = []
        for name in sorted(registry.all()):
            try:
                entry = registry.masked(name)
            except Exception:  # removed meanwhile
                continue
            entry["used_by"] = self.manager.jobs_using(name)
            out.append(entry)
        self.send_json({"services": out})

    async def post(self) -> None:
        """Validate the body like a ``[[services]]`` entry and store it encrypted."""
        body = self.json_object()
        service = await self.lifecycle(
            self.manager.create_service(body, online=self._check_online())
        )
        self.set_header("Location", f"/services/{service.name}")
        entry = self.call(self.manager.registry.masked, service.name)
        entry["used_by"] = []
        self.send_json(entry, 201)


class ServiceHandler(ApiHandler):
    """``GET /services/{name}`` (masked, with users) and ``DELETE /services/{name}``."""

    def get(self, name: str) -> None:
        """One service, masked, plus the jobs that use it."""
        entry = self.call(self.manager.registry.masked, name)
        entry["used_by"] = self.manager.jobs_using(name)
        self.send_json(entry)

    async def delete(self, name: str) -> None:
        """Remove it; 409 while any job (running or not) uses it."""
        await self.lifecycle(self.manager.delete_service(name))
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


class StaticHandler(ApiHandler):
    """``GET /static/{name}``: one file of the dashboard's folder (no sub-folders).

    Open without the token: a browser loads ``<script src>`` and stylesheets without an
    ``Authorization`` header and the dashboard's CSP forbids inline code; these files are
    the public dashboard code and hold no data. Odd names (``%00``, ``..``, slashes, over
    100 characters) get 400, unknown ones 404, both as JSON.
    """

    open_access = True
    NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

    def initialize(self, ctx: Any, static_dir: Path | None = None) -> None:
        """Receive the context and the dashboard's folder."""
        super().initialize(ctx)
        self.static_dir = static_dir

    def get(self, name: str) -> None:
        """Serve the file."""
        if not self.NAME.fullmatch(name) or ".." in name:
            raise ApiError(400, "bad static file name", {"name": f"got {name[:40]!r}"})
        path = self.static_dir / name if self.static_dir is not None else None
        if path is None or not path.is_file() or path.resolve().parent != self.static_dir:
            raise ApiError(404, f"no such static file: {name}")
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.set_header(
            "Content-Type", kind if kind.startswith("image/") else f"{kind}; charset=utf-8"
        )
        self.set_header("Cache-Control", "no-cache")
        self.finish(path.read_bytes())


class NotFoundHandler(ApiHandler):
    """Every unknown path: a JSON 404 (for any method)."""

    open_access = True

    def early_error(self) -> ApiError | None:
        """Every request here is a 404."""
        return ApiError(404, f"no such endpoint: {self.request.path[:200]}")
