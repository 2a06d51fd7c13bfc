"""The bench's testbed: throw-away namespaces, the relays of each system, generator and sink.

It owns where things run. Two labs under one random prefix (`crosscast.lab`): two routed VLANs
behind one router (hosts .11 and .12, relay hosts .21) and a two-node Swarm-like overlay. Each
system is a path from a sender to a receiver plus the relays it needs, all started as processes
through their command lines, so the bench measures any version of the relay the same way:

- kernel: sender and sink on the same VLAN, no relay (the ceiling of generator, sink, machine);
- crosscast-router: one `crosscast relay --rule ...` in the router namespace, VLAN 1 -> VLAN 2;
- crosscast-mesh (-secret): `crosscast relay -t eth0 -b PORT --other-relays PEER` on each side
  (with `--mesh-secret-file`), on the overlay by default or across the VLANs;
- snowsignal: `python -m snowsignal` the same way, on the overlay only: across routed VLANs it
  rebroadcasts with the source segment's broadcast address and receivers drop every frame.

The generator (`bench.generator`) and the sink (`bench.sink`) are long-lived processes in the
sender's and receiver's namespaces, driven by one-line commands. Nothing here decides rates or
judges results.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import secrets
import select
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from crosscast import lab
from crosscast.net import netns
from crosscast.relay.bench.report import KERNEL, MESH, MESH_SECRET, ROUTER, SNOWSIGNAL

PORT = 5076  # SnowSignal's default broadcast port (PVAccess searches)
VLAN_BASE = 241  # VLAN n is 10.241.n.0/24 (inside the bench's namespaces only)
OVERLAY_BASE = 242  # overlay 10.242.10.0/24, underlay 10.242.9.0/24
PREFIX_STEM = "ccbench"
READY = "ready"  # crosscast logs a line containing this once its sockets are open
START_TIMEOUT = 20.0  # seconds for a relay to log READY (the machine may be loaded)
ANSWER_TIMEOUT = 30.0  # seconds a worker may take to answer a command beyond its trial
MESH_ON = ("overlay", "vlans")
VXLAN_OVERHEAD = 50  # bytes: outer Ethernet, IPv4, UDP and VXLAN headers


def why_not_here() -> str | None:
    """Why the bench cannot run on this machine, in one line; None when it can."""
    if not sys.platform.startswith("linux"):
        return "needs Linux (network namespaces)"
    if os.geteuid() != 0:
        return "needs root (network namespaces and raw sockets): run it with sudo"
    return None


def snowsignal_installed() -> bool:
    try:
        importlib.import_module("snowsignal")
    except ImportError:
        return False
    return True


def _relay_env_vars() -> list[str]:
    """Every environment variable the relays read (crosscast's names are SnowSignal's too)."""
    from crosscast.relay import settings

    names = {getattr(a, "env_var", None) for a in settings.build_parser()._actions}
    return sorted(n for n in names if n)


class Worker:
    """A generator or sink process: one command line in, one JSON line out."""

    def __init__(self, ns: str, module: str, args: Sequence[str], log: Path) -> None:
        self.name = module.rsplit(".", 1)[-1]
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                netns.exec_argv(ns, [sys.executable, "-m", module, *args]),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self._read(ANSWER_TIMEOUT)  # {"ready": true}

    def ask(self, command: str, timeout: float = ANSWER_TIMEOUT) -> dict[str, Any]:
        stdin = self.proc.stdin
        if stdin is None:
            raise RuntimeError(f"{self.name}: no stdin")
        try:
            stdin.write(command.encode() + b"\n")
            stdin.flush()
        except BrokenPipeError:
            raise RuntimeError(f"the {self.name} exited:\n{self.tail()}") from None
        return self._read(timeout)

    def _read(self, timeout: float) -> dict[str, Any]:
        out: IO[bytes] | None = self.proc.stdout
        if out is None:
            raise RuntimeError(f"{self.name}: no stdout")
        ready, _, _ = select.select([out], [], [], timeout)
        line = out.readline() if ready else b""
        if not line:
            raise RuntimeError(f"the {self.name} did not answer:\n{self.tail()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def tail(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-10:])
        return ""

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # EOF: the worker ends its loop
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class Relay:
    """One relay process of a system, with its log."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_seconds(self) -> float | None:
        """CPU time so far, all threads (None once the relay exited).

        From the scheduler's own clock, /proc/PID/task/*/schedstat (nanoseconds), not psutil's
        user + system times, which count in clock ticks (10 ms): over a 3-second trial at
        1,000 pps a tick is 3 µs per frame, as coarse as the figure being measured.
        """
        texts = self._per_thread("schedstat")
        return None if texts is None else sum(int(t.split()[0]) for t in texts) / 1e9

    def switches(self) -> tuple[int, int] | None:
        """Context switches so far, all threads: (voluntary, involuntary), None once the relay
        exited. A voluntary one is a wait, which a wake-up ends; an involuntary one is a
        preemption (/proc/PID/task/*/status)."""
        texts = self._per_thread("status")
        if texts is None:
            return None
        waits = preempted = 0
        for text in texts:
            for line in text.splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    waits += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    preempted += int(line.split()[1])
        return waits, preempted

    def _per_thread(self, name: str) -> list[str] | None:
        """/proc/PID/task/*/`name` of every thread; None once the relay exited."""
        if not self.alive():
            return None
        texts = []
        try:
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                    texts.append((task / name).read_text())
        except FileNotFoundError:
            return None
        return texts

    def rss_mb(self) -> float | None:
        """Resident set size now (VmRSS of /proc/PID/status; None once the relay exited)."""
        if not self.alive():
            return None
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except FileNotFoundError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(FileNotFoundError):
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
            return "\n".join(f"    | {line}" for line in text)
        return ""


