"""The OpenAPI 3.1 document of the REST API, written as data.

``tests/test_api.py`` checks that its paths and methods are exactly the app's routes and
handler methods, and that responses match the schemas named here.

Example:
    >>> doc = openapi_document()
    >>> doc["openapi"], sorted(doc["paths"]["/jobs"])
    ('3.1.0', ['get', 'post'])
"""

from __future__ import annotations

import copy
from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _transform(summary: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A ``/transform/*`` POST: a JSON body with ``script`` and ``engine`` plus its own."""
    return {
        "post": {
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["script", *required],
                            "additionalProperties": False,
                            "properties": {
                                "script": {"type": "string"},
                                "engine": {"enum": ["lua", "rhai"], "default": "lua"},
                                **properties,
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json({"type": "object"}, "The outcome (script errors carry lines)"),
                "400": _error("Bad body (the field is named)"),
                "413": _error("Body too large"),
                "415": _error("Not application/json"),
                **_AUTH_ERRORS,
            },
        }
    }


_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
_NAME_PARAM: dict[str, Any] = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": _NAME_PATTERN},
}
_RESOURCE_PARAM: dict[str, Any] = {
    "name": "resource",
    "in": "path",
    "required": True,
    "description": "A collection, topic, subscription, script or file (URL-encoded)",
    "schema": {"type": "string"},
}
_CHECK_PARAM: dict[str, Any] = {
    "name": "check",
    "in": "query",
    "description": "online: also connect and check its services, topics, collections, "
    "subscriptions and schemas first (400 naming each failed check)",
    "schema": {"enum": ["offline", "online"], "default": "offline"},
}
_AUTH_ERRORS = {
    "401": _error("Missing or wrong bearer token (when MSTREAM_API_TOKEN is set)."),
    "403": _error(
        "Cross-site request refused: a foreign Origin, or a foreign Host on a loopback API."
    ),
}


def _saved(what: str, item: str, put: bool) -> dict[str, dict[str, Any]]:
    """The collection and item paths of a saved playground document kind."""
    body = {"required": True, "content": {"application/json": {"schema": _ref(item)}}}
    collection = {
        "get": {
            "summary": f"Saved {what}s (id and name)",
            "responses": {"200": _json({"type": "object"}, "The list"), **_AUTH_ERRORS},
        },
        "post": {
            "summary": f"Save a {what} (an id is assigned when missing; an existing id is replaced)",
            "requestBody": body,
            "responses": {
                "201": _json(_ref(item), "Saved"),
                "400": _error("Bad body (the field is named)"),
                **_AUTH_ERRORS,
            },
        },
    }
    one: dict[str, Any] = {
        "parameters": [_NAME_PARAM],
        "get": {
            "summary": f"One {what}",
            "responses": {"200": _json(_ref(item), "Found"), **_AUTH_ERRORS, "404": _error("None")},
        },
        "delete": {
            "summary": f"Delete a {what}",
            "responses": {"204": {"description": "Deleted"}, **_AUTH_ERRORS, "404": _error("None")},
        },
    }
    if put:
        one["put"] = {
            "summary": f"Replace a {what}",
            "requestBody": body,
            "responses": {
                "200": _json(_ref(item), "Saved"),
                "400": _error("Bad body (the field is named)"),
                **_AUTH_ERRORS,
                "404": _error("None"),
            },
        }
    return {"collection": collection, "item": one}


_SUITES = _saved("test suite", "TestSuite", put=False)
_WORKSPACES = _saved("workspace", "Workspace", put=True)


_STEP = {
    "type": "object",
    "description": "A source, middleware or sink step. Providers may accept extra keys "
    "(e.g. file: batch_layout).",
    "required": ["service_name", "output_encoding"],
    "properties": {
        "service_name": {"type": "string"},
        "resource": {"type": "string"},
        "input_encoding": {"enum": ["json", "bson", "avro"]},
        "output_encoding": {"enum": ["json", "bson", "avro"]},
        "schema_id": {"type": "string"},
    },
    "additionalProperties": True,
}

_CONNECTOR = {
    "type": "object",
    "description": "A connector definition: the same shape as a [[connectors]] entry.",
    "required": ["name", "source", "sinks"],
    "properties": {
        "name": {"type": "string", "pattern": _NAME_PATTERN},
        "enabled": {"type": "boolean", "default": True},
        "source": _ref("Step"),
        "middlewares": {"type": "array", "items": _ref("Step")},
        "sinks": {"type": "array", "minItems": 1, "items": _ref("Step")},
        "schemas": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "service_name", "resource"],
                "properties": {
                    "id": {"type": "string"},
                    "service_name": {"type": "string"},
                    "resource": {"type": "string"},
                },
                "additionalProperties": False,
            },
        },
        "batch": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "kind": {"const": "count"},
                "size": {"type": "integer", "minimum": 1},
                "max_wait_ms": {"type": "integer", "minimum": 1},
            },
        },
        "checkpoint": {
            "type": "object",
            "properties": {"enabled": {"type": "boolean"}, "interval_ms": {"type": "integer"}},
        },
        "verify_payloads": {"type": "boolean", "default": True},
        "dead_letter": {
            "type": "object",
            "required": ["service_name"],
            "properties": {
                "service_name": {"type": "string"},
                "resource": {"type": "string"},
                "output_encoding": {"enum": ["json", "bson", "avro"]},
            },
        },
    },
    "additionalProperties": False,
}

_COUNTERS = {
    "type": "object",
    "required": ["events_in", "events_out", "errors", "dead_lettered", "throughput_per_sec"],
    "properties": {
        "events_in": {"type": "integer"},
        "events_out": {"type": "integer"},
        "bytes_in": {"type": "integer", "description": "Payload bytes read from the source."},
        "last_source_time": {
            "type": ["number", "null"],
            "description": "The newest source timestamp read (Kafka message timestamp, "
            "MongoDB wall/cluster time, Pub/Sub publish time), Unix time",
        },
        "batches_out": {"type": "integer"},
        "errors": {"type": "integer"},
        "dead_lettered": {"type": "integer"},
        "filtered": {"type": "integer"},
        "retries": {"type": "integer"},
        "last_event_time": {"type": ["number", "null"], "description": "Unix time"},
        "last_error": {"type": ["string", "null"]},
        "throughput_per_sec": {"type": "number"},
        "totals": {
            "type": "object",
            "description": "Counts carried across restarts: the totals saved with the last "
            "checkpoint plus the counts since this start (jobs with checkpoints only; events "
            "delivered again after a crash count again).",
            "additionalProperties": {"type": "integer"},
        },
    },
}

_JOB = {
    "type": "object",
    "required": [
        "name",
        "state",
        "reason",
        "started_at",
        "stopped_at",
        "counters",
        "desired_state",
    ],
    "properties": {
        "name": {"type": "string"},
        "state": {
            "enum": [
                "created",
                "starting",
                "running",
                "retrying",
                "stopping",
                "stopped",
                "completed",
                "failed",
            ]
        },
        "reason": {"type": ["string", "null"], "description": "Why the job failed."},
        "retry": {
            "type": "object",
            "description": "Only while retrying: the attempt, how many are allowed, when the "
            "next one starts (Unix time) and the error that caused it.",
            "properties": {
                "attempt": {"type": "integer"},
                "of": {"type": "integer"},
                "next_try_at": {"type": "number"},
                "last_error": {"type": "string"},
            },
        },
        "started_at": {"type": ["number", "null"], "description": "Unix time"},
        "stopped_at": {"type": ["number", "null"], "description": "Unix time"},
        "restarts": {"type": "integer"},
        "desired_state": {
            "enum": ["running", "stopped"],
            "description": "What the user asked for; kept across process restarts.",
        },
        "origin": {"enum": ["file", "api"]},
        "services": {"type": "array", "items": {"type": "string"}},
        "counters": _ref("Counters"),
        "instance": {
            "type": ["string", "null"],
            "description": "Several instances: the instance running the job (null: none).",
        },
        "instances": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Several instances: every instance running it (replicas).",
        },
    },
}

_CLUSTER = {
    "type": "object",
    "required": ["enabled", "instance_id", "instances", "leases"],
    "properties": {
        "enabled": {
            "type": "boolean",
            "description": "Whether jobs are shared with other instances (jobs and "
            "checkpoints in MongoDB).",
        },
        "instance_id": {"type": "string", "description": "This instance."},
        "lease_ttl_ms": {"type": "integer"},
        "heartbeat_interval_ms": {"type": "integer"},
        "instances": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "heartbeat_at", "jobs", "alive"],
                "properties": {
                    "id": {"type": "string"},
                    "host": {"type": "string"},
                    "pid": {"type": "integer"},
                    "api_url": {"type": ["string", "null"]},
                    "version": {"type": "string"},
                    "started_at": {"type": "number"},
                    "heartbeat_at": {"type": "number", "description": "Unix time"},
                    "jobs": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "The job slots it holds (<job>#<slot>).",
                    },
                    "alive": {
                        "type": "boolean",
                        "description": "Its heartbeat is younger than the lease TTL.",
                    },
                },
            },
        },
        "leases": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "job": {"type": "string"},
                    "slot": {"type": "integer"},
                    "owner": {"type": "string"},
                    "token": {"type": "integer", "description": "The fencing token."},
                    "expires_at": {"type": "number"},
                    "generation": {"type": "integer"},
                    "state": {"type": ["string", "null"]},
                    "reason": {"type": ["string", "null"]},
                    "started_at": {"type": ["number", "null"]},
                    "live": {"type": "boolean"},
                },
            },
        },
    },
}

_SERVICE = {
    "type": "object",
    "description": "A service as a [[services]] entry, secrets replaced by '****'.",
    "required": ["name", "provider", "origin", "used_by"],
    "properties": {
        "name": {"type": "string"},
        "provider": {"type": "string"},
        "origin": {"enum": ["file", "api"]},
        "used_by": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": True,
}

_SERVICE_CREATE = {
    "type": "object",
    "description": "A service definition: the same shape as a [[services]] entry "
    "(name, provider and the provider's options).",
    "required": ["name", "provider"],
    "properties": {
        "name": {"type": "string", "pattern": _NAME_PATTERN},
        "provider": {
            "enum": ["generator", "file", "stdout", "http", "udf", "kafka", "mongodb", "pubsub"]
        },
    },
    "additionalProperties": True,
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "mstream REST API",
        "version": "1.0.0",
        "description": "Manage mstream jobs (connectors) and services. JSON in and out; "
        'errors are {"error": {"status", "message", "fields"?}}.',
    },
    "servers": [{"url": "http://127.0.0.1:8719"}],
    "security": [{"bearer": []}],
    "paths": {
        "/": {
            "get": {
                "summary": "Dashboard (when installed) or a pointer to the API",
                "security": [],
                "responses": {"200": {"description": "HTML dashboard or a JSON index"}},
            }
        },
        "/health": {
            "get": {
                "summary": "Health: healthy, or degraded while a job retries or has failed "
                "(version, uptime, job states and reasons only with the token, when one is "
                "set); strict=true answers 503 when degraded, for readiness probes",
                "security": [],
                "parameters": [
                    {
                        "name": "strict",
                        "in": "query",
                        "schema": {"type": "boolean", "default": False},
                        "description": "503 instead of 200 when degraded",
                    }
                ],
                "responses": {
                    "200": _json(_ref("Health"), "Healthy or degraded"),
                    "503": _error("A store does not answer (or degraded, with strict=true)"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics, one family per counter with a job label",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_AUTH_ERRORS,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1"), **_AUTH_ERRORS},
            }
        },
        "/jobs": {
            "get": {
                "summary": "All jobs with state, reason, times and counters",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["jobs"],
                            "properties": {"jobs": {"type": "array", "items": _ref("Job")}},
                        },
                        "Jobs sorted by name",
                    ),
                    **_AUTH_ERRORS,
                },
            },
            "post": {
                "summary": "Create and start a job from a connector definition",
                "parameters": [_CHECK_PARAM],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ConnectorDefinition")}},
                },
                "responses": {
                    "201": _json(_ref("JobDetail"), "Created and started"),
                    "400": _error("Invalid JSON or definition; fields name each problem"),
                    **_AUTH_ERRORS,
                    "409": _error("A job with that name exists"),
                    "413": _error("Body too large"),
                },
            },
        },
        "/jobs/{name}": {
            "parameters": [_NAME_PARAM],
            "get": {
                "summary": "One job: definition, state and counters",
                "responses": {
                    "200": _json(_ref("JobDetail"), "The job"),
                    **_AUTH_ERRORS,
                    "404": _error("No such job"),
                },
            },
            "delete": {
                "summary": "Delete a job that is not running (and its checkpoints)",
                "parameters": [
                    {
                        "name": "keep_checkpoints",
                        "in": "query",
                        "schema": {"type": "boolean", "default": False},
                    }
                ],
                "responses": {
                    "204": {"description": "Deleted"},
                    **_AUTH_ERRORS,
                    "404": _error("No such job"),
                    "409": _error("The job is running; stop it first"),
                },
            },
        },
        "/jobs/{name}/stop": {
            "parameters": [_NAME_PARAM],
            "post": {
                "summary": "Stop: drain in-flight events, save the checkpoint",
                "responses": {
                    "200": _json(_ref("JobDetail"), "Stopped"),
                    **_AUTH_ERRORS,
                    "404": _error("No such job"),
                    "409": _error("The job cannot run (invalid stored definition)"),
                },
            },
        },
        "/jobs/{name}/restart": {
            "parameters": [_NAME_PARAM],
            "post": {
                "summary": "Restart; resumes from the last checkpoint",
                "parameters": [
                    {
                        "name": "from",
                        "in": "query",
                        "description": "Needed to run a completed job again: `checkpoint` "
                        "resumes after its last saved position, `beginning` forgets its "
                        "checkpoints first.",
                        "schema": {"type": "string", "enum": ["checkpoint", "beginning"]},
                    }
                ],
                "responses": {
                    "200": _json(_ref("JobDetail"), "Restarted"),
                    "400": _error("`from` is not checkpoint or beginning"),
                    **_AUTH_ERRORS,
                    "404": _error("No such job"),
                    "409": _error(
                        "The job cannot run, did not stop in time, is busy with another "
                        "operation, or completed and `from` is missing"
                    ),
                },
            },
        },
        "/jobs/{name}/checkpoints": {
            "parameters": [_NAME_PARAM],
            "get": {
                "summary": "Checkpoint history, newest first",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
                    }
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["job", "checkpoints"],
                            "properties": {
                                "job": {"type": "string"},
                                "checkpoints": {"type": "array", "items": _ref("Checkpoint")},
                            },
                        },
                        "Newest first",
                    ),
                    "400": _error("Bad limit"),
                    **_AUTH_ERRORS,
                    "404": _error("No such job"),
                },
            },
        },
        "/jobs/{name}/metrics": {
            "parameters": [_NAME_PARAM],
            "get": {
                "summary": "Live job metrics in the original's shape: events and bytes "
                "processed, current lag behind the source's own timestamps, throughput",
                "responses": {
                    "200": _json(_ref("JobMetrics"), "The job's metrics"),
                    **_AUTH_ERRORS,
                    "404": _error("No such job"),
                },
            },
        },
        "/logs": {
            "get": {
                "summary": "Recent log entries (masked), oldest first",
                "parameters": [
                    {"name": "job_name", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "level",
                        "in": "query",
                        "description": "Minimum level",
                        "schema": {"enum": ["trace", "debug", "info", "warn", "error"]},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "default": 100},
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "description": "Only entries after this RFC 3339 time",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "entries": {"type": "array", "items": _ref("LogEntry")},
                                "count": {"type": "integer"},
                            },
                        },
                        "Entries",
                    ),
                    "400": _error("Bad filter"),
                    **_AUTH_ERRORS,
                },
            }
        },
        "/logs/stream": {
            "get": {
                "summary": "The log as Server-Sent Events: the newest `initial` entries, then "
                "each new one (event `log`, data a LogEntry; event `dropped` when a slow "
                "reader missed entries)",
                "parameters": [
                    {"name": "job_name", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "level",
                        "in": "query",
                        "schema": {"enum": ["trace", "debug", "info", "warn", "error"]},
                    },
                    {
                        "name": "initial",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "default": 100},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "An event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": _error("Bad filter"),
                    **_AUTH_ERRORS,
                },
            }
        },
        "/jobs/{name}/metrics/history": {
            "parameters": [_NAME_PARAM],
            "get": {
                "summary": "Throughput and lag every 10 s over the last hour (while running)",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "job": {"type": "string"},
                                "points": {
                                    "type": "array",
                                    "description": "[Unix time, events/s, lag s], oldest first",
                                    "items": {
                                        "type": "array",
                                        "items": {"type": "number"},
                                        "minItems": 3,
                                        "maxItems": 3,
                                    },
                                },
                            },
                        },
                        "Points",
                    ),
                    **_AUTH_ERRORS,
                    "404": _error("No such job"),
                },
            },
        },
        "/jobs/{name}/dead-letters": {
            "parameters": [_NAME_PARAM],
            "get": {
                "summary": "Kept dead letters, newest first (bounded per job; `dropped` says "
                "how many the bound pushed out)",
                "parameters": [
                    {"name": "stage", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "reason",
                        "in": "query",
                        "description": "A substring of the reason",
                        "schema": {"type": "string"},
                    },
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    },
                ],
                "responses": {
                    "200": _json(_ref("DeadLetterPage"), "A page"),
                    "400": _error("Bad paging"),
                    **_AUTH_ERRORS,
                    "404": _error("No such job"),
                },
            },
            "delete": {
                "summary": "Discard kept dead letters: the listed ids, or all of the job's",
                "parameters": [
                    {
                        "name": "ids",
                        "in": "query",
                        "description": "Comma-separated record ids",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"discarded": {"type": "integer"}}},
                        "Discarded",
                    ),
                    "400": _error("Bad ids"),
                    **_AUTH_ERRORS,
                    "404": _error("No such job"),
                },
            },
        },
        "/jobs/{name}/dead-letters/replay": {
            "parameters": [_NAME_PARAM],
            "post": {
                "summary": "Send kept dead letters through the job's pipeline from the step "
                "each failed at (all, up to 1000, without ids); an edit replaces an event's "
                "document. Delivered ones are deleted; ones refused again are kept anew",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "ids": {"type": "array", "items": {"type": "integer"}},
                                    "edits": {
                                        "type": "object",
                                        "description": "Record id → corrected document",
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("ReplayOutcome"), "What the replay did"),
                    "400": _error("Bad ids or edits"),
                    **_AUTH_ERRORS,
                    "404": _error("No such job"),
                    "409": _error("Another operation on the job is in progress"),
                },
            },
        },
        "/services/{name}/schemas": {
            "parameters": [_NAME_PARAM],
            "get": {
                "summary": "Schemas a MongoDB (schema documents) or Pub/Sub (registry) service keeps",
                "responses": {
                    "200": _json({"type": "object"}, "id, name, encoding of each"),
                    "400": _error("The provider keeps no schemas"),
                    **_AUTH_ERRORS,
                    "404": _error("No such service"),
                },
            },
            "post": {
                "summary": "Save a schema {id?, name, encoding: avro|json, definition} (checked "
                "first; MongoDB replaces by id, Pub/Sub answers 409 when it exists)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "201": _json({"type": "object"}, "Saved"),
                    "400": _error("Bad schema (the field is named)"),
                    **_AUTH_ERRORS,
                    "404": _error("No such service"),
                    "409": _error("It exists (Pub/Sub)"),
                },
            },
        },
        "/services/{name}/schemas/{resource}": {
            "parameters": [_NAME_PARAM, {**_RESOURCE_PARAM, "description": "The schema's id"}],
            "get": {
                "summary": "One schema with its definition",
                "responses": {
                    "200": _json({"type": "object"}, "The schema"),
                    **_AUTH_ERRORS,
                    "404": _error("None"),
                },
            },
            "delete": {
                "summary": "Delete a schema",
                "responses": {
                    "204": {"description": "Deleted"},
                    **_AUTH_ERRORS,
                    "404": _error("None"),
                },
            },
        },
        "/schema/fill": {
            "post": {
                "summary": "Synthetic events valid for an Avro schema or a JSON Schema "
                "({encoding, definition, count ≤ 100, seed})",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": _json({"type": "object"}, "events"),
                    "400": _error("Bad schema"),
                    **_AUTH_ERRORS,
                },
            }
        },
        "/schema/convert": {
            "post": {
                "summary": "JSON Schema → Avro or Avro → JSON Schema ({from, to, definition, name?})",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": _json({"type": "object"}, "The converted definition"),
                    "400": _error("Not convertible (the path is named)"),
                    **_AUTH_ERRORS,
                },
            }
        },
        "/services/{name}/resources": {
            "parameters": [_NAME_PARAM],
            "get": {
                "summary": "The service's resources: MongoDB collections (no system.*), Kafka "
                "topics, Pub/Sub topics and subscriptions, UDF scripts, files under base_dir",
                "responses": {
                    "200": _json({"type": "object"}, "Resources"),
                    **_AUTH_ERRORS,
                    "404": _error("No such service"),
                },
            },
        },
        "/services/{name}/resources/{resource}": {
            "parameters": [_NAME_PARAM, _RESOURCE_PARAM],
            "get": {
                "summary": "A script's text, or up to 20 sample events (masked, each value cut "
                "to 2000 characters, 256 KiB in all; nothing acknowledged or consumed)",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
                    }
                ],
                "responses": {
                    "200": _json({"type": "object"}, "Samples or script"),
                    "400": _error("Bad limit, or a resource that cannot be sampled"),
                    **_AUTH_ERRORS,
                    "404": _error("No such service or script"),
                },
            },
        },
        "/services/{name}/resources/{resource}/schema": {
            "parameters": [_NAME_PARAM, _RESOURCE_PARAM],
            "get": {
                "summary": "Field names, types and presence of sampled events - never values",
                "parameters": [
                    {
                        "name": "sample_size",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 1000,
                            "default": 100,
                        },
                    }
                ],
                "responses": {
                    "200": _json({"type": "object"}, "Fields"),
                    "400": _error("Bad sample_size"),
                    **_AUTH_ERRORS,
                    "404": _error("No such service"),
                },
            },
        },
        "/test-suites": _SUITES["collection"],
        "/test-suites/{name}": _SUITES["item"],
        "/workspaces": _WORKSPACES["collection"],
        "/workspaces/{name}": _WORKSPACES["item"],
        "/transform/run": _transform(
            "Run a script on one sample (payload: a JSON string or value; a list for a "
            "batch) under a job's sandbox limits: results, attributes, errors, duration_ms",
            {"payload": {}, "attributes": {"type": "object"}},
            ["payload"],
        ),
        "/transform/validate": _transform("Compile a script: valid, errors with lines", {}, []),
        "/transform/test/generate": _transform(
            "Test cases from a sample: as given, each field null, empty and missing; each "
            "expects what the script produces now",
            {"sample_input": {"type": "object"}},
            ["sample_input"],
        ),
        "/transform/test/run": _transform(
            "Run test cases (assertions: equals, contains, type_matches, gt, gte, lt, lte); "
            "strict_output fails output fields no assertion covers",
            {
                "cases": {"type": "array", "items": {"type": "object"}},
                "strict_output": {"type": "boolean"},
            },
            ["cases"],
        ),
        "/cluster": {
            "get": {
                "summary": "The instances sharing this one's state stores, their heartbeats "
                "and jobs, and every job lease",
                "responses": {"200": _json(_ref("Cluster"), "The cluster"), **_AUTH_ERRORS},
            }
        },
        "/stats": {
            "get": {
                "summary": "Events and bytes processed across every job; jobs by state",
                "responses": {"200": _json(_ref("Stats"), "Totals"), **_AUTH_ERRORS},
            }
        },
        "/services": {
            "get": {
                "summary": "All services, secrets masked",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["services"],
                            "properties": {"services": {"type": "array", "items": _ref("Service")}},
                        },
                        "Services sorted by name",
                    ),
                    **_AUTH_ERRORS,
                },
            },
            "post": {
                "summary": "Create a service (stored encrypted)",
                "parameters": [_CHECK_PARAM],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ServiceDefinition")}},
                },
                "responses": {
                    "201": _json(_ref("Service"), "Created (secrets masked)"),
                    "400": _error("Invalid JSON or definition; fields name each problem"),
                    **_AUTH_ERRORS,
                    "409": _error("A service with that name exists"),
                    "413": _error("Body too large"),
                },
            },
        },
        "/services/{name}": {
            "parameters": [_NAME_PARAM],
            "get": {
                "summary": "One service, secrets masked, and the jobs that use it",
                "responses": {
                    "200": _json(_ref("Service"), "The service"),
                    **_AUTH_ERRORS,
                    "404": _error("No such service"),
                },
            },
            "delete": {
                "summary": "Remove a service; refused while any job (in any state) uses it",
                "responses": {
                    "204": {"description": "Removed"},
                    **_AUTH_ERRORS,
                    "404": _error("No such service"),
                    "409": _error("Jobs use it (they are named); delete them first"),
                },
            },
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "Needed only when MSTREAM_API_TOKEN is set.",
            }
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["status", "message"],
                        "properties": {
                            "status": {"type": "integer"},
                            "message": {"type": "string"},
                            "fields": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                                "description": "Field path (e.g. sinks[0].output_encoding) "
                                "to problem",
                            },
                        },
                    }
                },
            },
            "Step": _STEP,
            "ConnectorDefinition": _CONNECTOR,
            "Counters": _COUNTERS,
            "Job": _JOB,
            "Cluster": _CLUSTER,
            "JobDetail": {
                "allOf": [
                    _ref("Job"),
                    {
                        "type": "object",
                        "required": ["definition"],
                        "properties": {"definition": _ref("ConnectorDefinition")},
                    },
                ]
            },
            "Checkpoint": {
                "type": "object",
                "required": ["job", "position", "created_at"],
                "properties": {
                    "job": {"type": "string"},
                    "position": {"description": "Source-specific position (offset, token...)"},
                    "created_at": {"type": "number", "description": "Unix time"},
                },
            },
            "Service": _SERVICE,
            "ServiceDefinition": _SERVICE_CREATE,
            "TestSuite": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "engine": {"enum": ["lua", "rhai"]},
                    "script": {"type": "string"},
                    "script_ref": {
                        "type": "object",
                        "properties": {
                            "service_name": {"type": "string"},
                            "resource": {"type": "string"},
                        },
                    },
                    "cases": {"type": "array", "items": {"type": "object"}},
                    "strict_output": {"type": "boolean"},
                },
            },
            "Workspace": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "script": {},
                    "input": {},
                    "schema": {"type": "object"},
                    "test_suite_id": {"type": "string"},
                },
            },
            "DeadLetterPage": {
                "type": "object",
                "properties": {
                    "job": {"type": "string"},
                    "dead_letters": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "description": "A dead-letter record (connector, stage, reason, "
                            "time, encoding, payload, attributes, metadata) with its id and the "
                            "step a replay resumes from",
                        },
                    },
                    "total": {"type": "integer"},
                    "offset": {"type": "integer"},
                    "dropped": {"type": "integer"},
                },
            },
            "ReplayOutcome": {
                "type": "object",
                "properties": {
                    "replayed": {"type": "integer"},
                    "delivered": {"type": "integer"},
                    "rejected_again": {"type": "integer"},
                    "deleted": {"type": "integer"},
                    "remaining": {"type": "integer"},
                    "error": {"type": ["string", "null"]},
                },
            },
            "LogEntry": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "level": {"enum": ["trace", "debug", "info", "warn", "error"]},
                    "target": {"type": "string", "description": "The logger"},
                    "job_name": {"type": ["string", "null"]},
                    "message": {"type": "string"},
                },
            },
            "JobMetrics": {
                "type": "object",
                "required": [
                    "events_processed",
                    "bytes_processed",
                    "current_lag_seconds",
                    "throughput_per_second",
                    "total_errors",
                    "last_processed_at",
                ],
                "properties": {
                    "events_processed": {"type": "integer", "description": "Delivered"},
                    "bytes_processed": {"type": "integer", "description": "Payload bytes read"},
                    "current_lag_seconds": {
                        "type": "number",
                        "description": "Now minus the newest source timestamp read (0.0 "
                        "without one or when the job is not running)",
                    },
                    "throughput_per_second": {"type": "number"},
                    "total_errors": {"type": "integer"},
                    "last_processed_at": {"type": ["string", "null"], "format": "date-time"},
                },
            },
            "Stats": {
                "type": "object",
                "properties": {
                    "total_events_processed": {"type": "integer"},
                    "total_bytes_processed": {"type": "integer"},
                    "uptime_seconds": {"type": "number"},
                    "running_jobs": {"type": "integer"},
                    "stopped_jobs": {"type": "integer"},
                    "error_jobs": {"type": "integer"},
                },
            },
            "Health": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"enum": ["healthy", "degraded"]},
                    "healthy": {"type": "boolean"},
                    "version": {"type": "string"},
                    "uptime_seconds": {"type": "number"},
                    "jobs": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "reasons": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}


for _operations in _DOCUMENT["paths"].values():
    for _method in ("post", "delete"):
        if _method in _operations:
            _operations[_method]["responses"]["415"] = _error(
                "A body sent without Content-Type: application/json."
            )


def openapi_document() -> dict[str, Any]:
    """A copy of the OpenAPI 3.1 document."""
    return copy.deepcopy(_DOCUMENT)
