"""Throw-away network labs in namespaces: routed VLANs, a Swarm-like overlay, a fake Swarm DNS.

Used by the integration tests and the demo. It owns topologies made of network namespaces,
veths, bridges and VXLAN devices, the processes started inside them, and small socket helpers
(listen, send, sniff). It holds no relay logic and must never touch anything outside the
namespaces it created (every name starts with a per-run prefix) or loopback.

Facts this relies on (see the project's testbed notes):
- 802.1Q devices are unavailable here, so each "VLAN" is one Linux bridge in a router namespace.
- A Swarm overlay is br-ov + a VXLAN device per node with static FDB entries for remote MACs and
  no all-zeros flood entry: unicast crosses nodes, broadcast does not; containers get permanent
  neighbour entries for remote containers, as Docker's overlay driver programs them.
- `ip netns exec` bind-mounts /etc/netns/NS/{hosts,resolv.conf}, so each namespace gets its own
  resolver (127.0.0.11 in a "container", as Docker's embedded DNS) and its own hostname mapping
  (SnowSignal excludes itself through gethostname()).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import secrets
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from crosscast.net import netns

ETH_P_ALL = 0x0003  # linux/if_ether.h
ETH_P_IP = 0x0800  # linux/if_ether.h
SOL_PACKET = 263  # linux/socket.h
PACKET_OUTGOING = 4  # linux/if_packet.h (sll_pkttype)
DOCKER_DNS = "127.0.0.11"  # Docker's embedded DNS address inside every container
VXLAN_PORT = 4789  # IANA VXLAN port
VXLAN_ID = 4096  # Docker's first overlay VNI
_DRAIN_LIMIT = 0.5  # seconds a collect() may go on past its window reading what had queued

# ---------------------------------------------------------------------------------------------
# Naming and teardown


def unique_prefix(stem: str = "cci") -> str:
    """A namespace prefix no other run on this machine is using (stem + 4 random hex digits)."""
    for _ in range(100):
        prefix = stem + secrets.token_hex(2)
        if not netns.names(prefix):
            return prefix
    raise RuntimeError(f"no free namespace prefix for {stem!r}")


@dataclass
class _Registry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    servers: list[tuple[str, Any]] = field(default_factory=list)
    sockets: list[tuple[str, socket.socket]] = field(default_factory=list)
    prefixes: set[str] = field(default_factory=set)


_REGISTRY = _Registry()


def _remember(prefix: str) -> None:
    with _REGISTRY.lock:
        first = not _REGISTRY.prefixes
        _REGISTRY.prefixes.add(prefix)
    if first:
        atexit.register(teardown_all)


def _ns_name(prefix: str, suffix: str) -> str:
    return f"{prefix}-{suffix}"


def _ours(prefix: str, ns: str) -> bool:
    return ns.startswith(prefix + "-")


def _stop_process(proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
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
        _stop_process(proc)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()
            server.server.server_close()
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


def install_signal_teardown() -> None:
    """On SIGTERM/SIGINT/SIGHUP tear everything down, then exit (for the demo; main thread only)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        teardown_all()
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, handler)


# ---------------------------------------------------------------------------------------------
# Building blocks


def _ip(*argv: str, ns: str | None = None) -> None:
    netns.run(["ip", *argv], ns=ns)


def mac_for(ip: str) -> str:
    """The lab's static MAC of an address: 02:00 + its octets (10.201.1.11 -> 02:00:0a:c9:01:0b)."""
    return "02:00:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def _add_namespace(ns: str, own_ip: str | None, nameserver: str) -> None:
    netns.add(ns)
    etc = Path("/etc/netns") / ns
    mapped = own_ip or "127.0.0.1"
    # gethostname() is the machine's name in every namespace; map it to the namespace's own
    # address, as a container's /etc/hosts does.
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n{mapped} {socket.gethostname()} {ns}\n")
    (etc / "resolv.conf").write_text(f"nameserver {nameserver}\n")


