"""`crosscast lease`: a container's address from the VLAN's DHCP server, remembered in SQLite.

This module owns the lease client's I/O and bookkeeping: the AF_PACKET link on a VLAN's bridge,
the DISCOVER/OFFER/REQUEST/ACK exchange with its timers, the RFC 5227 ARP probe before an address
is used, the SQLite store of bindings, and the shell/JSON output. It must not encode or parse
packets itself (that is `crosscast.topology.dhcp`) and reads the environment only in the CLI
layer at the bottom.

Why a client of our own: a container's address is fixed at `docker create --ip ... --mac-address`
time, before the container exists, so something on the host has to hold the lease on the
container's behalf, with the container's MAC (derived from its name) as chaddr, as the seeds'
scapy script does.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ipaddress
import json
import os
import secrets
import shlex
import socket
import sqlite3
import struct
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from crosscast.net import netns
from crosscast.net.frames import mac_to_str
from crosscast.topology import dhcp
from crosscast.topology.load import TopologyErrors, load_topology
from crosscast.topology.model import mac_for_name

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

DEFAULT_DB = Path("/var/lib/crosscast/leases.sqlite3")
DB_ENV = "CROSSCAST_LEASE_DB"

IPv4 = ipaddress.IPv4Address


class LeaseError(Exception):
    """The DHCP exchange failed (no offer, no server, a NAK): exit 1 with this one line."""


class UsageError(Exception):
    """A local mistake (arguments, missing interface or namespace, no privilege): exit 2."""


# --- what we remember -------------------------------------------------------------------------


@dataclass(frozen=True)
class Binding:
    """One container's lease, as stored and as printed."""

    name: str
    mac: str
    ip: IPv4
    prefix: int
    gateway: IPv4 | None
    vlan: str
    server_id: IPv4
    server_mac: str
    lease_time: int
    obtained_at: float  # Unix time of the last ACK
    interface: str
    netns: str | None
    dns: tuple[IPv4, ...] = ()

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.ip}/{self.prefix}", strict=False)

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.lease_time


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def format_env(b: Binding) -> str:
    """Shell assignments for `eval "$(crosscast lease NAME --vlan V)"`, every value quoted."""
    values = {
        "CROSSCAST_NAME": b.name,
        "CROSSCAST_MAC": b.mac,
        "CROSSCAST_IP": str(b.ip),
        "CROSSCAST_PREFIX": str(b.prefix),
        "CROSSCAST_GATEWAY": "" if b.gateway is None else str(b.gateway),
        "CROSSCAST_VLAN": b.vlan,
    }
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def binding_to_json(b: Binding) -> dict[str, Any]:
    return {
        "name": b.name,
        "mac": b.mac,
        "ip": str(b.ip),
        "prefix": b.prefix,
        "subnet": str(b.subnet),
        "gateway": None if b.gateway is None else str(b.gateway),
        "vlan": b.vlan,
        "dns": [str(a) for a in b.dns],
        "server_id": str(b.server_id),
        "lease_time": b.lease_time,
        "obtained_at": _iso(b.obtained_at),
        "expires_at": _iso(b.expires_at),
        "interface": b.interface,
        "netns": b.netns,
    }


def format_json(b: Binding) -> str:
    return json.dumps(binding_to_json(b), indent=2) + "\n"


