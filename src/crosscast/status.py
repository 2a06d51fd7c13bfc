"""Placeholder: `crosscast status` is being built."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("status", help="(not yet available)")
    p.set_defaults(func=lambda _args: 2)
