"""Placeholder: `crosscast topology` and `crosscast lease` are being built."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("topology", help="(not yet available)")
    p.set_defaults(func=lambda _args: 2)
