"""``mstream dlq list|replay|discard JOB``: a running service's dead letters, from a shell.

It talks to the service's REST API (``--url``, default ``http://MSTREAM_API_HOST:
MSTREAM_API_PORT``, with ``MSTREAM_API_TOKEN`` when set), so it works against the process
that holds the jobs. Exit codes: 0 done, 1 a replay left events refused again (or stopped
early), 2 bad arguments or an API error (its message on stderr), 3 the service does not
answer.

Example:
    >>> _parser().parse_args(["replay", "orders", "--ids", "4,7"]).ids
    '4,7'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import requests


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mstream dlq", description="list, replay or discard a job's kept dead letters"
    )
    parser.add_argument("action", choices=["list", "replay", "discard"])
    parser.add_argument("job", help="the job's name")
    parser.add_argument("--ids", default=None, help="comma-separated record ids (default: all)")
    parser.add_argument("--stage", default=None, help="list: only this stage")
    parser.add_argument("--reason", default=None, help="list: reasons containing this text")
    parser.add_argument("--limit", type=int, default=50, help="list: at most this many (50)")
    parser.add_argument("--url", default=None, help="the service's API base URL")
    return parser


def _base_url(explicit: str | None) -> str:
    if explicit:
        return explicit.rstrip("/")
    host = os.environ.get("MSTREAM_API_HOST", "127.0.0.1")
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{os.environ.get('MSTREAM_API_PORT', '8719')}"


def main(argv: Sequence[str]) -> int:
    """Run one ``dlq`` action; returns the exit code."""
    args = _parser().parse_args(argv)
    url = f"{_base_url(args.url)}/jobs/{quote(args.job, safe='')}/dead-letters"
    headers = {"Content-Type": "application/json"}
    token = os.environ.get("MSTREAM_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        if args.action == "list":
            params: dict[str, Any] = {"limit": args.limit}
            params.update({k: v for k, v in (("stage", args.stage), ("reason", args.reason)) if v})
            answer = requests.get(url, params=params, headers=headers, timeout=30)
        elif args.action == "discard":
            params = {"ids": args.ids} if args.ids else {}
            answer = requests.delete(url, params=params, headers=headers, timeout=30)
        else:
            body = {"ids": [i.strip() for i in args.ids.split(",")]} if args.ids else {}
            answer = requests.post(f"{url}/replay", json=body, headers=headers, timeout=300)
    except requests.RequestException as exc:
        print(f"error: the mstream service at {url} does not answer ({exc})", file=sys.stderr)
        return 3
    try:
        data = answer.json()
    except ValueError:
        data = {"error": {"message": answer.text[:500]}}
    if answer.status_code != 200:
        message = (data.get("error") or {}).get("message", answer.reason)
        print(f"error: {answer.status_code}: {message}", file=sys.stderr)
        return 2
    if args.action == "list":
        for record in data["dead_letters"]:
            print(
                f"{record['id']}\t{record['stage']}\t{record.get('step', '')}\t{record['reason']}"
            )
        print(f"{data['total']} kept, {data['dropped']} dropped by the bound", file=sys.stderr)
        return 0
    print(json.dumps(data))
    if args.action == "replay" and (data.get("rejected_again") or data.get("error")):
        return 1
    return 0