@dataclass(frozen=True)
class Segment:
    """One broadcast domain (a VLAN, or an overlay network)."""

    name: str
    network: ipaddress.IPv4Network

    @property
    def broadcast(self) -> str:
        return str(self.network.broadcast_address)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen


@dataclass(frozen=True)
class Host:
    """A namespace with one interface on one segment (a host, a relay host, a container)."""

    ns: str
    ip: str
    mac: str
    segment: Segment
    iface: str = "eth0"


def _attach_host(
    ns: str,
    segment: Segment,
    ip: str,
    bridge_ns: str,
    bridge: str,
    port_name: str,
    nameserver: str,
    gateway: str | None,
) -> Host:
    """Create `ns` with eth0 (static MAC) plugged into `bridge` of `bridge_ns` via a veth."""
    _add_namespace(ns, ip, nameserver)
    mac = mac_for(ip)
    _ip("link", "add", port_name, "type", "veth", "peer", "name", "eth0", "netns", ns, ns=bridge_ns)
    _ip("link", "set", "eth0", "address", mac, ns=ns)
    _ip("link", "set", port_name, "master", bridge, "up", ns=bridge_ns)
    _ip("addr", "add", f"{ip}/{segment.prefixlen}", "brd", "+", "dev", "eth0", ns=ns)
    _ip("link", "set", "eth0", "up", ns=ns)
    if gateway is not None:
        _ip("route", "add", "default", "via", gateway, ns=ns)
    return Host(ns=ns, ip=ip, mac=mac, segment=segment)


# ---------------------------------------------------------------------------------------------
# Topology 1: routed VLANs


@dataclass
class RoutedVlans:
    """VLANs 1..n as bridges in one router namespace that routes between them.

    VLAN n is 10.<base>.n.0/24; the router is .1 on each (`brd +`); hosts are .11, .12, ...
    and the relay host (if any) is .21. Host namespaces are `<prefix>-v<n>h<host octet>`.
    """

    prefix: str
    base: int
    router: str
    vlans: dict[int, Segment]
    hosts: dict[int, list[Host]]
    relays: dict[int, Host]

    RELAY_OCTET = 21
    FIRST_HOST_OCTET = 11

    @classmethod
    def build(
        cls,
        prefix: str,
        n_vlans: int = 2,
        hosts_per_vlan: int = 2,
        relay_hosts: bool = True,
        base: int = 201,
    ) -> RoutedVlans:
        _remember(prefix)
        router = _ns_name(prefix, "rtr")
        _add_namespace(router, None, "127.0.0.1")
        netns.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], ns=router)
        lab = cls(prefix, base, router, {}, {}, {})
        for n in range(1, n_vlans + 1):
            seg = Segment(f"vlan{n}", ipaddress.IPv4Network(f"10.{base}.{n}.0/24"))
            lab.vlans[n] = seg
            lab.hosts[n] = []
            br = f"br{n}"
            # The bridge is its own IGMP querier so snooping works without an outside router.
            _ip("link", "add", br, "type", "bridge", "mcast_snooping", "1", "mcast_querier", "1",
                ns=router)  # fmt: skip
            _ip("addr", "add", f"{lab.gateway(n)}/24", "brd", "+", "dev", br, ns=router)
            _ip("link", "set", br, "up", ns=router)
            for h in range(hosts_per_vlan):
                lab.add_host(n, cls.FIRST_HOST_OCTET + h)
            if relay_hosts:
                lab.relays[n] = lab.add_host(n, cls.RELAY_OCTET, role="r")
        return lab

    def gateway(self, vlan: int) -> str:
        return f"10.{self.base}.{vlan}.1"

    def add_host(self, vlan: int, octet: int, role: str = "h") -> Host:
        """Plug a new host namespace `<prefix>-v<vlan><role><octet>` into VLAN `vlan`."""
        seg = self.vlans[vlan]
        ip = f"10.{self.base}.{vlan}.{octet}"
        host = _attach_host(
            _ns_name(self.prefix, f"v{vlan}{role}{octet}"),
            seg,
            ip,
            self.router,
            f"br{vlan}",
            f"p{vlan}x{octet}",
            self.gateway(vlan),
            self.gateway(vlan),
        )
        if role != "r":
            self.hosts[vlan].append(host)
        return host

    def teardown(self) -> None:
        teardown(self.prefix)


