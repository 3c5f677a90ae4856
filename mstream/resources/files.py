"""Files under a file service's base directory (inside the file roots) and sample lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from mstream.config.model import ServiceConfig
from mstream.errors import ConfigError

MAX_LISTED = 500
SAMPLE_LINE_BYTES = 64 * 1024


def list_resources(service: ServiceConfig) -> list[dict[str, Any]]:
    """Regular files under ``base_dir`` (at most 500, four levels deep), allowed by policy."""
    from mstream.providers.file import resolve_path

    base = service.options.get("base_dir")
    if not base:
        raise ConfigError(f"file service {service.name!r} has no base_dir to list")
    root = Path(base).resolve()
    found: list[dict[str, Any]] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if len(relative.parts) > 4 or not path.is_file() or path.is_symlink():
            continue
        try:
            resolve_path(service, str(relative))
        except ConfigError:
            continue  # protected, or outside the roots
        found.append({"name": str(relative), "kind": "file", "bytes": path.stat().st_size})
        if len(found) >= MAX_LISTED:
            break
    return found


def sample(service: ServiceConfig, resource: str, count: int) -> list[Any]:
    """The first ``count`` lines, as JSON documents where they parse (else their text)."""
    from mstream.providers.file import resolve_path

    path = resolve_path(service, resource)
    out: list[Any] = []
    try:
        with path.open("rb") as handle:
            while len(out) < count:
                line = handle.readline(SAMPLE_LINE_BYTES)
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    out.append(line.decode("utf-8", "replace").rstrip("\n"))
    except OSError as exc:
        raise ConfigError(f"resource: cannot read {resource[:100]!r} ({exc.strerror})") from None
    return out
