"""Execute an apply or destroy plan: the only part of the topology helper that touches the system.

It owns running commands (through `crosscast.net.netns`), answering each step's "already done?",
starting and stopping daemons (dhcpd, the relay), and the state directory
/run/crosscast/<prefix>/. What to build and how things are named is decided in `plan.py`; this
module must not make such decisions.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TextIO

from crosscast.net import netns
from crosscast.topology.model import Topology
from crosscast.topology.plan import (
    STATE_ROOT,
    Action,
    AddNamespace,
    Check,
    DaemonRunning,
    DefaultRoute,
    DeleteNamespace,
    FileHas,
    FirewallIs,
    HasAddress,
    Layout,
    LinkExists,
    LinkUp,
    NamespaceExists,
    Not,
    Note,
    PathExists,
    Plan,
    PortOf,
    RemoveTree,
    Run,
    StartDaemon,
    StopDaemon,
    SysctlIs,
    WriteFile,
    check_leases,
    layout_for,
    plan_apply,
    plan_destroy,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DAEMON_DEADLINE = 5.0  # seconds for dhcpd to write its PID file, or to exit when stopped
READY_DEADLINE = 15.0  # seconds for a daemon that logs when it is ready (the relay) to say so
POLL = 0.05
KERNEL_8021Q = Path("/proc/net/vlan")  # present when the kernel has CONFIG_VLAN_8021Q

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class StepFailed(Exception):
    pass


def _root_layout(
    topology: Topology, netns_prefix: str | None, state_root: str, needs_root: str
) -> Layout | None:
    """The layout to act on, or None after one line on stderr (bad prefix, or not root)."""
    try:
        layout = layout_for(
            topology, netns_prefix, state_root=state_root, kernel_has_8021q=KERNEL_8021Q.exists()
        )
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return None
    if os.geteuid() != 0:
        print(needs_root, file=sys.stderr)
        return None
    return layout


def apply_topology(
    topology: Topology,
    *,
    netns_prefix: str | None,
    leases: Mapping[str, IPv4Address] | None = None,
    state_root: str = STATE_ROOT,
    out: TextIO | None = None,
) -> int:
    """Build `topology` (idempotently); 0 when done, 1 when a step failed, 2 on bad input."""
    out = out or sys.stdout
    leases = dict(leases or {})
    problems = check_leases(topology, leases)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    needs_root = "apply needs root (network namespaces, bridges, iptables)"
    layout = _root_layout(topology, netns_prefix, state_root, needs_root)
    if layout is None:
        return EXIT_USAGE
    return _report(execute(plan_apply(topology, layout, leases), out=out), out)


def destroy_topology(
    topology: Topology,
    *,
    netns_prefix: str | None,
    state_root: str = STATE_ROOT,
    out: TextIO | None = None,
) -> int:
    """Remove what apply built for `topology`; 0 when nothing of it is left."""
    out = out or sys.stdout
    layout = _root_layout(topology, netns_prefix, state_root, "destroy needs root")
    if layout is None:
        return EXIT_USAGE
    return _report(execute(plan_destroy(topology, layout), out=out), out)


def _report(result: tuple[int, int, str | None], out: TextIO) -> int:
    performed, skipped, failure = result
    if failure is not None:
        print(f"failed: {failure}", file=out)
        return EXIT_FAILED
    print(f"{performed} steps done, {skipped} already in place", file=out)
    return EXIT_OK


def execute(plan: Plan, *, out: TextIO, runner: Runner = netns.run) -> tuple[int, int, str | None]:
    """Run each step whose check is not yet satisfied; stop at the first failure.

    Returns (steps performed, steps already done, the failure or None).
    """
    performed = skipped = 0
    for item in plan:
        if isinstance(item, Note):
            print(f"note {item.text}", file=out)
            continue
        if is_done(item.done, runner):
            skipped += 1
            print(f"ok   {item.description}", file=out)
            continue
        print(f"+    {item.description}", file=out)
        try:
            for action in item.actions:
                perform(action, runner)
            if not is_done(item.done, runner):
                raise StepFailed("the step ran but its check still fails")
        except (subprocess.CalledProcessError, OSError, StepFailed) as exc:
            return performed, skipped, f"{item.description}: {_why(exc)}"
        performed += 1
    return performed, skipped, None


def _why(exc: Exception) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        detail = (exc.stderr or exc.stdout or "").strip().splitlines()
        return f"`{' '.join(exc.cmd)}` exited {exc.returncode}: {' '.join(detail[-2:])}"
    return str(exc)


# -- actions ------------------------------------------------------------------------------------


def perform(action: Action, runner: Runner) -> None:
    match action:
        case Run(argv, ns, text):
            runner(list(argv), ns, input=text)
        case AddNamespace(name):
            netns.add(name)
        case DeleteNamespace(name):
            netns.delete(name)
        case WriteFile(path, text):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text, encoding="utf-8")
        case StartDaemon():
            _start_daemon(action)
        case StopDaemon(pidfile, program, args):
            _stop_daemon(pidfile, program, args)
        case RemoveTree(path):
            shutil.rmtree(path, ignore_errors=True)


def _start_daemon(daemon: StartDaemon) -> None:
    pidfile, log = daemon.pidfile, daemon.log
    program = daemon.program or Path(daemon.argv[0]).name
    Path(pidfile).unlink(missing_ok=True)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    argv = netns.exec_argv(daemon.ns, daemon.argv)
    if daemon.write_pidfile:
        # The shell writes its own PID and execs `ip netns exec`, which execs the daemon.
        argv = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', pidfile, *argv]
    keep = daemon.inherit_env
    env = {k: v for k, v in os.environ.items() if keep is None or k in keep}
    env.update(daemon.env)
    with open(log, "ab") as sink:
        offset = sink.tell()  # what it logs from here on is this start's
        # `setsid -f` forks: the daemon is nobody's child here (no zombie, no Popen to reap),
        # and `ip netns exec` execs, so the PID it writes is the daemon's own.
        subprocess.run(
            ["setsid", "-f", *argv],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            env=env,
            check=True,
        )
    deadline = time.monotonic() + (DAEMON_DEADLINE if daemon.ready is None else READY_DEADLINE)
    why = "no PID file" if daemon.ready is None else f"its log does not say {daemon.ready!r}"
    while time.monotonic() < deadline:
        if daemon_pid(pidfile, program, daemon.args) is not None and (
            daemon.ready is None or _logged(log, offset, daemon.ready)
        ):
            return
        if daemon.write_pidfile and _exited(pidfile):
            why = "it exited"
            break
        time.sleep(POLL)
    raise StepFailed(f"{program} did not start ({why}): {' | '.join(_tail(log, offset))}")


def _logged(log: str, offset: int, word: str) -> bool:
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return re.search(rf"\b{re.escape(word)}\b", text) is not None


def _tail(log: str, offset: int = 0, lines: int = 3) -> list[str]:
    with open(log, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace").strip().splitlines()[-lines:]


def _exited(pidfile: str) -> bool:
    """The process in `pidfile` (written before it started) is gone or a zombie."""
    try:
        pid = int(Path(pidfile).read_text().strip())
    except (OSError, ValueError):
        return False  # not written yet
    return _gone(pid)


def _gone(pid: int) -> bool:
    """Process `pid` has ended: no longer in /proc, or a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def daemon_pid(pidfile: str, program: str, args: tuple[str, ...] = ()) -> int | None:
    """The PID in `pidfile` if that process is alive and is `program` (PIDs get reused): its
    comm is `program`, or, with `args`, its command line holds `args` in a row."""
    try:
        pid = int(Path(pidfile).read_text().strip())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if args:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            words = tuple(cmdline.split("\0"))
            n = len(args)
            ours = any(words[i : i + n] == args for i in range(len(words) - n + 1))
        else:
            ours = Path(f"/proc/{pid}/comm").read_text().strip() == program
    except (OSError, ValueError, IndexError):
        return None
    return pid if ours and state != "Z" else None