def format_table(bindings: Sequence[Binding]) -> str:
    header = ("NAME", "VLAN", "ADDRESS", "MAC", "GATEWAY", "SERVER", "EXPIRES")
    rows = [
        (
            b.name,
            b.vlan,
            f"{b.ip}/{b.prefix}",
            b.mac,
            "-" if b.gateway is None else str(b.gateway),
            str(b.server_id),
            _iso(b.expires_at),
        )
        for b in bindings
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in [header, *rows]
    )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    mac TEXT NOT NULL,
    ip TEXT NOT NULL,
    prefix INTEGER NOT NULL,
    gateway TEXT,
    vlan TEXT NOT NULL,
    server_id TEXT NOT NULL,
    server_mac TEXT NOT NULL,
    lease_time INTEGER NOT NULL,
    obtained_at REAL NOT NULL,
    interface TEXT NOT NULL,
    netns TEXT,
    dns TEXT NOT NULL DEFAULT ''
)
"""
_SELECT = (
    "SELECT name, mac, ip, prefix, gateway, vlan, server_id, server_mac, lease_time, obtained_at,"
    " interface, netns, dns FROM leases"
)
_INSERT = (
    "INSERT OR REPLACE INTO leases (name, mac, ip, prefix, gateway, vlan, server_id, server_mac,"
    " lease_time, obtained_at, interface, netns, dns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


class LeaseStore:
    """Bindings by container name in one SQLite file (on disk, so they outlive a reboot)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10)
        except (OSError, sqlite3.Error) as exc:
            raise UsageError(f"cannot open the lease database {self.path}: {exc}") from None
        try:
            with conn:  # one transaction: committed on success, rolled back on error
                conn.execute(_SCHEMA)
                yield conn
        finally:
            conn.close()

    def get(self, name: str) -> Binding | None:
        with self._connect() as conn:
            row = conn.execute(_SELECT + " WHERE name = ?", (name,)).fetchone()
        return None if row is None else _from_row(row)

    def all(self) -> list[Binding]:
        with self._connect() as conn:
            rows = conn.execute(_SELECT + " ORDER BY name").fetchall()
        return [_from_row(r) for r in rows]

    def put(self, b: Binding) -> None:
        with self._connect() as conn:
            conn.execute(
                _INSERT,
                (
                    b.name,
                    b.mac,
                    str(b.ip),
                    b.prefix,
                    None if b.gateway is None else str(b.gateway),
                    b.vlan,
                    str(b.server_id),
                    b.server_mac,
                    b.lease_time,
                    b.obtained_at,
                    b.interface,
                    b.netns,
                    " ".join(str(a) for a in b.dns),
                ),
            )

    def delete(self, name: str) -> bool:
        with self._connect() as conn:
            return conn.execute("DELETE FROM leases WHERE name = ?", (name,)).rowcount > 0


def _from_row(row: tuple[Any, ...]) -> Binding:
    (name, mac, ip, prefix, gateway, vlan, server_id, server_mac, lease_time, obtained_at) = row[
        :10
    ]
    interface, ns, dns = row[10:]
    return Binding(
        name=name,
        mac=mac,
        ip=IPv4(ip),
        prefix=int(prefix),
        gateway=None if gateway is None else IPv4(gateway),
        vlan=vlan,
        server_id=IPv4(server_id),
        server_mac=server_mac,
        lease_time=int(lease_time),
        obtained_at=float(obtained_at),
        interface=interface,
        netns=ns,
        dns=tuple(IPv4(a) for a in dns.split()),
    )


# --- the link ---------------------------------------------------------------------------------


class Link(Protocol):
    """Where the client's frames go and come from: an AF_PACKET socket, or a fake in tests."""

    mac: str  # the interface's own MAC: ARP probes are sent from it

    def send(self, frame: bytes) -> None: ...

    def recv(self, timeout: float) -> bytes | None:
        """The next frame within `timeout` seconds, or None."""
        ...


ETH_P_ALL = 0x0003  # linux/if_ether.h
SO_ATTACH_FILTER = 26  # asm-generic/socket.h
SOL_PACKET = 263  # linux/socket.h
PACKET_OUTGOING = 4  # linux/if_packet.h: sll_pkttype of frames this host sent
PACKET_IGNORE_OUTGOING = 23

# Classic BPF: keep ARP, and unfragmented IPv4 UDP to port 68; drop the rest in the kernel.
# Same shape as `tcpdump -dd 'arp or (ip and udp dst port 68)'`; (code, jt, jf, k).
_FILTER = (
    (0x28, 0, 0, 12),  # ldh [12]                 ethertype
    (0x15, 8, 0, dhcp.ETH_P_ARP),  # jeq #0x806   -> accept
    (0x15, 0, 8, dhcp.ETH_P_IP),  # jeq #0x800    else drop
    (0x30, 0, 0, 23),  # ldb [23]                 IP protocol
    (0x15, 0, 6, dhcp.IPPROTO_UDP),  # jeq #17     else drop
    (0x28, 0, 0, 20),  # ldh [20]                 flags + fragment offset
    (0x45, 4, 0, 0x1FFF),  # jset #0x1fff         a fragment -> drop
    (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf)        IP header length
    (0x48, 0, 0, 16),  # ldh [x+16]               UDP destination port
    (0x15, 0, 1, dhcp.CLIENT_PORT),  # jeq #68     else drop
    (0x06, 0, 0, 0x40000),  # accept: ret #262144
    (0x06, 0, 0, 0),  # drop: ret #0
)


