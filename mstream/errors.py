"""The one exception hierarchy of mstream.

Every error that mstream raises on purpose derives from :class:`MstreamError`.
The tree says what a caller may do about it:

* :class:`ConfigError` - a configuration is wrong; nothing runs until it is fixed.
* :class:`EventError` - one event (or batch) is bad; it is dead-lettered and the job goes on.
* :class:`DeliveryError` - a transport failed (connection, timeout, 5xx); retried, then the
  job fails and is restarted from its last checkpoint, so nothing is lost.
* :class:`StoreError` - a state store (checkpoints, jobs, services) failed.

Example:
    >>> try:
    ...     raise SchemaValidationError("field 'age' expected int, got str")
    ... except EventError as exc:
    ...     print(exc.stage, "-", exc)
    validate - field 'age' expected int, got str
"""

from __future__ import annotations

from typing import Any


class MstreamError(Exception):
    """Base class of every error mstream raises on purpose."""


class ConfigError(MstreamError):
    """A configuration problem, with every problem found.

    Args:
        problems: one line per problem, each naming the file, the path and what was expected.

    Example:
        >>> str(ConfigError(["cfg.toml: connectors[0].name: missing required field"]))
        'cfg.toml: connectors[0].name: missing required field'
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class EventError(MstreamError):
    """One event or batch cannot be processed; it goes to the dead-letter sink.

    Attributes:
        stage: the pipeline stage that rejected the event (``decode``, ``validate``,
            ``encode``, ``middleware``, ``sink``).
    """

    stage = "event"


class DecodeError(EventError):
    """The payload cannot be decoded in its declared encoding."""

    stage = "decode"


class EncodeError(EventError):
    """The document cannot be encoded in the target encoding."""

    stage = "encode"


class SchemaValidationError(EventError):
    """The document does not match its Avro schema."""

    stage = "validate"


class MiddlewareError(EventError):
    """A middleware (HTTP service or script) rejected the event."""

    stage = "middleware"


class ScriptError(MiddlewareError):
    """A sandboxed script failed, hit a limit, or returned something invalid.

    Attributes:
        script: the script's name.
        line: the script line where it failed, when known.
        column: the position in that line, when known (Rhai scripts).
    """

    def __init__(
        self, message: str, *, script: str = "", line: int | None = None, column: int | None = None
    ) -> None:
        self.script = script
        self.line = line
        self.column = column
        if line is None:
            where = f"{script}: " if script else ""
        elif column is None:
            where = f"{script}:{line}: "
        else:
            where = f"{script}:{line}:{column}: "
        super().__init__(f"{where}{message}")


class RejectedError(EventError):
    """A sink refused the event for good (e.g. HTTP 400); it is not retried."""

    stage = "sink"


class EventsRejectedError(RejectedError):
    """Some events of a sink batch were refused for good, each with its own reason.

    The deliver operator dead-letters exactly :attr:`rejected` (not the whole batch); the
    other events of the batch were delivered.

    Attributes:
        rejected: ``(event, reason)`` pairs.

    Example:
        >>> str(EventsRejectedError([("e1", "HTTP 400: bad"), ("e2", "HTTP 400: worse")]))
        'HTTP 400: bad (and 1 more)'
    """

    def __init__(self, rejected: list[tuple[Any, str]]) -> None:
        self.rejected = rejected
        first = rejected[0][1] if rejected else "rejected"
        more = f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""
        super().__init__(first + more)


class DeliveryError(MstreamError):
    """A transport failure (connection refused, timeout, 5xx). Retryable.

    Attributes:
        retry_after: seconds the peer asked us to wait, when it said so.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class StoreError(MstreamError):
    """A state store (checkpoints, jobs, services) failed or holds unreadable data."""


class NotFoundError(MstreamError):
    """A named job, service or schema does not exist."""


class ConflictError(MstreamError):
    """The request conflicts with the current state (e.g. deleting a service in use)."""
