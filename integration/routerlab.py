"""Router-mode test helpers: the checks the integration/test_router_*.py modules share.

The router namespace's firewall, its bridge MACs, relay processes and multicast probes are the
lab's (crosscast.lab, shared with the demo) and are re-exported here under the names these tests
use. What is left is test-only: a socket set closed together, the stays-put assertion, tools
run in the background, and two-node wiring for router + mesh. It touches only namespaces the lab
built for the calling test module.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crosscast import lab
from crosscast.net import netns

READY = lab.READY
START_TIMEOUT = lab.relays.START_TIMEOUT
ARRIVAL_TIMEOUT = lab.probes.ARRIVAL  # seconds a datagram that should cross may take
RESEND_INTERVAL = lab.probes.RESEND  # seconds between re-sends while waiting for an arrival
QUIET_WINDOW = 1.0  # seconds a negative check listens for something that must not arrive

# What router mode needs from the lab, under the names these tests have always used.
isolate_vlans = lab.isolate_vlans
link_mac = lab.link_mac
bridge_macs = lab.bridge_macs
RelayProcess = lab.RelayProcess
start_relay = lab.start_relay
rule_args = lab.rule_args
multicast_listener = lab.multicast_listener
send_multicast = lab.send_multicast
drain = lab.drain
tagged = lab.tagged
send_until_received = lab.send_until_received


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


# ---------------------------------------------------------------------------------------------
# Positive and negative checks


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
    return lab.arrivals(listeners, tag, window)


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
