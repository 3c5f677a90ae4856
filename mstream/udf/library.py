"""A folder of scripts compiled once: :func:`load_scripts` and :class:`ScriptLibrary`.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "keep.lua").write_text("function transform(d, a) return result(d, a) end")
    >>> lib = load_scripts(folder)
    >>> lib.names, lib["keep.lua"].transform({"x": 1}, {})
    (['keep.lua'], [({'x': 1}, {})])
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mstream.errors import ConfigError, ScriptError

from .limits import ScriptLimits
from .script import CompiledScript, compile_script

__all__ = ["SCRIPT_SUFFIX", "ScriptLibrary", "load_scripts"]

#: File name suffix of script files.
SCRIPT_SUFFIX = ".lua"


class ScriptLibrary:
    """The compiled scripts of one folder, looked up by file name.

    Attributes:
        folder: the folder the scripts were loaded from.
    """

    def __init__(self, folder: Path, scripts: dict[str, CompiledScript]) -> None:
        self.folder = folder
        self._scripts = dict(sorted(scripts.items()))

    @property
    def names(self) -> list[str]:
        """The file names of the loaded scripts, sorted."""
        return list(self._scripts)

    def get(self, resource: str) -> CompiledScript:
        """Return the script a middleware's ``resource`` names.

        ``resource`` is a file name in the folder (``"enrich.lua"``); the ``.lua`` suffix
        may be left out.

        Raises:
            ConfigError: no such script, naming the folder and the available scripts.
        """
        script = self._scripts.get(resource)
        if script is None and not resource.endswith(SCRIPT_SUFFIX):
            script = self._scripts.get(resource + SCRIPT_SUFFIX)
        if script is None:
            available = ", ".join(self._scripts) or "none"
            raise ConfigError(
                f"udf script '{resource}' not found in {self.folder} (available: {available})"
            )
        return script

    __getitem__ = get

    def __contains__(self, resource: object) -> bool:
        return isinstance(resource, str) and (
            resource in self._scripts or resource + SCRIPT_SUFFIX in self._scripts
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._scripts)

    def __len__(self) -> int:
        return len(self._scripts)

    def __repr__(self) -> str:
        return f"ScriptLibrary({str(self.folder)!r}, {self.names!r})"


def load_scripts(script_path: str | Path, *, limits: ScriptLimits | None = None) -> ScriptLibrary:
    """Compile every ``*.lua`` file of a folder once (sub-folders are ignored).

    Args:
        script_path: the ``udf`` service's ``script_path`` folder.
        limits: limits for every script; defaults to :class:`ScriptLimits` ``()``.

    Returns:
        The :class:`ScriptLibrary`.

    Raises:
        ConfigError: the folder does not exist or is not a folder, a file cannot be read,
            or scripts fail to compile or load (one problem per script, with file and line).
    """
    folder = Path(script_path)
    if not folder.is_dir():
        raise ConfigError(f"udf script_path {folder} is not a folder")
    scripts: dict[str, CompiledScript] = {}
    problems: list[str] = []
    for path in sorted(folder.glob("*" + SCRIPT_SUFFIX)):
        if not path.is_file():
            continue
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: cannot read script: {exc}")
            continue
        try:
            scripts[path.name] = compile_script(source, path.name, limits=limits)
        except ScriptError as exc:
            problems.append(f"{folder / str(exc)}")
    if problems:
        raise ConfigError(problems)
    return ScriptLibrary(folder, scripts)
