"""The ``mstream`` command.

Usage::

    mstream [--config mstream-config.toml] [--exit-when-done] [--safe-mode]  # the service
    mstream validate --config FILE [--online]                   # check a config, run nothing
    mstream dlq list|replay|discard JOB [--ids 1,2]             # a running service's dead letters
    mstream test SUITE.json [--script FILE]                     # run a saved test suite (CI)

The REST API listens on ``MSTREAM_API_HOST`` (default 127.0.0.1) : ``MSTREAM_API_PORT``
(default 8719); ``MSTREAM_API_TOKEN`` makes every call but ``GET /``, ``GET /static/*``
and a minimal ``GET /health`` need ``Authorization: Bearer <token>``. ``--api-host``,
``--api-port`` and ``--no-api`` override. Bound to a non-loopback address without
``MSTREAM_API_TOKEN``, the API gets a random token for the run, printed once to stderr
with the dashboard URL and the ``curl`` header (:func:`mstream.api.access.ensure_token`).

Exit codes: 0 success, 1 a job failed (with ``--exit-when-done``), 2 bad configuration
(one line per problem on stderr, each naming file, path and what was expected), 3 with
``validate --online``: a service is unreachable or a resource is missing (a table of the
checks, ✓ or ✗ with the reason, on stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from mstream.config import DEFAULT_CONFIG, load_config
from mstream.errors import ConfigError, MstreamError
from mstream.logs import setup_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mstream", description="mstream data streaming bridge")
    parser.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=["run", "validate"],
        help="run (default) or validate",
    )
    parser.add_argument(
        "--config",
        "-c",
        default=os.environ.get("MSTREAM_CONFIG", DEFAULT_CONFIG),
        help="config file (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default=None,
        help="error, warn, info, debug (default: MSTREAM_LOG / LOG_LEVEL / RUST_LOG or info)",
    )
    parser.add_argument(
        "--exit-when-done", action="store_true", help="exit once every job has finished"
    )
    parser.add_argument(
        "--progress-interval",
        type=float,
        default=5.0,
        help="seconds between progress lines (default: 5)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="embedded state directory (default: MSTREAM_DATA_DIR or [system].data_dir)",
    )
    parser.add_argument(
        "--api-host",
        default=None,
        help="REST API bind address (default: MSTREAM_API_HOST or 127.0.0.1)",
    )
    parser.add_argument(
        "--api-port",
        type=int,
        default=None,
        help="REST API port (default: MSTREAM_API_PORT or 8719; 0 = any free port)",
    )
    parser.add_argument(
        "--safe-mode", action="store_true", help="start with every stored job stopped"
    )
    parser.add_argument("--no-api", action="store_true", help="run the jobs without the REST API")
    parser.add_argument(
        "--online",
        action="store_true",
        help="validate: also connect to each service and check topics, collections, "
        "subscriptions, hosts and schemas (exit 3 when one is unreachable or missing)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mstream`` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["dlq"]:
        from mstream.cli_dlq import main as dlq_main

        return dlq_main(arguments[1:])
    if arguments[:1] == ["test"]:
        from mstream.cli_test import main as test_main

        return test_main(arguments[1:])
    args = _parser().parse_args(arguments)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.command == "validate":
        from mstream import file_access
        from mstream.config.checks import offline_problems
        from mstream.runtime.admission import check_files
        from mstream.service import file_policy

        # file paths against the file roots the service would have (and its protected files)
        previous = file_access.current()
        file_access.install(file_policy(config, args.data_dir))
        try:
            problems = offline_problems(config)
            services = {s.name: s for s in config.services}
            for c, connector in enumerate(config.connectors):
                try:
                    check_files(connector, services)
                except ConfigError as exc:
                    problems += [f"connectors[{c}].{p}" for p in exc.problems]
        finally:
            file_access.install(previous)
        for problem in problems:
            print(f"error: {config.path}: {problem}", file=sys.stderr)
        if problems:
            return 2
        counts = f"{len(config.services)} services, {len(config.connectors)} connectors"
        print(f"{args.config}: OK ({counts})")
        if not args.online:
            return 0
        from mstream.online_check import check_online, table

        checks = check_online(config)
        print(table(checks))
        failed = sum(1 for c in checks if not c.ok)
        print(f"{len(checks) - failed} of {len(checks)} online checks passed")
        return 3 if failed else 0
    setup_logging(args.log_level)
    from mstream.api.access import ensure_token
    from mstream.service import ServiceOptions, run_service

    try:
        options = ServiceOptions.from_env(
            progress_interval=args.progress_interval,
            exit_when_done=args.exit_when_done,
            data_dir=args.data_dir,
            api_host=args.api_host,
            api_port=args.api_port,
            api=False if args.no_api else None,
            safe_mode=True if args.safe_mode else None,
        )
        ensure_token(options)
        from mstream.core.heap import freeze_startup_heap, widen_young_generation

        freeze_startup_heap()  # full collections then skip the start-up heap
        widen_young_generation()  # and in-flight chunks are not rescanned every 700 objects
        return asyncio.run(run_service(config, options))
    except MstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
