"""`crosscast status`: read a running relay's /healthz and /metrics and summarise them.

Exit status: 0 healthy, 1 unhealthy, 2 unreachable. Used by the Docker HEALTHCHECK too.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9124"


def _get(url: str, timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 -- http only, ours
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def summarise(metrics_text: str) -> list[str]:
    """The non-zero counters of a /metrics page, one 'name{labels} value' per line."""
    return [
        line
        for line in metrics_text.splitlines()
        if line and not line.startswith("#") and not line.endswith(" 0")
    ]


def run(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        print(f"crosscast status: {base} is not an http:// URL", file=sys.stderr)
        return 2
    try:
        code, health = _get(f"{base}/healthz", args.timeout)
        _, metrics_text = _get(f"{base}/metrics", args.timeout)
    except (OSError, urllib.error.URLError) as e:
        print(f"crosscast status: cannot reach {base}: {e}", file=sys.stderr)
        return 2
    print(f"health: {health.strip()}")
    if not args.quiet:
        for line in summarise(metrics_text):
            print(f"  {line}")
    return 0 if code == 200 else 1


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("status", help="show a running relay's health and counters")
    p.add_argument("--url", default=DEFAULT_URL, help=f"the relay's metrics URL ({DEFAULT_URL})")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer")
    p.add_argument("-q", "--quiet", action="store_true", help="health only")
    p.set_defaults(func=run)
