"""A stored job whose definition no longer validates: listed as failed, never run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class BrokenJob:
    """A stored job whose definition no longer validates; shown as failed, never run.

    Attributes:
        name: the job name.
        definition: the stored definition, as stored.
        reason: why it cannot run (the validation problems).
    """

    def __init__(
        self, name: str, definition: dict[str, Any], reason: str, record: Mapping[str, Any]
    ) -> None:
        self.name = name
        self.definition = definition
        self.reason = reason
        self.record = dict(record)

    def service_names(self) -> set[str]:
        """Service names the raw definition mentions (best effort)."""
        names: set[str] = set()

        def visit(value: Any) -> None:
            if isinstance(value, Mapping):
                sn = value.get("service_name")
                if isinstance(sn, str):
                    names.add(sn)
                for item in value.values():
                    visit(item)
            elif isinstance(value, list):
                for item in value:
                    visit(item)

        visit(self.definition)
        return names
