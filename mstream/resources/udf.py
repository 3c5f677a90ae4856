"""A udf service's scripts (files in ``script_path`` and inline ``sources``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mstream.config.model import ServiceConfig

SUFFIXES = (".lua", ".rhai")


def list_resources(service: ServiceConfig) -> list[dict[str, Any]]:
    """Every script, inline ones first."""
    found = [
        {"name": s["filename"], "kind": "script", "inline": True}
        for s in service.options.get("sources") or []
    ]
    inline = {f["name"] for f in found}
    folder = service.options.get("script_path")
    if folder and Path(folder).is_dir():
        for path in sorted(Path(folder).iterdir()):
            if path.suffix in SUFFIXES and path.is_file() and path.name not in inline:
                found.append({"name": path.name, "kind": "script", "inline": False})
    return found


def script_text(service: ServiceConfig, resource: str) -> str | None:
    """The text of a listed script (inline or in ``script_path``), or ``None``."""
    for source in service.options.get("sources") or []:
        if source["filename"] == resource:
            return str(source["content"])
    names = {r["name"] for r in list_resources(service)}
    folder = service.options.get("script_path")
    if resource in names and folder:
        return (Path(folder) / resource).read_text(encoding="utf-8")
    return None
