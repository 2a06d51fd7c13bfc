"""Network namespaces: create, enter, run commands in, delete.

Used by the demo, the topology helper's `apply` and the integration tests. It owns no relay
logic. `inside()` switches only the calling thread (setns(2) is per thread), and a socket keeps
the namespace it was created in, so one process can hold sockets in many namespaces.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

CLONE_NEWNET = 0x40000000  # linux/sched.h
NETNS_RUN_DIR = Path("/run/netns")  # where `ip netns add` bind-mounts named namespaces

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    # Python 3.11 has no os.setns (3.12 does).
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def inside(name: str | None) -> Iterator[None]:
    """Run the body in namespace `name` (this thread only); None means stay where we are."""
    if name is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_RUN_DIR / name, os.O_RDONLY)
    try:
        _setns(target)
        yield
    finally:
        _setns(own)
        os.close(own)
        os.close(target)


def exec_argv(ns: str | None, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` inside `ns` (`ip netns exec` execs, so a PID is the program's)."""
    return [*(["ip", "netns", "exec", ns] if ns else []), *argv]


def run(
    argv: Sequence[str], ns: str | None = None, *, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command (inside `ns`), capturing its output; a failure raises with its stderr."""
    proc = subprocess.run(
        exec_argv(ns, argv), capture_output=True, text=True, input=input, check=False
    )
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


def exists(name: str) -> bool:
    return (NETNS_RUN_DIR / name).exists()


def add(name: str) -> None:
    """Create namespace `name` with loopback up, and private /etc/hosts and resolv.conf.

    `ip netns exec` bind-mounts /etc/netns/NAME/* over /etc/*: without our own resolv.conf a
    program in the namespace would ask the host's resolver, which is not ours to query.
    """
    if not exists(name):
        run(["ip", "netns", "add", name])
    run(["ip", "link", "set", "lo", "up"], ns=name)
    etc = Path("/etc/netns") / name
    etc.mkdir(parents=True, exist_ok=True)
    if not (etc / "hosts").exists():
        (etc / "hosts").write_text(f"127.0.0.1 localhost {name}\n")
    if not (etc / "resolv.conf").exists():
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")


def delete(name: str) -> None:
    """Delete namespace `name` (killing what still runs in it) and its /etc/netns files."""
    if exists(name):
        pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        run(["ip", "netns", "del", name], check=False)
    etc = Path("/etc/netns") / name
    if etc.is_dir():
        for f in etc.iterdir():
            f.unlink()
        etc.rmdir()


def names(prefix: str) -> list[str]:
    """The existing namespaces whose name starts with `prefix`."""
    if not NETNS_RUN_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_RUN_DIR.iterdir() if p.name.startswith(prefix))
