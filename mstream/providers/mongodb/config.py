"""Options of a ``mongodb`` service, the checks of its names and its client.

Also what the source, the sink and the schema registry share: the codec options of raw
BSON documents and the masking of credentials in error messages.
"""

from __future__ import annotations

from typing import Any

from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from marshmallow import Schema, ValidationError, fields, validate, validates
from pymongo import MongoClient
from pymongo.errors import ConfigurationError, InvalidURI

from mstream.config.model import ServiceConfig
from mstream.errors import ConfigError, DeliveryError
from mstream.providers.base import StepContext

WRITE_MODES = ("insert", "replace")
SECRET_FIELDS: frozenset[str] = frozenset()
"""None declared: the registry masks the credentials inside ``connection_string`` (the
password and secret query parameters) and keeps the hosts visible."""

RAW_OPTIONS: CodecOptions[RawBSONDocument] = CodecOptions(
    document_class=RawBSONDocument, tz_aware=True
)

_INVALID_DB_CHARS = frozenset('/\\. "$\x00')


class MongoServiceSchema(Schema):
    """Options of a ``mongodb`` service (unknown keys are rejected)."""

    connection_string = fields.String(required=True)
    db_name = fields.String(required=True)
    write_mode = fields.String(
        load_default="insert",
        validate=validate.OneOf(WRITE_MODES, error="must be insert or replace (got {input!r})"),
    )
    chunk_size = fields.Integer(
        load_default=500, strict=True, validate=validate.Range(min=1, max=100_000)
    )
    max_await_time_ms = fields.Integer(
        load_default=200, strict=True, validate=validate.Range(min=10, max=60_000)
    )
    max_retries = fields.Integer(
        load_default=3, strict=True, validate=validate.Range(min=0, max=100)
    )
    base_backoff_ms = fields.Integer(
        load_default=200, strict=True, validate=validate.Range(min=1, max=600_000)
    )
    server_selection_timeout_ms = fields.Integer(
        load_default=5_000, strict=True, validate=validate.Range(min=100, max=600_000)
    )

    @validates("connection_string")
    def _uri(self, value: str, **_: Any) -> None:
        """Check the URI's scheme and, for ``mongodb://``, its syntax (offline).

        The value is a secret: messages never repeat it.
        """
        check_connection_string(value)

    @validates("db_name")
    def _db(self, value: str, **_: Any) -> None:
        """MongoDB database names: non-empty, none of ``/\\. "$`` or NUL."""
        if not value:
            raise ValidationError("must not be empty")
        bad = sorted(set(value) & _INVALID_DB_CHARS)
        if bad:
            raise ValidationError(
                f"{value!r} is not a valid database name (it contains {''.join(bad)!r})"
            )


def check_connection_string(value: str) -> None:
    """Validate a connection string without contacting any server.

    Raises:
        ValidationError: wrong scheme or invalid ``mongodb://`` syntax (the message does
            not contain the value).

    Example:
        >>> check_connection_string("mongodb://127.0.0.1:27017/?appname=x")
        >>> try:
        ...     check_connection_string("http://u:secret@h")
        ... except ValidationError as exc:
        ...     print(exc.messages[0])
        must start with mongodb:// or mongodb+srv://
    """
    if not value.startswith(("mongodb://", "mongodb+srv://")):
        raise ValidationError("must start with mongodb:// or mongodb+srv://")
    if value.startswith("mongodb+srv://"):
        return  # parsing an SRV URI resolves DNS; it is checked when connecting
    from pymongo.uri_parser import parse_uri

    try:
        parse_uri(value)
    except (InvalidURI, ConfigurationError, ValueError) as exc:
        raise ValidationError(f"invalid MongoDB URI: {masked_error(exc)}") from None


def masked_error(exc: BaseException | str) -> str:
    """An error message with URL credentials masked."""
    from mstream.registry import mask_text

    text = str(exc) or type(exc).__name__
    return mask_text(text if len(text) <= 500 else text[:500] + "…")


def check_collection(resource: str, role: str) -> str:
    """The collection name a step's ``resource`` gives.

    Raises:
        ConfigError: empty, or not a valid collection name.

    Example:
        >>> check_collection("users", "source")
        'users'
    """
    name = resource.strip()
    if not name:
        raise ConfigError(f"a mongodb {role} needs a collection name as its resource")
    if "$" in name or "\x00" in name or name.startswith("system."):
        raise ConfigError(f"mongodb {role}: {name!r} is not a valid collection name")
    return name


def mongo_client(service: ServiceConfig, ctx: StepContext | None) -> MongoClient[Any]:
    """A client for ``service`` (connects lazily).

    Raises:
        ConfigError: the connection string or its options are invalid.
    """
    appname = f"mstream-{ctx.connector}" if ctx is not None else "mstream"
    uri = service.options["connection_string"]
    extra: dict[str, Any] = {}
    if "serverselectiontimeoutms" not in uri.lower():  # the connection string's own wins
        # pymongo waits 30 s for a server by default: an unreachable one is reported (and
        # the job retried) within seconds instead
        extra["serverSelectionTimeoutMS"] = service.options.get(
            "server_selection_timeout_ms", 5_000
        )
    try:
        return MongoClient(uri, appname=appname, connect=False, **extra)
    except (ConfigurationError, InvalidURI, ValueError, TypeError) as exc:
        raise ConfigError(
            f"service {service.name!r}: invalid MongoDB connection: {masked_error(exc)}"
        ) from None


def transport_error(what: str, exc: BaseException) -> DeliveryError:
    """A DeliveryError for a client failure of ``what`` (credentials masked): retried."""
    return DeliveryError(f"{what}: {type(exc).__name__}: {masked_error(exc)}")
