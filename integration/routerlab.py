"""Router-mode test helpers: an isolated router namespace, one relay process in it, probes.

Used by the integration/test_router_*.py modules. It adds to `crosscast.lab` what router mode
needs and the lab does not have: a router firewall that drops FORWARD between VLAN bridges
(br_netfilter is on in every namespace, so bridged frames traverse FORWARD too and each bridge
needs its own ACCEPT), the router's bridge MACs, a relay process started with explicit rules,
multicast listeners and senders, and two-node wiring for router + mesh. It touches only
namespaces the lab built for the calling test module.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crosscast import lab
from crosscast.net import netns
from crosscast.relay import READY  # the relay logs a line with it once its sockets are open

PYTHON = sys.executable
START_TIMEOUT = 15.0  # seconds for a relay to log READY
ARRIVAL_TIMEOUT = 5.0  # seconds a datagram that should cross may take (IGMP snooping included)
RESEND_INTERVAL = 0.25  # seconds between re-sends while waiting for a positive arrival
QUIET_WINDOW = 1.0  # seconds a negative check listens for something that must not arrive


# ---------------------------------------------------------------------------------------------
# The router namespace


def isolate_vlans(router_ns: str, bridges: Iterable[str]) -> None:
    """FORWARD policy DROP in the router namespace, except within one bridge.

    Bridged frames traverse iptables FORWARD (br_netfilter) with -i/-o set to the bridge, so a
    bare DROP policy would also cut each VLAN in two; the per-bridge ACCEPT keeps VLANs whole
    while nothing is routed between them.
    """
    netns.run(["iptables", "-P", "FORWARD", "DROP"], ns=router_ns)
    for br in bridges:
        netns.run(["iptables", "-A", "FORWARD", "-i", br, "-o", br, "-j", "ACCEPT"], ns=router_ns)


def link_mac(ns: str, dev: str) -> str:
    """The MAC of `dev` in `ns`, lower case, colon-separated."""
    out = netns.run(["ip", "-j", "link", "show", "dev", dev], ns=ns).stdout
    mac: str = json.loads(out)[0]["address"]
    return mac.lower()


def bridge_macs(router: str, n_vlans: int) -> dict[int, str]:
    """The MACs of br1..brN in the router namespace (what the relay must emit with)."""
    return {n: link_mac(router, f"br{n}") for n in range(1, n_vlans + 1)}


# ---------------------------------------------------------------------------------------------
# The relay process


@dataclass
class RelayProcess:
    """One `crosscast relay` started in a namespace, with its combined stdout/stderr log."""

    ns: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        """The end of the log, for assertion messages."""
        return f"--- relay log ({self.log}) ---\n" + "\n".join(self.text().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        return lab.stop(self.proc)


def start_relay(
    ns: str,
    args: Sequence[str],
    log: Path,
    *,
    log_level: str = "debug",
    env: dict[str, str] | None = None,
) -> RelayProcess:
    """Start `python -m crosscast relay -ll LEVEL ARGS` in `ns`; return once it logs READY."""
    argv = [PYTHON, "-m", "crosscast", "relay", "-ll", log_level, *args]
    proc = lab.spawn(ns, argv, log, {"PYTHONUNBUFFERED": "1", **(env or {})})
    relay = RelayProcess(ns, argv, proc, log)
    try:
        lab.wait_for_log(log, READY, START_TIMEOUT, proc)
    except TimeoutError:
        relay.stop()
        raise
    return relay


def rule_args(*rules: str) -> list[str]:
    return [arg for text in rules for arg in ("--rule", text)]


# ---------------------------------------------------------------------------------------------
# Sockets


@dataclass
class Sockets:
    """Sockets a test opened; closed together (use as a context manager or a fixture)."""

    opened: list[socket.socket] = field(default_factory=list)

    def add(self, sock: socket.socket) -> socket.socket:
        self.opened.append(sock)
        return sock

    def udp(self, ns: str, port: int) -> socket.socket:
        """A UDP socket bound to *:port in `ns` (gets broadcasts and unicasts to that port)."""
        return self.add(lab.udp_listener(ns, port))

    def group(self, ns: str, group: str, port: int, iface: str = "eth0") -> socket.socket:
        """A UDP socket bound to group:port in `ns` and joined to `group` on `iface`."""
        return self.add(multicast_listener(ns, group, port, iface))

    def sniffer(self, ns: str, iface: str = "eth0") -> lab.Sniffer:
        sniffer = lab.sniff(ns, iface)
        self.opened.append(sniffer.sock)
        return sniffer

    def close(self) -> None:
        for sock in self.opened:
            sock.close()
        self.opened.clear()

    def __enter__(self) -> Sockets:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def multicast_listener(ns: str, group: str, port: int, iface: str = "eth0") -> socket.socket:
    """Bound to (group, port) so only that group's datagrams arrive; IGMP join on `iface`."""
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        index = socket.if_nametoindex(iface)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((group, port))
    mreqn = struct.pack("4s4si", socket.inet_aton(group), bytes(4), index)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
    s.setblocking(False)
    return s


def send_multicast(
    ns: str, group: str, port: int, payload: bytes, *, ttl: int = 1, iface: str = "eth0"
) -> None:
    """One datagram to group:port out of `iface` with TTL `ttl` (1, as senders default to)."""
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        index = socket.if_nametoindex(iface)
    with s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        s.setsockopt(
            socket.IPPROTO_IP,
            socket.IP_MULTICAST_IF,
            struct.pack("4s4si", bytes(4), bytes(4), index),
        )
        s.sendto(payload, (group, port))