@dataclass
class Running:
    """A system that is up: its relays, and a generator and sink on its path."""

    system: str
    description: str
    relays: list[Relay]
    generator: Worker
    sink: Worker

    def cpu(self) -> list[float | None]:
        return [r.cpu_seconds() for r in self.relays]

    def rss(self) -> list[float | None]:
        return [r.rss_mb() for r in self.relays]

    def switches(self) -> list[tuple[int, int] | None]:
        return [r.switches() for r in self.relays]


def _fit_overlay_mtu(overlay: lab.SwarmOverlay) -> None:
    """Give the underlay room for 1500-byte overlay frames.

    The lab's containers have MTU 1500 but its VXLAN device 1450 (1500 minus the 50-byte
    encapsulation), so a mesh datagram carrying a 1400-byte payload frame (about 1470 bytes)
    is dropped silently at vx0. Docker sets the containers' MTU to 1450 instead, so their
    kernels fragment; here the underlay carries the extra 50 bytes, which keeps the 1400-byte
    comparison about the relays and not about a lab's MTU mismatch.
    """
    underlay_mtu = str(1500 + VXLAN_OVERHEAD)
    for node in overlay.nodes:
        netns.run(["ip", "link", "set", f"u{node.index}", "mtu", underlay_mtu], ns=overlay.underlay)
        netns.run(["ip", "link", "set", "ul0", "mtu", underlay_mtu], ns=node.ns)
        netns.run(["ip", "link", "set", "vx0", "mtu", "1500"], ns=node.ns)
        netns.run(["ip", "link", "set", "br-ov", "mtu", "1500"], ns=node.ns)


