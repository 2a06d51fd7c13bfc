"""What the lab started, by namespace, and its teardown: the one place that knows it.

Every namespace the lab builds is named `<prefix>-<suffix>`; the processes, DNS servers and
long-lived sockets started in one are registered here under that namespace, so `teardown(prefix)`
stops and closes exactly what belongs to one run and then deletes its namespaces. The first
prefix a process uses registers `teardown_all` with atexit, so a crashed test run leaves nothing
behind either.
"""

from __future__ import annotations

import atexit
import contextlib
import secrets
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Protocol

from crosscast.net import netns


class Server(Protocol):
    """Anything the lab runs in a thread of its own (the fake DNS): teardown calls close()."""

    def close(self) -> None: ...


@dataclass
class _Registry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    servers: list[tuple[str, Server]] = field(default_factory=list)
    sockets: list[tuple[str, socket.socket]] = field(default_factory=list)
    prefixes: set[str] = field(default_factory=set)


_REGISTRY = _Registry()


def unique_prefix(stem: str = "cci") -> str:
    """A namespace prefix no other run on this machine is using (stem + 4 random hex digits)."""
    for _ in range(100):
        prefix = stem + secrets.token_hex(2)
        if not netns.names(prefix):
            return prefix
    raise RuntimeError(f"no free namespace prefix for {stem!r}")


def ns_name(prefix: str, suffix: str) -> str:
    """The name of the namespace `suffix` of the run `prefix`."""
    return f"{prefix}-{suffix}"


def remember(prefix: str) -> None:
    """Note that this process builds namespaces under `prefix` (atexit tears them down)."""
    with _REGISTRY.lock:
        first = not _REGISTRY.prefixes
        _REGISTRY.prefixes.add(prefix)
    if first:
        atexit.register(teardown_all)


def keep_process(ns: str, proc: subprocess.Popen[bytes]) -> None:
    with _REGISTRY.lock:
        _REGISTRY.procs.append((ns, proc))


def forget_process(proc: subprocess.Popen[bytes]) -> None:
    with _REGISTRY.lock:
        _REGISTRY.procs = [(ns, p) for ns, p in _REGISTRY.procs if p is not proc]


def keep_server(ns: str, server: Server) -> None:
    with _REGISTRY.lock:
        _REGISTRY.servers.append((ns, server))


def keep_socket(ns: str, sock: socket.socket) -> socket.socket:
    """Register a long-lived socket of `ns`: teardown() closes it."""
    with _REGISTRY.lock:
        _REGISTRY.sockets.append((ns, sock))
    return sock


def stop_process(proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; nothing if it has already exited."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(grace)


def _ours(prefix: str, ns: str) -> bool:
    return ns.startswith(prefix + "-")


def teardown(prefix: str) -> None:
    """Stop every process and DNS server started in `prefix`'s namespaces, delete the namespaces."""
    with _REGISTRY.lock:
        procs = [p for ns, p in _REGISTRY.procs if _ours(prefix, ns)]
        _REGISTRY.procs = [(ns, p) for ns, p in _REGISTRY.procs if not _ours(prefix, ns)]
        servers = [s for ns, s in _REGISTRY.servers if _ours(prefix, ns)]
        _REGISTRY.servers = [(ns, s) for ns, s in _REGISTRY.servers if not _ours(prefix, ns)]
        socks = [s for ns, s in _REGISTRY.sockets if _ours(prefix, ns)]
        _REGISTRY.sockets = [(ns, s) for ns, s in _REGISTRY.sockets if not _ours(prefix, ns)]
        _REGISTRY.prefixes.discard(prefix)
    for proc in procs:
        stop_process(proc)
    for server in servers:
        server.close()
    for sock in socks:
        sock.close()
    for ns in netns.names(prefix + "-"):
        netns.delete(ns)


def teardown_all() -> None:
    """Tear down every prefix this process built (registered with atexit on first use)."""
    with _REGISTRY.lock:
        prefixes = sorted(_REGISTRY.prefixes)
    for prefix in prefixes:
        teardown(prefix)
