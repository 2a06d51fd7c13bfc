"""Processes inside lab namespaces: start one, stop it, wait for what it logs.

Every process spawn() starts is registered with its namespace, so the teardown of its prefix
stops it even when a test forgets to.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from crosscast.lab import registry
from crosscast.net import netns


def spawn(
    ns: str,
    argv: Sequence[str],
    log_path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` inside `ns`, stdout and stderr to `log_path`; stopped by teardown()."""
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            netns.exec_argv(ns, argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    registry.keep_process(ns, proc)
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 2.0) -> int:
    """Stop a process spawn() started (SIGTERM, then SIGKILL after `grace`); its exit status."""
    registry.stop_process(proc, grace)
    registry.forget_process(proc)
    return proc.wait()


def wait_for_log(
    path: str | os.PathLike[str],
    text: str,
    timeout: float = 10.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> str:
    """Poll `path` until it contains `text`; the log so far. TimeoutError (with the log tail)
    when it does not appear in time, or as soon as `proc` has exited."""
    deadline = time.monotonic() + timeout
    content = ""
    while True:
        with contextlib.suppress(FileNotFoundError):
            content = Path(path).read_text(errors="replace")
        if text in content:
            return content
        if proc is not None and proc.poll() is not None:
            raise TimeoutError(
                f"process exited ({proc.returncode}) before logging {text!r}; log:\n"
                + content[-3000:]
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} not in {path} after {timeout} s; log:\n{content[-3000:]}")
        time.sleep(0.05)


def wait_until(
    condition: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = ""
) -> None:
    """Poll `condition` until true; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout} s: {what or condition!r}")
        time.sleep(interval)
