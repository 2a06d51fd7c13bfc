"""Micro-benchmarks of the relay's pure hot path (pytest-benchmark), and when they are timed.

`./scripts/bench-micro` or `pytest benchmarks` times them. Anywhere else (the whole suite, CI)
each benchmark body runs once with timing off, so they cannot rot and cost CI well under a
second; `--benchmark-enable` times them anyway. Timings never gate anything.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

if importlib.util.find_spec("pytest_benchmark") is None:  # not installed: nothing to run
    collect_ignore_glob = ["test_*.py"]


def _only_benchmarks(config: pytest.Config) -> bool:
    """Whether the command line named only paths inside benchmarks/."""
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        return False
    paths = [Path(config.invocation_params.dir, a.split("::")[0]).resolve() for a in config.args]
    return bool(paths) and all(p == HERE or HERE in p.parents for p in paths)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    session = getattr(config, "_benchmarksession", None)  # pytest-benchmark's own state
    if session is None or config.getoption("benchmark_enable", False):
        return
    if not _only_benchmarks(config):
        session.disabled = True