class Testbed:
    """Both labs under one prefix; `start(system)` brings a system up, `stop` takes it down."""

    def __init__(
        self, workdir: Path, mesh_on: str = "overlay", n_vlans: int = 2, stem: str = PREFIX_STEM
    ) -> None:
        if mesh_on not in MESH_ON:
            raise ValueError(f"mesh_on must be one of {MESH_ON}")
        self.workdir = workdir
        self.mesh_on = mesh_on
        self.n_vlans = n_vlans  # the soak (`bench.soak`) needs four
        self.prefix = lab.unique_prefix(stem)
        self._vlans: lab.RoutedVlans | None = None
        self._overlay: lab.SwarmOverlay | None = None

    @property
    def vlans(self) -> lab.RoutedVlans:
        if self._vlans is None:
            self._vlans = lab.RoutedVlans.build(
                self.prefix,
                n_vlans=self.n_vlans,
                hosts_per_vlan=2,
                relay_hosts=True,
                base=VLAN_BASE,
            )
        return self._vlans

    @property
    def overlay(self) -> lab.SwarmOverlay:
        if self._overlay is None:
            self._overlay = lab.SwarmOverlay.build(
                self.prefix, nodes=2, apps_per_node=1, base=OVERLAY_BASE
            )
            _fit_overlay_mtu(self._overlay)
        return self._overlay

    def teardown(self) -> None:
        lab.teardown(self.prefix)

    # -- systems ----------------------------------------------------------------------------

    def _mesh_hosts(self, system: str) -> tuple[lab.Host, lab.Host, lab.Host, lab.Host, str]:
        """(sender, receiver, relay A, relay B, where) of a mesh system."""
        if system == SNOWSIGNAL or self.mesh_on == "overlay":
            o = self.overlay
            a, b = o.nodes[0], o.nodes[1]
            return a.apps[0], b.apps[0], a.relay, b.relay, "2 Swarm-like nodes over VXLAN"
        v = self.vlans
        return v.hosts[1][0], v.hosts[2][0], v.relays[1], v.relays[2], "2 routed VLANs"

    def start(self, system: str) -> Running:
        port = str(PORT)
        relays: list[Relay] = []
        if system == KERNEL:
            sender, receiver = self.vlans.hosts[1][0], self.vlans.hosts[1][1]
            where = "sender and sink on one VLAN"
        elif system == ROUTER:
            sender, receiver = self.vlans.hosts[1][0], self.vlans.hosts[2][0]
            rule = f"bench from br1 to br2 port {PORT}"
            relays.append(self.crosscast("router", self.vlans.router, ["--rule", rule]))
            where = f"relay in the router: {rule}"
        elif system in (MESH, MESH_SECRET, SNOWSIGNAL):
            sender, receiver, a, b, where = self._mesh_hosts(system)
            extra = []
            if system == MESH_SECRET:
                secret = self.workdir / "mesh-secret"
                secret.write_text(secrets.token_hex(32))
                secret.chmod(0o600)
                extra = ["--mesh-secret-file", str(secret)]
            for name, host, peer in (("A", a, b), ("B", b, a)):
                args = ["-t", host.iface, "-b", port, "--other-relays", peer.ip, *extra]
                if system == SNOWSIGNAL:
                    relays.append(self._snowsignal(name, host.ns, args))
                else:
                    relays.append(self.crosscast(name, host.ns, args))
        else:
            raise ValueError(f"unknown system {system!r}")
        for relay in relays:
            if system != SNOWSIGNAL:  # SnowSignal logs nothing like "ready" at info level
                self.wait_ready(relay)
        generator, sink = self.workers(system, sender, receiver)
        return Running(system, where, relays, generator, sink)

    def workers(self, label: str, sender: lab.Host, receiver: lab.Host) -> tuple[Worker, Worker]:
        """A generator of broadcasts to PORT on the sender's segment, and a sink on the
        receiver."""
        generator = Worker(
            sender.ns,
            "crosscast.relay.bench.generator",
            [
                "--iface",
                sender.iface,
                "--src-mac",
                sender.mac,
                "--src-ip",
                sender.ip,
                "--dst-ip",
                sender.segment.broadcast,
                "--port",
                str(PORT),
            ],
            self.workdir / f"{label}-generator.log",
        )
        sink = Worker(
            receiver.ns,
            "crosscast.relay.bench.sink",
            ["--port", str(PORT)],
            self.workdir / f"{label}-sink.log",
        )
        return generator, sink

    def stop(self, running: Running) -> None:
        running.generator.close()
        running.sink.close()
        for relay in running.relays:
            lab.stop(relay.proc)

    def _spawn(self, name: str, ns: str, argv: list[str]) -> Relay:
        log = self.workdir / f"relay-{name}.log"
        # The relays read settings from the environment too; the bench's must not depend on
        # what the caller happens to have set (RULES, MESH_SECRET_FILE, BDCAST_PORT, ...).
        unset = [a for var in _relay_env_vars() for a in ("-u", var)]
        proc = lab.spawn(ns, ["env", *unset, *argv], log, {"PYTHONUNBUFFERED": "1"})
        return Relay(name, proc, log)

    def crosscast(self, name: str, ns: str, args: list[str]) -> Relay:
        """`crosscast relay -ll info ARGS` in `ns`, not waited for (see `wait_ready`)."""
        # --egress-rate 0: the bench measures the data path, not the storm cap per interface
        # (20,000 frames/s by default), which would otherwise cap every rate above it.
        argv = [sys.executable, "-m", "crosscast", "relay", "-ll", "info", "--egress-rate", "0"]
        return self._spawn(f"crosscast-{name}", ns, [*argv, *args])

    def _snowsignal(self, name: str, ns: str, args: list[str]) -> Relay:
        return self._spawn(
            f"snowsignal-{name}", ns, [sys.executable, "-m", "snowsignal", "-ll", "info", *args]
        )

    def wait_ready(self, relay: Relay) -> None:
        try:
            lab.wait_for_log(relay.log, READY, START_TIMEOUT, relay.proc)
        except TimeoutError:
            raise RuntimeError(
                f"the relay {relay.name} did not start; its log ends with:\n{relay.tail()}"
            ) from None