def drain(sock: socket.socket) -> None:
    """Forget what a listener has queued so far."""
    while True:
        try:
            sock.recv(65536)
        except BlockingIOError:
            return


# ---------------------------------------------------------------------------------------------
# Positive and negative checks


def tagged(tag: bytes) -> Callable[[bytes, str], bool]:
    """Match datagrams whose payload starts with `tag`."""
    return lambda data, _src: data.startswith(tag)


def send_until_received(
    send: Callable[[bytes], None],
    listener: socket.socket,
    tag: bytes,
    timeout: float = ARRIVAL_TIMEOUT,
) -> tuple[bytes, str] | None:
    """Send `tag + b'#<n>'` every RESEND_INTERVAL until `listener` gets one; None on timeout.

    Re-sending covers what is not yet settled when a test starts (IGMP snooping, ARP), and the
    counter keeps each copy distinct for the relay's duplicate window.
    """
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n += 1
        send(tag + b"#%d" % n)
        got = lab.receive(listener, min(RESEND_INTERVAL, deadline - time.monotonic()), tagged(tag))
        if got is not None:
            return got
    return None


def wait_all(
    listeners: dict[str, socket.socket], tag: bytes, timeout: float = ARRIVAL_TIMEOUT
) -> dict[str, tuple[bytes, str] | None]:
    """For each named listener, the first datagram starting with `tag` within `timeout`."""
    deadline = time.monotonic() + timeout
    out: dict[str, tuple[bytes, str] | None] = {}
    for name, sock in listeners.items():
        out[name] = lab.receive(sock, max(0.0, deadline - time.monotonic()), tagged(tag))
    return out


def arrivals(
    listeners: dict[str, socket.socket], tag: bytes, window: float = QUIET_WINDOW
) -> dict[str, list[tuple[bytes, str]]]:
    """What each named listener received starting with `tag` during one shared `window`."""
    import select

    got: dict[str, list[tuple[bytes, str]]] = {name: [] for name in listeners}
    by_sock = {sock: name for name, sock in listeners.items()}
    deadline = time.monotonic() + window
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(list(by_sock), [], [], left)
        for sock in ready:
            with contextlib.suppress(BlockingIOError):
                data, addr = sock.recvfrom(65536)
                if data.startswith(tag):
                    got[by_sock[sock]].append((data, addr[0]))
    return {name: found for name, found in got.items() if found}


def stays_false(condition: Callable[[], object], window: float = QUIET_WINDOW) -> bool:
    """Poll `condition` for `window` seconds; False as soon as it is truthy (b"output" counts),
    True if it never was."""
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        if condition():
            return False
        time.sleep(0.05)
    return not condition()


def assert_stays_put(
    send: Callable[[bytes], None],
    listeners: dict[str, socket.socket],
    control: str,
    tag: bytes,
    relay: RelayProcess,
    window: float = QUIET_WINDOW,
) -> None:
    """Send `tag` once; `listeners[control]` (on the sender's own segment) must get it, and no
    other listener may within `window` (the control proves the probe was really sent)."""
    send(tag)
    got = arrivals(listeners, tag, window)
    assert control in got, f"control {control} got nothing: the probe never went out"
    leaked = {name: found for name, found in got.items() if name != control}
    assert not leaked, f"crossed where no rule allows it: {leaked}\n" + relay.tail()


# ---------------------------------------------------------------------------------------------
# Command-line tools in host namespaces (the seeds' own tests)


@dataclass
class Background:
    """A tool running in a namespace, its stdout and stderr captured to one file."""

    proc: subprocess.Popen[bytes]
    out: Path

    def output(self) -> bytes:
        try:
            return self.out.read_bytes()
        except FileNotFoundError:
            return b""

    def stop(self) -> None:
        lab.stop(self.proc, grace=1.0)


def run_in_background(ns: str, argv: Sequence[str], out: Path) -> Background:
    """Start `argv` in `ns` with output to `out`; lab.teardown(prefix) stops it too."""
    return Background(lab.spawn(ns, argv, out), out)


def udp_port_bound(ns: str, port: int) -> bool:
    """Whether some socket in `ns` is bound to UDP `port` (ss, so it works for any program)."""
    out = netns.run(["ss", "-Huln", f"sport = :{port}"], ns=ns).stdout
    return bool(out.strip())


# ---------------------------------------------------------------------------------------------
# Two nodes: a RoutedVlans per node, router namespaces joined by an underlay veth


def join_routers(router_a: str, router_b: str, ip_a: str, ip_b: str, prefixlen: int = 24) -> None:
    """A veth `ul0` between two router namespaces, addressed ip_a / ip_b: the mesh's underlay."""
    netns.run(
        ["ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", router_b],
        ns=router_a,
    )
    for ns, ip in ((router_a, ip_a), (router_b, ip_b)):
        netns.run(["ip", "addr", "add", f"{ip}/{prefixlen}", "dev", "ul0"], ns=ns)
        netns.run(["ip", "link", "set", "ul0", "up"], ns=ns)


@contextlib.contextmanager
def torn_down(*prefixes: str) -> Iterator[None]:
    """Tear the prefixes' namespaces down on the way out, failure or not."""
    try:
        yield
    finally:
        for prefix in prefixes:
            lab.teardown(prefix)