# ---------------------------------------------------------------------------------------------
# Topology 2: a Swarm-like overlay over VXLAN


@dataclass
class OverlayNode:
    """One Swarm node: its namespace (ul0 on the underlay, br-ov, vx0), its relay and apps."""

    index: int
    ns: str
    underlay_ip: str
    relay: Host
    apps: list[Host]

    @property
    def containers(self) -> list[Host]:
        return [self.relay, *self.apps]


@dataclass
class SwarmOverlay:
    """Nodes on an underlay bridge (10.<base>.9.0/24), one overlay 10.<base>.10.0/24.

    Node i is `<prefix>-n<i>` at 10.<base>.9.i; its relay container `<prefix>-n<i>r` is
    10.<base>.10.<10i+1>, its apps `<prefix>-n<i>a<j>` are 10.<base>.10.<10i+1+j>. Every container
    resolves through 127.0.0.11 (see FakeSwarmDns).
    """

    prefix: str
    base: int
    underlay: str
    overlay: Segment
    nodes: list[OverlayNode]
    apps_per_node: int

    @classmethod
    def build(
        cls, prefix: str, nodes: int = 2, apps_per_node: int = 1, base: int = 202
    ) -> SwarmOverlay:
        if nodes > 9:
            raise ValueError("at most 9 nodes (addresses are 10.<base>.10.<10 i + k>)")
        _remember(prefix)
        underlay = _ns_name(prefix, "ul")
        _add_namespace(underlay, None, "127.0.0.1")
        _ip("link", "add", "br-ul", "type", "bridge", ns=underlay)
        _ip("link", "set", "br-ul", "up", ns=underlay)
        seg = Segment("overlay", ipaddress.IPv4Network(f"10.{base}.10.0/24"))
        lab = cls(prefix, base, underlay, seg, [], apps_per_node)
        for _ in range(nodes):
            lab.add_node()
        return lab

    def add_node(self) -> OverlayNode:
        """Add a node (and its containers) and program FDB/neighbour entries on every node."""
        i = len(self.nodes) + 1
        if i > 9:
            raise ValueError("at most 9 nodes")
        ns = _ns_name(self.prefix, f"n{i}")
        ul_ip = f"10.{self.base}.9.{i}"
        _add_namespace(ns, ul_ip, "127.0.0.1")
        _ip("link", "add", f"u{i}", "type", "veth", "peer", "name", "ul0", "netns", ns,
            ns=self.underlay)  # fmt: skip
        _ip("link", "set", f"u{i}", "master", "br-ul", "up", ns=self.underlay)
        _ip("addr", "add", f"{ul_ip}/24", "dev", "ul0", ns=ns)
        _ip("link", "set", "ul0", "up", ns=ns)
        _ip("link", "add", "br-ov", "type", "bridge", ns=ns)
        _ip("link", "set", "br-ov", "up", ns=ns)
        # nolearning + FDB entries only for remote MACs (no 00:00:00:00:00:00 flood entry):
        # broadcast stays on its node, unicast crosses, like Docker's overlay driver.
        _ip("link", "add", "vx0", "type", "vxlan", "id", str(VXLAN_ID), "local", ul_ip,
            "dstport", str(VXLAN_PORT), "nolearning", "dev", "ul0", ns=ns)  # fmt: skip
        _ip("link", "set", "vx0", "master", "br-ov", "up", ns=ns)

        def container(suffix: str, octet: int, port: str) -> Host:
            return _attach_host(
                _ns_name(self.prefix, f"n{i}{suffix}"),
                self.overlay,
                f"10.{self.base}.10.{octet}",
                ns,
                "br-ov",
                port,
                DOCKER_DNS,
                None,
            )

        relay = container("r", 10 * i + 1, "cr")
        apps = [
            container(f"a{j}", 10 * i + 1 + j, f"ca{j}") for j in range(1, self.apps_per_node + 1)
        ]
        node = OverlayNode(i, ns, ul_ip, relay, apps)
        for other in self.nodes:
            self._program(node, other)
            self._program(other, node)
        self.nodes.append(node)
        return node

    @staticmethod
    def _program(at: OverlayNode, remote: OverlayNode) -> None:
        """Make `remote`'s containers reachable (unicast) from `at` and its containers."""
        for c in remote.containers:
            netns.run(["bridge", "fdb", "append", c.mac, "dev", "vx0", "dst", remote.underlay_ip,
                       "self", "permanent"], ns=at.ns)  # fmt: skip
            for local in at.containers:
                _ip("neigh", "replace", c.ip, "lladdr", c.mac, "dev", "eth0", "nud", "permanent",
                    ns=local.ns)  # fmt: skip

    @property
    def relays(self) -> list[Host]:
        return [n.relay for n in self.nodes]

    def teardown(self) -> None:
        teardown(self.prefix)


