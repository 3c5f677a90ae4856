"""``mstream test SUITE.json``: run a saved test suite from the command line, for CI.

A suite file is what ``GET /test-suites/{id}`` answers: ``{"name", "engine"?, "script"?,
"script_path"? (relative to the suite file), "cases", "strict_output"?}``. Each case
prints ``PASS``/``FAIL`` with its failures; the exit code is 0 when every case passed, 1
when one failed, 2 for a suite that cannot be read (the reason on stderr), as
``vector test`` and ``rpk connect test`` do.

Example:
    >>> _parser().parse_args(["suite.json", "--script", "mask.lua"]).script
    'mask.lua'
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mstream.errors import ConfigError
from mstream.transform import run_cases


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mstream test", description="run a saved test suite")
    parser.add_argument("suite", help="the suite file (JSON)")
    parser.add_argument("--script", default=None, help="the script file (overrides the suite's)")
    return parser


def _load(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    path = Path(args.suite)
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the suite ({exc})") from None
    if not isinstance(suite, dict) or not isinstance(suite.get("cases"), list):
        raise ConfigError(f"{path}: a suite is a JSON object with a 'cases' list")
    script_file = args.script or suite.get("script_path")
    if script_file:
        target = Path(script_file)
        if not target.is_absolute() and not args.script:
            target = path.parent / target
        try:
            return suite, target.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{target}: cannot read the script ({exc.strerror})") from None
    if isinstance(suite.get("script"), str):
        return suite, suite["script"]
    raise ConfigError(f"{path}: the suite has no 'script' or 'script_path' (or pass --script)")


def main(argv: Sequence[str]) -> int:
    """Run the suite; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        suite, script = _load(args)
        report = run_cases(
            script,
            suite["cases"],
            strict_output=bool(suite.get("strict_output", False)),
            engine=str(suite.get("engine", "lua")),
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for result in report["results"]:
        print(
            f"{'PASS' if result['passed'] else 'FAIL'}  {result['name']}  ({result['duration_ms']} ms)"
        )
        for failure in result.get("failures", []) + result.get("errors", []):
            print(f"      {failure['message']}")
    summary = report["summary"]
    print(
        f"{suite.get('name', args.suite)}: {summary['passed']} passed, {summary['failed']} failed"
    )
    return 0 if summary["failed"] == 0 else 1
