"""Test-suite wide options: tests marked `root` need root and network namespaces.

Without root they are skipped, except under `--require-root` (which `scripts/test` and CI pass):
there a skip would hide a broken relay, so it is a failure instead.
"""

from __future__ import annotations

import os
import shutil

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-root",
        action="store_true",
        default=False,
        help="fail, instead of skipping, tests marked root when root or `ip netns` is missing",
    )


def _why_no_root() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is None:
        return
    why = _why_no_root()
    if why is None:
        return
    if item.config.getoption("--require-root"):
        pytest.fail(f"{why}, and --require-root forbids skipping", pytrace=False)
    pytest.skip(why)