# ---------------------------------------------------------------------------------------------
# Docker's embedded DNS, faked


class _TasksResolver:
    """dnslib resolver: A records from a mutable table, NXDOMAIN for anything else."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.table: dict[str, list[str]] = {}

    def resolve(self, request: Any, _handler: Any) -> Any:
        from dnslib import QTYPE, RR, A

        reply = request.reply()
        q = request.q
        name = str(q.qname).rstrip(".").lower()
        with self.lock:
            ips = list(self.table.get(name, ()))
        if name not in self.table:
            reply.header.rcode = 3  # NXDOMAIN
        elif q.qtype in (QTYPE.A, QTYPE.ANY):
            for addr in ips:
                reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(addr), ttl=0))
        return reply


class FakeSwarmDns:
    """Answers `tasks.<svc>` (any name you set) with a mutable list of A records.

    `serve_in(ns)` starts a server thread on 127.0.0.11:53 inside namespace `ns` (its socket is
    created there; the thread just reads it). One table serves every namespace, so `set()`
    changes the answer everywhere at once, as when Swarm schedules another task.
    """

    def __init__(self, records: Mapping[str, Iterable[str]] | None = None) -> None:
        self._resolver = _TasksResolver()
        for name, ips in (records or {}).items():
            self.set(name, ips)

    def set(self, name: str, ips: Iterable[str]) -> None:
        with self._resolver.lock:
            self._resolver.table[name.rstrip(".").lower()] = list(ips)

    def serve_in(self, ns: str, address: str = DOCKER_DNS, port: int = 53) -> None:
        import logging

        from dnslib.server import DNSLogger, DNSServer

        # 127.0.0.11 is not on lo by default (only 127.0.0.1/8 routes there, which suffices
        # to bind it).
        with netns.inside(ns):
            server = DNSServer(
                self._resolver,
                address=address,
                port=port,
                logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data"),
            )
        logging.getLogger(__name__).debug("fake DNS on %s:%d in %s", address, port, ns)
        # A short poll interval keeps teardown's shutdown() quick.
        threading.Thread(
            target=server.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-dns-{ns}",
            daemon=True,
        ).start()
        with _REGISTRY.lock:
            _REGISTRY.servers.append((ns, server))


# ---------------------------------------------------------------------------------------------
# Processes


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
    with _REGISTRY.lock:
        _REGISTRY.procs.append((ns, proc))
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 2.0) -> int:
    """Stop a process spawn() started (SIGTERM, then SIGKILL after `grace`); its exit status."""
    _stop_process(proc, grace)
    with _REGISTRY.lock:
        _REGISTRY.procs = [(ns, p) for ns, p in _REGISTRY.procs if p is not proc]
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


# ---------------------------------------------------------------------------------------------
# Sockets: listen, send, sniff


def _keep(ns: str, sock: socket.socket) -> socket.socket:
    """Register a long-lived socket of `ns`: teardown() closes it."""
    with _REGISTRY.lock:
        _REGISTRY.sockets.append((ns, sock))
    return sock


def udp_listener(ns: str, port: int, bind: str = "") -> socket.socket:
    """A non-blocking UDP socket bound to (bind, port) inside `ns` (receives broadcasts).

    It stays open until you close it or teardown() of its prefix closes it.
    """
    with netns.inside(ns):
        s = _keep(ns, socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.bind((bind, port))
    s.setblocking(False)
    return s


def collect(listener: socket.socket, duration: float) -> list[tuple[bytes, str]]:
    """What `listener` receives during `duration` seconds (and any already queued):
    (payload, source IP) pairs."""
    out: list[tuple[bytes, str]] = []
    deadline = time.monotonic() + duration
    while True:
        # After the deadline, still take what has already queued (duration 0: just that).
        left = deadline - time.monotonic()
        if left < -_DRAIN_LIMIT:  # a storm: the queue never empties
            break
        ready, _, _ = select.select([listener], [], [], max(0.0, left))
        if not ready:
            break
        with contextlib.suppress(BlockingIOError):
            data, addr = listener.recvfrom(65536)
            out.append((data, addr[0]))
    return out


def receive(
    listener: socket.socket,
    timeout: float,
    match: Callable[[bytes, str], bool] = lambda _d, _s: True,
) -> tuple[bytes, str] | None:
    """The first datagram that `match`es within `timeout` seconds, or None."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([listener], [], [], left)
        if not ready:
            return None
        try:
            data, addr = listener.recvfrom(65536)
        except BlockingIOError:
            continue
        if match(data, addr[0]):
            return data, addr[0]


