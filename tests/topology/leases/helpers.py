"""Fakes for the lease tests: a DHCP server built with scapy, a link, a clock, a binding."""

from __future__ import annotations

import ipaddress
from collections import deque

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from crosscast.topology.leases.binding import Binding, Target
from crosscast.topology.leases.client import Timing
from crosscast.topology.leases.service import Outcome, lease
from crosscast.topology.leases.store import LeaseStore
from crosscast.topology.model import mac_for_name

IPv4 = ipaddress.IPv4Address
SERVER = IPv4("10.0.1.3")
SERVER_MAC = "02:00:0a:00:01:03"
SQUATTER_MAC = "02:00:0a:00:01:63"
BRIDGE_MAC = "02:00:00:00:00:b0"  # the interface the client runs on
FAST = Timing(exchange_timeout=3.0, retries=2, probe_count=3, probe_window=1.0)


# --- fakes --------------------------------------------------------------------------------------


class FakeDhcpServer:
    """Answers a client's frames the way isc-dhcp-server does, built with scapy."""

    def __init__(
        self, pool: list[str], *, squatters: tuple[str, ...] = (), squatter_mac: str = SQUATTER_MAC
    ) -> None:
        self.free = [IPv4(a) for a in pool]
        self.squatter_mac = squatter_mac
        self.bound: dict[str, IPv4] = {}  # chaddr -> address
        self.squatters = {IPv4(a) for a in squatters}  # answer ARP, as a static host would
        self.silent = False
        self.nak_renewals = False
        self.seen: list[str] = []  # message types received, in order
        self.declined: list[IPv4] = []
        self.released: list[IPv4] = []

    def answer(self, frame: bytes) -> list[bytes]:
        pkt = Ether(frame)
        if ARP in pkt:
            target = IPv4(pkt[ARP].pdst)
            if target in self.squatters:
                return [
                    bytes(
                        Ether(src=self.squatter_mac, dst=pkt.src)
                        / ARP(op=2, hwsrc=self.squatter_mac, psrc=str(target), hwdst=pkt.src)
                    )
                ]
            return []
        if self.silent or DHCP not in pkt:
            return []
        opts = {o[0]: o[1] for o in pkt[DHCP].options if isinstance(o, tuple)}
        kind = {1: "discover", 3: "request", 4: "decline", 7: "release"}[opts["message-type"]]
        self.seen.append(kind)
        mac = pkt.src
        if kind == "discover":
            if mac not in self.bound and not self.free:
                return []  # pool exhausted: isc-dhcp-server logs "no free leases" and is silent
            ip = self.bound.get(mac) or self.free[0]
            return [self._reply(pkt, "offer", ip)]
        if kind == "request":
            ip = IPv4(opts["requested_addr"])
            if "server_id" not in opts and (self.nak_renewals or self.bound.get(mac) != ip):
                return [self._reply(pkt, "nak", IPv4("0.0.0.0"))]
            if ip in self.free:
                self.free.remove(ip)
            self.bound[mac] = ip
            return [self._reply(pkt, "ack", ip)]
        if kind == "decline":
            # isc-dhcp-server abandons a declined address, and hands it out again once the
            # pool has nothing else ("Reclaiming abandoned lease").
            self.declined.append(IPv4(opts["requested_addr"]))
            self.free.append(self.bound.pop(mac))
        if kind == "release":
            self.released.append(IPv4(pkt[BOOTP].ciaddr))
        return []

    def _reply(self, request: Ether, kind: str, ip: IPv4) -> bytes:
        options: list[object] = [("message-type", kind), ("server_id", str(SERVER))]
        if kind != "nak":
            options += [
                ("lease_time", 3600),
                ("subnet_mask", "255.255.255.0"),
                ("router", str(SERVER)),
                ("name_server", "8.8.8.8", "8.8.4.4"),
            ]
        else:
            options.append(("error_message", b"wrong address"))
        return bytes(
            Ether(src=SERVER_MAC, dst="ff:ff:ff:ff:ff:ff")
            / IP(src=str(SERVER), dst="255.255.255.255")
            / UDP(sport=67, dport=68)
            / BOOTP(
                op=2,
                xid=request[BOOTP].xid,
                flags=0x8000,
                yiaddr=str(ip),
                siaddr=str(SERVER),
                chaddr=request[BOOTP].chaddr,
            )
            / DHCP(options=[*options, "end"])
        )


class FakeLink:
    """Frames a send provokes are queued; an empty recv lets the fake clock run out."""

    def __init__(self, server: FakeDhcpServer) -> None:
        self.server = server
        self.mac = BRIDGE_MAC
        self.now = 1000.0
        self.queue: deque[bytes] = deque()
        self.sent: list[bytes] = []
        self.closed = False

    def clock(self) -> float:
        return self.now

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)
        self.queue.extend(self.server.answer(frame))

    def recv(self, timeout: float) -> bytes | None:
        if self.queue:
            return self.queue.popleft()
        self.now += timeout
        return None

    def close(self) -> None:
        self.closed = True


TARGET = Target("1", "br0", "ns-host")


def run_lease(
    name: str,
    store: LeaseStore,
    link: FakeLink,
    target: Target | None = TARGET,
    **kw: object,
) -> Outcome:
    notes: list[str] = kw.pop("notes", [])  # type: ignore[assignment]
    return lease(
        name,
        target,
        store,
        timing=FAST,
        now=lambda: 1_700_000_000.0,
        clock=link.clock,
        open_link=lambda _t: link,
        notify=notes.append,
        **kw,  # type: ignore[arg-type]
    )


def make_binding(name: str = "container1", **changes: object) -> Binding:
    values: dict[str, object] = {
        "name": name,
        "mac": mac_for_name(name),
        "ip": IPv4("10.0.1.100"),
        "prefix": 24,
        "gateway": SERVER,
        "vlan": "1",
        "server_id": SERVER,
        "server_mac": SERVER_MAC,
        "lease_time": 3600,
        "obtained_at": 1_700_000_000.0,
        "interface": "br0",
        "netns": None,
        "dns": (IPv4("8.8.8.8"),),
    }
    values.update(changes)
    return Binding(**values)  # type: ignore[arg-type]
