"""`crosscast status`: read a running relay's /healthz and /metrics and summarise them.

Exit status: 0 healthy, 1 unhealthy, 2 unreachable (or not a metrics page). Used by the Docker
HEALTHCHECK too. Every sample is shown, zeros included (`crosscast_up 0` is the news).

`--format json` prints one object (the shape is documented in the README, "JSON output"):

    {"url": str, "healthy": bool, "health": str,
     "samples": [{"name": str, "labels": {str: str}, "value": float | null}, ...]}

where a value that JSON cannot carry (NaN, +Inf such as a peer never heard) is null.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

DEFAULT_URL = "http://127.0.0.1:9124"


def _get(url: str, timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 -- http only, ours
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(metrics_text: str) -> list[dict[str, Any]]:
    """Every sample of a /metrics page in page order, as {"name", "labels", "value"}.
    Raises ValueError when the text is not in the Prometheus text format."""
    return [
        {"name": s.name, "labels": dict(s.labels), "value": s.value}
        for family in text_string_to_metric_families(metrics_text)
        for s in family.samples
    ]


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:g}"


def summarise(metrics_text: str) -> list[str]:
    """Every sample of a /metrics page, zeros too, one 'name{labels} value' per line."""
    lines = []
    for s in samples(metrics_text):
        pairs = ",".join(f'{k}="{v}"' for k, v in sorted(s["labels"].items()))
        name = f"{s['name']}{{{pairs}}}" if pairs else s["name"]
        lines.append(f"{name} {_number(s['value'])}")
    return lines


def as_json(url: str, code: int, health: str, metrics_text: str) -> dict[str, Any]:
    rows = samples(metrics_text)
    for row in rows:
        if not math.isfinite(row["value"]):
            row["value"] = None
    return {"url": url, "healthy": code == 200, "health": health.strip(), "samples": rows}


def run(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        print(f"crosscast status: {base} is not an http:// URL", file=sys.stderr)
        return 2
    try:
        code, health = _get(f"{base}/healthz", args.timeout)
        _, metrics_text = _get(f"{base}/metrics", args.timeout)
        lines = summarise(metrics_text)
        report = as_json(base, code, health, metrics_text) if args.format == "json" else None
    except (OSError, urllib.error.URLError) as e:
        print(f"crosscast status: cannot reach {base}: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"crosscast status: {base}/metrics is not a metrics page: {e}", file=sys.stderr)
        return 2
    if report is not None:
        print(json.dumps(report, indent=2))
    else:
        print(f"health: {health.strip()}")
        if not args.quiet:
            for line in lines:
                print(f"  {line}")
    return 0 if code == 200 else 1


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("status", help="show a running relay's health and counters")
    p.add_argument("--url", default=DEFAULT_URL, help=f"the relay's metrics URL ({DEFAULT_URL})")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer")
    p.add_argument("-q", "--quiet", action="store_true", help="health only")
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for people (default) or one JSON object for scripts",
    )
    p.set_defaults(func=run)