def send_broadcast(
    ns: str, dst: str, port: int, payload: bytes, src: str | None = None, sport: int = 0
) -> None:
    """Send one UDP datagram with SO_BROADCAST from `ns` (optionally bound to `src`)."""
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if src is not None or sport:
            s.bind((src or "", sport))
        s.sendto(payload, (dst, port))


def send_udp(ns: str, dst: str, port: int, payload: bytes, src: str | None = None) -> None:
    """Send one UDP datagram from `ns` (a unicast; SO_BROADCAST is not set)."""
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        if src is not None:
            s.bind((src, 0))
        s.sendto(payload, (dst, port))


def send_frame(ns: str, iface: str, frame: bytes) -> None:
    """Write a raw Ethernet frame onto `iface` in `ns`."""
    with netns.inside(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with s:
        s.bind((iface, 0))
        s.send(frame)


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total >> 16) + (total & 0xFFFF)
    return total


def build_udp_frame(
    src_mac: str,
    dst_mac: str,
    src_ip: str,
    dst_ip: str,
    sport: int,
    dport: int,
    payload: bytes,
    ttl: int = 64,
) -> bytes:
    """An Ethernet/IPv4/UDP frame with correct checksums (independent of frames.py)."""
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    length = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, length)
    udp0 = struct.pack("!HHHH", sport, dport, length, 0) + payload
    csum = ~_sum16(pseudo + udp0) & 0xFFFF or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, length, csum) + payload
    ip0 = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0x1234, 0, ttl, 17, 0, src, dst)
    ip = ip0[:10] + struct.pack("!H", ~_sum16(ip0) & 0xFFFF) + ip0[12:]
    mac = bytes.fromhex
    return mac(dst_mac.replace(":", "")) + mac(src_mac.replace(":", "")) + b"\x08\x00" + ip + udp