class PacketLink:
    """An AF_PACKET socket on one interface (a VLAN's bridge), filtered in the kernel.

    DHCP replies come back broadcast (we set the BOOTP broadcast flag) and ARP replies to our
    probes come to the interface's own MAC (`self.mac`), so no promiscuous mode is needed.
    """

    def __init__(self, interface: str, ns: str | None = None) -> None:
        self.interface = interface
        try:
            with netns.inside(ns):
                # Protocol 0: the socket is hooked into the receive path only by bind(), so
                # attaching the filter first leaves no window in which unfiltered frames queue
                # (the race pyroute2 closes with its drop-all / drain / real-filter dance).
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                try:
                    program = b"".join(struct.pack("HBBI", *ins) for ins in _FILTER)
                    buf = ctypes.create_string_buffer(program)
                    fprog = struct.pack("HL", len(_FILTER), ctypes.addressof(buf))
                    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
                    with contextlib.suppress(OSError):  # kernels before 4.20 lack it
                        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                    sock.bind((interface, ETH_P_ALL))
                except BaseException:
                    sock.close()
                    raise
        except FileNotFoundError:
            raise UsageError(f"network namespace {ns} does not exist") from None
        except PermissionError:
            raise UsageError("a raw (AF_PACKET) socket needs root or CAP_NET_RAW") from None
        except OSError as exc:
            where = f" in namespace {ns}" if ns else ""
            raise UsageError(f"cannot open interface {interface}{where}: {exc.strerror}") from None
        self._sock = sock
        # A bound packet socket's own address is the interface's (sockaddr_ll.sll_addr).
        self.mac = mac_to_str(sock.getsockname()[4][:6])

    def send(self, frame: bytes) -> None:
        self._sock.send(frame)

    def recv(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                frame, address = self._sock.recvfrom(65535)
            except TimeoutError:
                return None
            if address[2] != PACKET_OUTGOING:  # our own frames, when IGNORE_OUTGOING is absent
                return frame

    def close(self) -> None:
        self._sock.close()


# --- the client ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    exchange_timeout: float = 3.0  # per DISCOVER or REQUEST
    retries: int = 2  # retransmissions after the first try
    probe_count: int = 3  # ARP probes (RFC 5227 PROBE_NUM)
    probe_window: float = 1.0  # total time the probes take and we listen for conflicts
    max_declines: int = 3  # offers found in use (and declined) before we give up


@dataclass(frozen=True)
class Acked:
    """What a DHCPACK granted."""

    ip: IPv4
    prefix: int
    gateway: IPv4 | None
    dns: tuple[IPv4, ...]
    server_id: IPv4
    server_mac: str
    lease_time: int


class DhcpClient:
    """The client side of DORA for one MAC over one Link; time comes from `clock`."""

    def __init__(
        self,
        link: Link,
        mac: str,
        hostname: str,
        *,
        timing: Timing = Timing(),
        clock: Callable[[], float] = time.monotonic,
        new_xid: Callable[[], int] = lambda: secrets.randbits(32),
        notify: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.link = link
        self.mac = mac
        self.hostname = hostname
        self.timing = timing
        self.clock = clock
        self.new_xid = new_xid
        self.notify = notify
        self.dropped = 0  # frames that were not an answer to us

    def _exchange(
        self, message: bytes, xid: int, wanted: tuple[dhcp.MessageType, ...]
    ) -> tuple[dhcp.Reply, str] | None:
        """Send `message` (retransmitting) until a reply of a wanted type for `xid` comes."""
        frame = dhcp.client_frame(message, self.mac)
        for _attempt in range(1 + self.timing.retries):
            self.link.send(frame)
            deadline = self.clock() + self.timing.exchange_timeout
            while (left := deadline - self.clock()) > 0:
                raw = self.link.recv(left)
                if raw is None:
                    break
                try:
                    reply, server_mac = dhcp.parse_reply_frame(raw)
                except ValueError:
                    self.dropped += 1
                    continue
                if reply.xid != xid or reply.chaddr != self.mac or reply.message_type not in wanted:
                    self.dropped += 1
                    continue
                return reply, server_mac
        return None

    def _acked(self, reply: dhcp.Reply, server_mac: str) -> Acked:
        if reply.prefix_length is None:
            raise LeaseError(f"the DHCPACK for {reply.yiaddr} has no subnet mask")
        if reply.server_id is None:
            raise LeaseError(f"the DHCPACK for {reply.yiaddr} has no server identifier")
        return Acked(
            ip=reply.yiaddr,
            prefix=reply.prefix_length,
            gateway=reply.router,
            dns=reply.dns,
            server_id=reply.server_id,
            server_mac=server_mac,
            lease_time=reply.lease_time if reply.lease_time is not None else 0,
        )

    def in_use(self, ip: IPv4) -> str | None:
        """ARP-probe `ip` (RFC 5227, sender IP 0.0.0.0): the MAC of whoever holds it, or None.

        The probe goes out from the interface's own MAC, not the container's: in a namespace
        topology the container's eth0 already sits on the bridge with the container's MAC, so
        the bridge would forward replies addressed to that MAC to it, never up to us. A reply
        from the container's MAC is the container holding its own address: no conflict.
        """
        probe = dhcp.build_arp_probe(self.link.mac, ip)
        start = self.clock()
        step = self.timing.probe_window / self.timing.probe_count
        for i in range(self.timing.probe_count):
            self.link.send(probe)
            until = start + step * (i + 1)
            while (left := until - self.clock()) > 0:
                raw = self.link.recv(left)
                if raw is None:
                    break
                try:
                    arp = dhcp.parse_arp_frame(raw)
                except ValueError:
                    continue
                if dhcp.is_conflict(arp, ip, {self.mac, self.link.mac}):
                    return arp.sender_mac
        return None

    def obtain(self) -> Acked:
        """DISCOVER, OFFER, REQUEST, ACK, then make sure nobody else answers for the address."""
        wait = self.timing.exchange_timeout * (1 + self.timing.retries)
        for _round in range(self.timing.max_declines):
            xid = self.new_xid()
            got = self._exchange(
                dhcp.build_discover(xid, self.mac, hostname=self.hostname),
                xid,
                (dhcp.MessageType.OFFER,),
            )
            if got is None:
                raise LeaseError(
                    f"no DHCPOFFER within {wait:g} s (no DHCP server on this VLAN,"
                    " or its pool is exhausted)"
                )
            offer, _ = got
            if offer.server_id is None:
                raise LeaseError(f"the DHCPOFFER of {offer.yiaddr} has no server identifier")
            got = self._exchange(
                dhcp.build_request(
                    xid, self.mac, offer.yiaddr, server_id=offer.server_id, hostname=self.hostname
                ),
                xid,
                (dhcp.MessageType.ACK, dhcp.MessageType.NAK),
            )
            if got is None:
                raise LeaseError(f"no DHCPACK for offered {offer.yiaddr} within {wait:g} s")
            reply, server_mac = got
            if reply.message_type is dhcp.MessageType.NAK:
                why = f": {reply.message}" if reply.message else ""
                raise LeaseError(f"the server refused offered {offer.yiaddr} (DHCPNAK{why})")
            acked = self._acked(reply, server_mac)
            # RFC 2131 section 4.4.1: check the address before using it; DECLINE if taken.
            holder = self.in_use(acked.ip)
            if holder is None:
                return acked
            self.notify(f"{acked.ip} is already in use by {holder}: declined, asking again")
            self._send_decline(acked)
        raise LeaseError(
            f"every address offered was in use ({self.timing.max_declines} declined);"
            " the pool overlaps hosts with static addresses"
        )

    def _send_decline(self, acked: Acked) -> None:
        message = dhcp.build_decline(self.new_xid(), self.mac, acked.ip, acked.server_id)
        self.link.send(dhcp.client_frame(message, self.mac))

    def renew(self, ip: IPv4) -> Acked | None:
        """INIT-REBOOT REQUEST for `ip`: its ACK, None when no server answered.

        A NAK raises LeaseError: the address is no longer ours to use.
        """
        xid = self.new_xid()
        got = self._exchange(
            dhcp.build_request(xid, self.mac, ip, hostname=self.hostname),
            xid,
            (dhcp.MessageType.ACK, dhcp.MessageType.NAK),
        )
        if got is None:
            return None
        reply, server_mac = got
        if reply.message_type is dhcp.MessageType.NAK:
            why = f": {reply.message}" if reply.message else ""
            raise LeaseError(f"the server refused to renew {ip} (DHCPNAK{why})")
        if reply.yiaddr != ip:
            raise LeaseError(f"the server acknowledged {reply.yiaddr} instead of {ip}")
        return self._acked(reply, server_mac)

    def release(self, ip: IPv4, server_id: IPv4, server_mac: str) -> None:
        """DHCPRELEASE, unicast to the server as RFC 2131 section 4.4.6 asks; it has no reply."""
        message = dhcp.build_release(self.new_xid(), self.mac, ip, server_id)
        self.link.send(
            dhcp.client_frame(message, self.mac, src_ip=ip, dst_ip=server_id, dst_mac=server_mac)
        )


# --- one request, settled at the edge ---------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a lease is asked for: a VLAN label and the interface (in a namespace) reaching it."""

    vlan: str
    interface: str
    netns: str | None


@dataclass(frozen=True)
class Outcome:
    binding: Binding
    action: str  # "leased", "renewed", "kept"


def lease(
    name: str,
    target: Target | None,
    store: LeaseStore,
    *,
    rebind: bool = False,
    timing: Timing = Timing(),
    now: Callable[[], float] = time.time,
    clock: Callable[[], float] = time.monotonic,
    open_link: Callable[[Target], Link] | None = None,
    notify: Callable[[str], None] = lambda _line: None,
) -> Outcome:
    """The stored binding for `name`, renewed with the server; a new lease if there is none."""
    opener = open_link or _open_packet_link
    stored = store.get(name)
    if stored is not None and target is not None and target.vlan != stored.vlan and not rebind:
        raise UsageError(
            f"{name} holds {stored.ip} on VLAN {stored.vlan}, not VLAN {target.vlan}:"
            " release it first or pass --rebind"
        )
    if target is None:
        if stored is None:
            raise UsageError(f"no lease recorded for {name}: say which VLAN (--vlan)")
        target = Target(stored.vlan, stored.interface, stored.netns)
    mac = mac_for_name(name)
    link = opener(target)
    try:
        client = DhcpClient(link, mac, name, timing=timing, clock=clock, notify=notify)
        if stored is not None and stored.vlan == target.vlan:
            try:
                acked = client.renew(stored.ip)
            except LeaseError:
                if not rebind:
                    raise
                notify(f"{stored.ip} can no longer be renewed for {name}: asking for a new lease")
            else:
                if acked is None:
                    notify(
                        f"no DHCP server answered on {target.interface}: keeping the stored"
                        f" binding {stored.ip} for {name} (expires {_iso(stored.expires_at)})"
                    )
                    return Outcome(stored, "kept")
                binding = _binding(name, mac, target, acked, now())
                store.put(binding)
                return Outcome(binding, "renewed")
        acked = client.obtain()
    finally:
        close = getattr(link, "close", None)
        if close is not None:
            close()
    binding = _binding(name, mac, target, acked, now())
    store.put(binding)
    return Outcome(binding, "leased")


def release(
    name: str,
    store: LeaseStore,
    *,
    target: Target | None = None,
    open_link: Callable[[Target], Link] | None = None,
    notify: Callable[[str], None] = lambda _line: None,
) -> Binding:
    """Give `name`'s address back (DHCPRELEASE) and forget the binding."""
    stored = store.get(name)
    if stored is None:
        raise LeaseError(f"no lease recorded for {name}")
    where = target or Target(stored.vlan, stored.interface, stored.netns)
    try:
        link = (open_link or _open_packet_link)(where)
    except UsageError as exc:
        notify(f"DHCPRELEASE not sent ({exc}); the server will let the lease expire")
    else:
        try:
            DhcpClient(link, stored.mac, name).release(
                stored.ip, stored.server_id, stored.server_mac
            )
        finally:
            close = getattr(link, "close", None)
            if close is not None:
                close()
    store.delete(name)
    return stored


def _binding(name: str, mac: str, target: Target, acked: Acked, at: float) -> Binding:
    return Binding(
        name=name,
        mac=mac,
        ip=acked.ip,
        prefix=acked.prefix,
        gateway=acked.gateway,
        vlan=target.vlan,
        server_id=acked.server_id,
        server_mac=acked.server_mac,
        lease_time=acked.lease_time,
        obtained_at=at,
        interface=target.interface,
        netns=target.netns,
        dns=acked.dns,
    )


def _open_packet_link(target: Target) -> Link:
    if target.netns is not None and not netns.exists(target.netns):
        raise UsageError(f"network namespace {target.netns} does not exist")
    return PacketLink(target.interface, target.netns)


# --- the command line -------------------------------------------------------------------------


def register_cli(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `crosscast lease` to the top-level subcommands."""
    p = sub.add_parser(
        "lease",
        help="get (or renew) a container's address from its VLAN's DHCP server",
        description="Obtain an address for container NAME from the DHCP server on a VLAN, with a"
        " MAC derived from NAME, and remember it: later calls renew and return the same binding.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="the container's name")
    p.add_argument("--vlan", metavar="V", help="VLAN id or name (with --topology), or a label")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--interface", metavar="IFACE", help="the VLAN's bridge interface")
    where.add_argument("--topology", metavar="FILE", help="find the VLAN's bridge in this file")
    p.add_argument("--netns", metavar="NS", help="run the client inside this network namespace")
    p.add_argument(
        "--netns-prefix",
        metavar="P",
        help="the prefix `topology apply --netns-prefix` used: without --netns, the client"
        " runs in P+'host'",
    )
    p.add_argument("--db", metavar="PATH", help=f"lease database (${DB_ENV}, default {DEFAULT_DB})")
    p.add_argument("--format", choices=("env", "json", "table"), help="output format")
    p.add_argument("--rebind", action="store_true", help="on a DHCPNAK, get a fresh lease")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per exchange (3)")
    p.add_argument("--retries", type=int, default=2, help="retransmissions per exchange (2)")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="list the recorded leases")
    action.add_argument("--release", metavar="NAME", help="release NAME's lease and forget it")
    p.set_defaults(func=run_cli)


def _say(line: str) -> None:
    print(f"crosscast lease: {line}", file=sys.stderr)


def _target(args: argparse.Namespace) -> Target | None:
    """The VLAN and interface from the arguments; None if they name neither."""
    ns = args.netns
    if ns is None and args.netns_prefix is not None:
        ns = f"{args.netns_prefix}host"  # where `topology apply --netns-prefix` puts the bridges
    if args.topology is not None:
        if args.vlan is None:
            raise UsageError("--topology needs --vlan")
        vlan_id, bridge = _bridge_for_vlan(Path(args.topology), args.vlan)
        return Target(vlan_id, bridge, ns)
    if args.interface is not None:
        if args.vlan is None:
            raise UsageError("--interface needs --vlan (the VLAN the interface is on)")
        return Target(args.vlan, args.interface, ns)
    if args.vlan is not None:
        raise UsageError("--vlan needs --interface IFACE or --topology FILE")
    return None


def _bridge_for_vlan(path: Path, vlan: str) -> tuple[str, str]:
    """(VLAN id, bridge) for a VLAN given by id or name in a topology file."""
    try:
        topology = load_topology(path)
    except TopologyErrors as exc:
        more = f" (and {len(exc.problems) - 1} more problems)" if len(exc.problems) > 1 else ""
        raise UsageError(f"{exc.problems[0]}{more}") from None
    for v in topology.vlans:
        if vlan in (str(v.id), v.name):
            return str(v.id), v.bridge
    known = ", ".join(f"{v.id} ({v.name})" for v in topology.vlans)
    raise UsageError(f"{path}: no VLAN {vlan!r}; it has {known}")


def run_cli(args: argparse.Namespace) -> int:
    db = Path(args.db or os.environ.get(DB_ENV) or DEFAULT_DB)
    store = LeaseStore(db)
    timing = Timing(exchange_timeout=args.timeout, retries=args.retries)
    try:
        if args.timeout <= 0 or args.retries < 0:
            raise UsageError("--timeout must be positive and --retries not negative")
        if args.list:
            bindings = store.all()
            if args.format == "json":
                print(json.dumps([binding_to_json(b) for b in bindings], indent=2))
            else:
                sys.stdout.write(format_table(bindings))
            return EXIT_OK
        if args.release is not None:
            gone = release(args.release, store, target=_target(args), notify=_say)
            _say(f"released {gone.ip} of {gone.name} (VLAN {gone.vlan})")
            return EXIT_OK
        if args.name is None:
            raise UsageError("give a container NAME, --list, or --release NAME")
        started = time.monotonic()
        outcome = lease(
            args.name, _target(args), store, rebind=args.rebind, timing=timing, notify=_say
        )
    except UsageError as exc:
        _say(str(exc))
        return EXIT_USAGE
    except LeaseError as exc:
        _say(f"{args.name or args.release}: {exc}")
        return EXIT_FAILED
    b = outcome.binding
    took = time.monotonic() - started
    _say(f"{outcome.action} {b.ip}/{b.prefix} for {b.name} on VLAN {b.vlan} in {took:.2f} s")
    if args.format == "json":
        sys.stdout.write(format_json(b))
    elif args.format == "table":
        sys.stdout.write(format_table([b]))
    else:
        sys.stdout.write(format_env(b))
    return EXIT_OK
