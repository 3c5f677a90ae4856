"""Checkpoint positions of the change stream source: resume tokens made JSON-ready, and back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bson
import orjson
from bson import json_util

from mstream.errors import ConfigError


def token_to_position(token: bytes, namespace: str, *, start_after: bool = False) -> dict[str, Any]:
    """A JSON-ready checkpoint from a raw BSON resume token.

    Example:
        >>> raw = bson.encode({"_data": "8265A1"})
        >>> token_to_position(raw, "app.users")
        {'resume_token': {'_data': '8265A1'}, 'namespace': 'app.users'}
    """
    doc = bson.decode(token)
    position: dict[str, Any] = {
        "resume_token": orjson.loads(
            json_util.dumps(doc, json_options=json_util.CANONICAL_JSON_OPTIONS)
        ),
        "namespace": namespace,
    }
    if start_after:
        position["start_after"] = True
    return position


def position_to_token(position: Mapping[str, Any]) -> Mapping[str, Any]:
    """The resume token (a BSON document) a checkpoint holds.

    Raises:
        ConfigError: the checkpoint holds no usable token.

    Example:
        >>> position_to_token({"resume_token": {"_data": "8265A1"}})
        {'_data': '8265A1'}
    """
    token = position.get("resume_token")
    if not isinstance(token, Mapping) or not token:
        raise ConfigError(f"mongodb checkpoint has no resume token: {position!r}")
    result: Mapping[str, Any] = json_util.loads(orjson.dumps(token).decode())
    return result