@dataclass(frozen=True)
class SniffedFrame:
    """An IPv4/UDP frame seen by a Sniffer (raw bytes kept for replays)."""

    src_mac: str
    dst_mac: str
    ip_src: str
    ip_dst: str
    sport: int
    dport: int
    payload: bytes
    pkttype: int
    raw: bytes

    @property
    def outgoing(self) -> bool:
        return self.pkttype == PACKET_OUTGOING

    @property
    def ip_checksum_ok(self) -> bool:
        ihl = (self.raw[14] & 0x0F) * 4
        return _sum16(self.raw[14 : 14 + ihl]) == 0xFFFF

    @property
    def udp_checksum_ok(self) -> bool:
        """True when the UDP checksum verifies (or is 0, "none"); as a receiver checks it.

        An outgoing frame sniffed on its sender's own interface may carry only a partial
        checksum (the NIC, here veth, is trusted to complete it): judge frames as received.
        """
        ihl = (self.raw[14] & 0x0F) * 4
        udp = self.raw[14 + ihl :]
        length = struct.unpack("!H", udp[4:6])[0]
        if udp[6:8] == b"\0\0":
            return True
        if length < 8 or length > len(udp):
            return False
        pseudo = self.raw[26:34] + struct.pack("!BBH", 0, 17, length)
        return _sum16(pseudo + udp[:length]) == 0xFFFF


def parse_udp_frame(frame: bytes, pkttype: int = 0) -> SniffedFrame | None:
    """Parse Ethernet/IPv4/UDP (first fragment or whole datagram); None for anything else."""
    if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14] >> 4 != 4 or ihl < 20 or frame[23] != 17 or len(frame) < 14 + ihl + 8:
        return None
    if struct.unpack("!H", frame[20:22])[0] & 0x1FFF:  # a later fragment: no UDP header
        return None
    total = struct.unpack("!H", frame[16:18])[0]
    sport, dport = struct.unpack("!HH", frame[14 + ihl : 18 + ihl])
    return SniffedFrame(
        src_mac=frame[6:12].hex(":"),
        dst_mac=frame[0:6].hex(":"),
        ip_src=socket.inet_ntoa(frame[26:30]),
        ip_dst=socket.inet_ntoa(frame[30:34]),
        sport=sport,
        dport=dport,
        payload=frame[14 + ihl + 8 : 14 + total],
        pkttype=pkttype,
        raw=frame,
    )


class Sniffer:
    """An AF_PACKET (ETH_P_ALL) socket on one interface of one namespace, parsing UDP frames.

    Create it before the traffic it must see; frames queue in the socket until read.
    """

    def __init__(self, ns: str, iface: str = "eth0", rcvbuf: int = 4 << 20) -> None:
        with netns.inside(ns):
            raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock = _keep(ns, raw)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((iface, 0))
        self.sock.setblocking(False)
        self.ns, self.iface = ns, iface

    def drain(self) -> None:
        """Forget what has queued so far."""
        while True:
            try:
                self.sock.recvfrom(65536)
            except BlockingIOError:
                return

    def _read(self, timeout: float) -> SniffedFrame | bool | None:
        """One frame (parsed, or None when not UDP/IPv4), or False when nothing came in time."""
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return False
        try:
            data, addr = self.sock.recvfrom(65536)
        except BlockingIOError:
            return None
        return parse_udp_frame(data, addr[2])

    def collect(
        self,
        duration: float,
        match: Callable[[SniffedFrame], bool] = lambda _f: True,
    ) -> list[SniffedFrame]:
        """The UDP frames that `match` during `duration` seconds (and any already queued)."""
        out: list[SniffedFrame] = []
        deadline = time.monotonic() + duration
        while True:
            # After the deadline, still take what has already queued (duration 0: just that).
            left = deadline - time.monotonic()
            if left < -_DRAIN_LIMIT:  # a storm: the queue never empties
                break
            got = self._read(left)
            if got is False:
                break
            if isinstance(got, SniffedFrame) and match(got):
                out.append(got)
        return out

    def wait_for(
        self, match: Callable[[SniffedFrame], bool], timeout: float
    ) -> SniffedFrame | None:
        """The first UDP frame that `match`es within `timeout` seconds, or None."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got = self._read(left)
            if got is False:
                return None
            if isinstance(got, SniffedFrame) and match(got):
                return got
        return None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Sniffer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def sniff(ns: str, iface: str = "eth0") -> Sniffer:
    """A Sniffer on `iface` in `ns`."""
    return Sniffer(ns, iface)
