"""Which files the providers may open: the file roots, and mstream's own files kept out.

A :class:`FileAccessPolicy` is immutable; the service installs one at start
(:func:`install`) and every provider that opens a path asks :func:`current` right before
opening it (paths resolved, symlinks followed), so a link swapped in after validation does
not lead outside either.

* **Roots.** A path must lie inside one of the roots: ``[system] file_roots`` when set,
  otherwise the directory mstream was started in plus the ``base_dir`` of every ``file``
  service in the config file (what the operator wrote down). A ``file`` service created
  through the API must name a ``base_dir`` inside the roots.
* **Protected files.** The encryption key file, the data directory (the state database and
  its WAL/SHM/journal files) and the config file are never readable or writable through
  any provider, whatever the roots and the config say.

In a script or notebook (no service) the default policy has no roots and protects nothing.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> policy = FileAccessPolicy(roots=(root,), protected=(root / "mstream.key",))
    >>> policy.check(root / "out.jsonl", "sinks[0].resource") == (root / "out.jsonl").resolve()
    True
    >>> policy.check(root / "mstream.key", "source.resource")
    Traceback (most recent call last):
    ...
    mstream.errors.ConfigError: source.resource: ... is one of mstream's own files (key, state or config); no provider may open it
    >>> policy.check("/etc/passwd", "source.resource")
    Traceback (most recent call last):
    ...
    mstream.errors.ConfigError: source.resource: '/etc/passwd' is outside the file roots (...); set [system] file_roots to allow it
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mstream.errors import ConfigError


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().resolve()


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass(frozen=True)
class FileAccessPolicy:
    """Roots a provider's paths must lie in (``None``: anywhere) and files no one may open.

    Attributes:
        roots: resolved directories; ``None`` means no restriction (library use).
        protected: resolved files and directories never opened by a provider.
    """

    roots: tuple[Path, ...] | None = None
    protected: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if self.roots is not None:
            object.__setattr__(self, "roots", tuple(_real(r) for r in self.roots))
        object.__setattr__(self, "protected", tuple(_real(p) for p in self.protected))

    @classmethod
    def for_service(
        cls,
        *,
        file_roots: Iterable[str] | None,
        config_base_dirs: Iterable[str],
        key_file: str,
        data_dir: str,
        config_path: str | None,
    ) -> FileAccessPolicy:
        """The policy a service runs with (see the module docstring for the rules)."""
        if file_roots is not None:
            roots = [Path(r) for r in file_roots]
        else:
            roots = [Path.cwd(), *(Path(d) for d in config_base_dirs)]
        protected = [Path(key_file), Path(data_dir)]
        if config_path and not config_path.startswith("<"):
            protected.append(Path(config_path))
        return cls(roots=tuple(roots), protected=tuple(protected))

    def check(self, path: str | os.PathLike[str], field: str) -> Path:
        """The resolved ``path`` if a provider may open it.

        Raises:
            ConfigError: ``field: ...`` saying whether the path is one of mstream's own
                files or outside the roots.
        """
        real = _real(path)
        for guarded in self.protected:
            if _inside(real, guarded):
                raise ConfigError(
                    f"{field}: {str(path)[:200]!r} is one of mstream's own files (key, state "
                    "or config); no provider may open it"
                )
        if self.roots is not None and not any(_inside(real, root) for root in self.roots):
            shown = ", ".join(str(r) for r in self.roots)
            raise ConfigError(
                f"{field}: {str(path)[:200]!r} is outside the file roots ({shown}); "
                "set [system] file_roots to allow it"
            )
        return real

    def check_base_dir(self, base_dir: str | None, field: str) -> None:
        """For a ``file`` service created through the API: ``base_dir`` is required and
        must lie inside the roots.

        Raises:
            ConfigError: it is missing, outside the roots, or protected.
        """
        if self.roots is None:
            return
        if not base_dir:
            raise ConfigError(
                f"{field}: required for a file service created through the API (a directory "
                "inside the file roots)"
            )
        self.check(base_dir, field)


_lock = threading.Lock()
_current = FileAccessPolicy()


def install(policy: FileAccessPolicy) -> None:
    """Make ``policy`` the one every provider checks from now on."""
    global _current
    with _lock:
        _current = policy


def current() -> FileAccessPolicy:
    """The policy in force (an immutable value: read without a lock)."""
    return _current
