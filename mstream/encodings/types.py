"""The names of the wire encodings mstream converts between.

Example:
    >>> ENCODINGS
    ('json', 'bson', 'avro')
    >>> check_encoding("avro")
    'avro'
"""

from __future__ import annotations

from typing import Literal

from mstream.errors import ConfigError

Encoding = Literal["json", "bson", "avro"]
"""An encoding name as written in a step's ``input_encoding`` / ``output_encoding``."""

ENCODINGS: tuple[str, ...] = ("json", "bson", "avro")
"""Every supported encoding, in the order the documentation lists them."""


def check_encoding(encoding: str) -> str:
    """Return ``encoding`` if it is supported, else raise :class:`ConfigError`.

    Args:
        encoding: an encoding name.

    Returns:
        The same name.

    Raises:
        ConfigError: the name is not one of :data:`ENCODINGS`.

    Example:
        >>> check_encoding("xml")
        Traceback (most recent call last):
        ...
        mstream.errors.ConfigError: unknown encoding 'xml': expected one of json, bson, avro
    """
    if encoding not in ENCODINGS:
        raise ConfigError(f"unknown encoding {encoding!r}: expected one of {', '.join(ENCODINGS)}")
    return encoding