def _stop_daemon(pidfile: str, program: str, args: tuple[str, ...] = ()) -> None:
    pid = daemon_pid(pidfile, program, args)
    if pid is None:
        Path(pidfile).unlink(missing_ok=True)
        return
    # SIGTERM gets the grace period; after SIGKILL only the scheduler stands between the kill and
    # the process's end, but on a loaded machine that can take longer than a short grace period.
    for sig, wait in (
        (signal.SIGTERM, DAEMON_DEADLINE),
        (signal.SIGKILL, max(DAEMON_DEADLINE, 5.0)),
    ):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            # The PID, not daemon_pid(): an exiting process's command line reads empty once its
            # memory is released, but it holds its sockets and files until it is a zombie.
            if _gone(pid):
                Path(pidfile).unlink(missing_ok=True)
                return
            time.sleep(POLL)
    raise StepFailed(f"{program} (pid {pid}) does not stop")


# -- checks -------------------------------------------------------------------------------------


def _ip_json(runner: Runner, ns: str | None, *argv: str) -> list[dict[str, Any]]:
    proc = runner(["ip", "-j", *argv], ns, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    data = json.loads(proc.stdout)
    return data if isinstance(data, list) else []


def _link(runner: Runner, ns: str | None, ifname: str) -> dict[str, Any] | None:
    if ns is not None and not netns.exists(ns):
        return None
    links = _ip_json(runner, ns, "link", "show", "dev", ifname)
    return links[0] if links else None


def is_done(check: Check, runner: Runner) -> bool:
    match check:
        case Not(inner):
            return not is_done(inner, runner)
        case NamespaceExists(name):
            return netns.exists(name)
        case LinkExists(ns, ifname):
            return _link(runner, ns, ifname) is not None
        case LinkUp(ns, ifname):
            link = _link(runner, ns, ifname)
            return link is not None and "UP" in link.get("flags", [])
        case PortOf(ns, ifname, bridge):
            link = _link(runner, ns, ifname)
            return (
                link is not None and link.get("master") == bridge and "UP" in link.get("flags", [])
            )
        case HasAddress(ns, ifname, cidr):
            if ns is not None and not netns.exists(ns):
                return False
            for entry in _ip_json(runner, ns, "-4", "address", "show", "dev", ifname):
                for info in entry.get("addr_info", []):
                    if f"{info.get('local')}/{info.get('prefixlen')}" == cidr:
                        return True
            return False
        case DefaultRoute(ns, via):
            if ns is not None and not netns.exists(ns):
                return False
            routes = _ip_json(runner, ns, "-4", "route", "show", "default")
            return any(route.get("gateway") == via for route in routes)
        case SysctlIs(ns, key, value):
            if ns is not None and not netns.exists(ns):
                return False
            proc = runner(["sysctl", "-n", key], ns, check=False)
            return proc.returncode == 0 and proc.stdout.strip() == value
        case FileHas(path, text):
            try:
                return Path(path).read_text(encoding="utf-8") == text
            except OSError:
                return False
        case PathExists(path):
            return Path(path).exists()
        case FirewallIs(ns, rules):
            if ns is not None and not netns.exists(ns):
                return False
            proc = runner(["iptables-save"], ns, check=False)
            return proc.returncode == 0 and _tables(proc.stdout) == _tables(rules)
        case DaemonRunning(pidfile, program, config, args):
            if daemon_pid(pidfile, program, args) is None:
                return False
            # The daemon writes its PID file as it starts: older than its config means stale.
            return config is None or _mtime(pidfile) >= _mtime(config)
    raise TypeError(f"unknown check {check!r}")


def _mtime(path: str) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


def _tables(text: str) -> dict[str, list[str]]:
    """iptables-restore text -> {table: its lines}, without comments and counters."""
    tables: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], [])
            continue
        if line.startswith(":"):
            line = line.rsplit(" ", 1)[0]  # ":FORWARD DROP [12:3456]" -> ":FORWARD DROP"
        current.append(line)
    return tables
