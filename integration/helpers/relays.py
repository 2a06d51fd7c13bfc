"""Start relays (crosscast and SnowSignal) and helper scripts inside lab namespaces, and keep
their logs so a failing test can show them."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from crosscast import lab

HELPERS = Path(__file__).resolve().parent
PYTHON = sys.executable
READY = lab.READY  # the relay logs a line containing this once its sockets are open
SNOWSIGNAL_READY = ("Starting UDP server listening on", "starting to listen for raw packets")
START_TIMEOUT = 10.0


def crosscast_argv(*args: str, iface: str = "eth0", log_level: str = "debug") -> list[str]:
    return [PYTHON, "-m", "crosscast", "relay", "-t", iface, "-ll", log_level, *args]


@dataclass
class Started:
    """A process spawned in a namespace, with its combined stdout/stderr log."""

    name: str
    ns: str
    proc: subprocess.Popen[bytes]
    log: Path
    ready_texts: tuple[str, ...] = ()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class Procs:
    """What a test started; `report()` is printed when the test fails."""

    directory: Path
    started: list[Started] = field(default_factory=list)

    def _spawn(
        self,
        name: str,
        ns: str,
        argv: list[str],
        env: dict[str, str] | None,
        ready_texts: tuple[str, ...],
    ) -> Started:
        log = self.directory / f"{name}.log"
        full_env = {"PYTHONUNBUFFERED": "1", **(env or {})}
        s = Started(name, ns, lab.spawn(ns, argv, log, full_env), log, ready_texts)
        self.started.append(s)
        return s

    def crosscast(
        self,
        host: lab.Host,
        *args: str,
        name: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Started:
        """Start `crosscast relay -t <host's iface> -ll debug ARGS` in the host's namespace."""
        return self._spawn(
            name or f"crosscast-{host.ns}",
            host.ns,
            crosscast_argv(*args, iface=host.iface),
            env,
            (READY,),
        )

    def snowsignal(
        self,
        host: lab.Host,
        *args: str,
        name: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Started:
        """Start SnowSignal 0.1.4.2 (`python -m snowsignal -t eth0 -ll debug ARGS`)."""
        argv = [PYTHON, "-m", "snowsignal", "-t", host.iface, "-ll", "debug", *args]
        return self._spawn(name or f"snowsignal-{host.ns}", host.ns, argv, env, SNOWSIGNAL_READY)

    def script(
        self,
        ns: str,
        name: str,
        script: str,
        *args: str,
        env: dict[str, str] | None = None,
        ready: str | None = None,
    ) -> Started:
        """Start integration/helpers/<script> in `ns`."""
        texts = (ready,) if ready else ()
        return self._spawn(name, ns, [PYTHON, str(HELPERS / script), *args], env, texts)

    def wait_ready(self, *which: Started, timeout: float = START_TIMEOUT) -> None:
        """Wait until each process has logged its ready line(s) (all were started already, so
        they start in parallel)."""
        deadline = time.monotonic() + timeout
        for s in which:
            for text in s.ready_texts:
                lab.wait_for_log(s.log, text, max(0.1, deadline - time.monotonic()), proc=s.proc)

    def report(self) -> str:
        parts = []
        for s in self.started:
            rc = s.proc.poll()
            state = "running" if rc is None else f"exited {rc}"
            body = s.text()
            if len(body) > 6000:
                body = "[...]\n" + body[-6000:]
            parts.append(f"===== {s.name} in {s.ns} ({state}) log {s.log} =====\n{body}")
        return "\n".join(parts)


def run_in(
    ns: str, argv: list[str], timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command inside `ns` to completion (stdout and stderr kept apart)."""
    import os

    from crosscast.net import netns

    return subprocess.run(
        netns.exec_argv(ns, argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def pva_get(ns: str, pv: str, addr_list: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {"EPICS_PVA_AUTO_ADDR_LIST": "NO", "EPICS_PVA_ADDR_LIST": addr_list}
    return run_in(ns, [PYTHON, str(HELPERS / "pva_get.py"), pv, str(timeout)], timeout + 10, env)
