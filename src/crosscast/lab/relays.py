"""`crosscast relay` processes inside lab namespaces: start one, wait until it is ready.

The demo and the integration tests start relays the same way: this interpreter's
`python -m crosscast relay`, unbuffered output to a log file, and none of the caller's own relay
settings leaking in through the environment (RULES, MESH_SECRET_FILE, ...).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from crosscast.lab import procs
from crosscast.relay import READY  # the relay logs a line containing it once its sockets are open

START_TIMEOUT = 15.0  # seconds for a relay to log READY


@dataclass
class RelayProcess:
    """One `crosscast relay` started in a namespace, with its combined stdout/stderr log."""

    ns: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log: Path
    name: str = "relay"

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def last_lines(self, lines: int) -> list[str]:
        return self.text().splitlines()[-lines:]

    def tail(self, lines: int = 40) -> str:
        """The end of the log, for assertion messages."""
        return f"--- relay log ({self.log}) ---\n" + "\n".join(self.last_lines(lines))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        return procs.stop(self.proc)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Return once the relay logged READY; TimeoutError (with its log) if it did not, or
        as soon as it exited."""
        procs.wait_for_log(self.log, READY, timeout, self.proc)


def relay_env_vars() -> tuple[str, ...]:
    """Every environment variable `crosscast relay` reads, from its own parser."""
    from crosscast.relay import settings  # the lab itself needs no relay unless it starts one

    return settings.env_vars()


def spawn_relay(
    ns: str,
    args: Sequence[str],
    log: Path,
    *,
    log_level: str = "debug",
    env: Mapping[str, str] | None = None,
    name: str = "relay",
) -> RelayProcess:
    """Start `python -m crosscast relay -ll LEVEL ARGS` in `ns` without waiting for it.

    Settings come only from `args` and `env`: every other relay variable of the caller's
    environment is unset (`env -u`), so a run does not depend on what the caller had set.
    """
    relay_argv = [sys.executable, "-m", "crosscast", "relay", "-ll", log_level, *args]
    env = {"PYTHONUNBUFFERED": "1", **(env or {})}
    proc = procs.spawn(ns, hermetic(relay_argv, env), log, env)
    return RelayProcess(ns, relay_argv, proc, log, name)


def hermetic(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """`argv` run through `env -u VAR ...` for every relay variable that `env` does not set."""
    unset = [a for var in relay_env_vars() if var not in env for a in ("-u", var)]
    return ["env", *unset, *argv]


def start_relay(
    ns: str,
    args: Sequence[str],
    log: Path,
    *,
    log_level: str = "debug",
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> RelayProcess:
    """spawn_relay(), then return once it logs READY (stopped again if it does not)."""
    relay = spawn_relay(ns, args, log, log_level=log_level, env=env)
    try:
        relay.wait_ready(timeout)
    except TimeoutError:
        relay.stop()
        raise
    return relay


def rule_args(*rules: str) -> list[str]:
    """`--rule TEXT` for each rule."""
    return [arg for text in rules for arg in ("--rule", text)]
