"""Logging set-up: level from ``MSTREAM_LOG``, ``LOG_LEVEL`` or ``RUST_LOG`` (default info).

Client libraries (and Tornado's access log) log at WARNING and above whatever the level,
and repeats of a client library's line are de-duplicated (see :mod:`mstream.log_dedupe`).

Example:
    >>> level_from_env({"RUST_LOG": "debug"})
    10
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Mapping

from mstream.log_dedupe import CLIENT_LOGGERS, RepeatFilter

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

#: Loggers kept at WARNING or above: the client libraries and Tornado's access log.
QUIET_LOGGERS = (*CLIENT_LOGGERS, "tornado.access")

#: The de-duplication filter :func:`setup_logging` installs on the stderr handler.
client_repeats = RepeatFilter()


def level_from_env(environ: Mapping[str, str] | None = None) -> int:
    """The log level named by the environment (first of MSTREAM_LOG, LOG_LEVEL, RUST_LOG)."""
    env = os.environ if environ is None else environ
    for name in ("MSTREAM_LOG", "LOG_LEVEL", "RUST_LOG"):
        value = env.get(name, "").strip().lower()
        if value:
            # RUST_LOG may look like "mstream=debug,info": take the last plain level
            for part in reversed(value.replace(",", " ").split()):
                level = _LEVELS.get(part.split("=")[-1])
                if level is not None:
                    return level
    return logging.INFO


def setup_logging(level: int | str | None = None) -> None:
    """Log to stderr with timestamps; third-party chatter kept at WARNING and de-duplicated.

    The stderr handler gets :data:`client_repeats`, whose pending summaries are logged at
    exit. Calling it again replaces the handler (``logging.basicConfig(force=True)``).

    Args:
        level: a level number or name; ``None`` reads the environment (:func:`level_from_env`).
    """
    if isinstance(level, str):
        resolved = _LEVELS.get(level.lower(), logging.INFO)
    else:
        resolved = level if level is not None else level_from_env()
    logging.basicConfig(
        level=resolved,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        force=True,
    )
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(max(resolved, logging.WARNING))
    for handler in logging.getLogger().handlers:
        handler.addFilter(client_repeats)
    atexit.unregister(client_repeats.flush)  # registered once however often this runs
    atexit.register(client_repeats.flush)
