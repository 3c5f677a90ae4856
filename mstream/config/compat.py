"""Compatibility with the Rust original's configuration files (v0.47.0).

Every key of the original's config is accepted with the same meaning, or accepted and said
not to be acted on. What differs:

* **Unknown keys.** The original ignores them (serde's default); mstream refuses them, and
  the error says so: ``services[0].foo: unknown field (the Rust original ignores unknown
  keys; remove it or check its spelling; known: ...)``.
* **``"env:NAME"`` values.** The original resolves them while loading the file, in Kafka
  service properties only, and a variable that is not set fails the load. mstream resolves
  them in every string of the file (so ``connection_string = "env:MONGODB_URI"`` works,
  where the original would try to connect to the literal text) and reports every unset
  variable, also in ``mstream validate``.

``[system.logs]`` sizes the log buffer behind ``GET /logs`` and ``[system.workspaces]`` /
``[system.test_suites]`` name the MongoDB collections of the playground's saved documents,
as in the original.
``[system]`` sections that mstream accepts but treats differently (:data:`NOT_ACTED_ON`)
are logged once at INFO when a job manager starts, so a migrated config is never silently
half-read.

Example:
    >>> from mstream.config import parse_config
    >>> cfg = parse_config({"system": {"logs": {"buffer_capacity": 500},
    ...     "generate_encryption_key": True}})
    >>> cfg.system.logs
    LogsConfig(buffer_capacity=500, stream_preload_count=100)
    >>> for line in not_acted_on(cfg.system):
    ...     print(line)
    system.generate_encryption_key: accepted, not acted on (the original ignores this key too (it has no such setting); both create the key file when it is missing, whatever this says)
"""

from __future__ import annotations

import logging

from mstream.config.model import SystemConfig

UNKNOWN_KEY_HINT = "the Rust original ignores unknown keys; remove it or check its spelling"
"""Said with every unknown-key error."""

NOT_ACTED_ON: dict[str, str] = {
    "generate_encryption_key": (
        "accepted, not acted on (the original ignores this key too (it has no such "
        "setting); both create the key file when it is missing, whatever this says)"
    ),
}
"""``[system]`` keys accepted but not acted on as in the original, and how they differ."""


def not_acted_on(system: SystemConfig) -> list[str]:
    """One line per ``[system]`` key present in the config that mstream does not act on.

    Example:
        >>> not_acted_on(SystemConfig())
        []
    """
    present = {
        "generate_encryption_key": system.generate_encryption_key is not None,
    }
    return [f"system.{key}: {meaning}" for key, meaning in NOT_ACTED_ON.items() if present[key]]


def log_not_acted_on(system: SystemConfig, logger: logging.Logger) -> None:
    """Log :func:`not_acted_on`'s lines at INFO (once, when a job manager starts).

    Example:
        >>> import sys
        >>> logger = logging.getLogger("compat-demo")
        >>> logger.addHandler(logging.StreamHandler(sys.stdout)); logger.setLevel(logging.INFO)
        >>> log_not_acted_on(SystemConfig(generate_encryption_key=True), logger)
        system.generate_encryption_key: accepted, not acted on (the original ignores this key too (it has no such setting); both create the key file when it is missing, whatever this says)
    """
    for line in not_acted_on(system):
        logger.info("%s", line)
