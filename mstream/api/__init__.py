"""The REST API on Tornado: jobs, services, checkpoints, health, metrics and OpenAPI.

Example:
    >>> from mstream.api import ROUTES
    >>> ("/jobs/{name}/restart" in [p for p, _ in ROUTES])
    True
"""

from mstream.api.app import ROUTES, dashboard_dir, make_app, start_server
from mstream.api.base import DEFAULT_MAX_BODY, ApiContext, ApiError, ApiHandler
from mstream.api.openapi import openapi_document

__all__ = [
    "DEFAULT_MAX_BODY",
    "ROUTES",
    "ApiContext",
    "ApiError",
    "ApiHandler",
    "dashboard_dir",
    "make_app",
    "openapi_document",
    "start_server",
]
