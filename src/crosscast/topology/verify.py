"""`crosscast topology verify`: the seed architecture's connectivity checks on a live topology.

What it checks, all derived from the topology (who is on which VLAN), never hard-coded:

- the reachability matrix of the seeds' ping table: every container and device reaches the
  others on its VLAN, the router's address on its VLAN and the uplink ("the Internet") through
  the router; the router reaches every one of them; nobody reaches another VLAN's hosts or the
  router's address on another VLAN (unless a firewall exception forwards ICMP there);
- UDP broadcast on each VLAN (the seeds' `nc -ulp 5000` / `nc -u -b` test: "foo" from the
  router's address to the VLAN's broadcast address), and multicast to 233.54.12.234:22001 (the
  socat test: a member joined on eth0, another member sending);
- that broadcast to port 5000 and multicast to the group sent on one VLAN do not arrive on
  another, except for the crossings passed in (`expected_crossings`, empty by default; with the
  router-mode relay running, `crossings_of_relay_rules` gives the ones its rules create), and
  that broadcast to a port no relay rule names and multicast to a group none names never cross
  (each also checked to arrive on its own VLAN, so that "not received" means something).

The derivation (`layout_of`, `expected_pings`, `expected_traffic`) is pure; the I/O below it only
resolves addresses, runs `ping` in parallel threads and moves datagrams through sockets created
inside the namespaces. Only namespace topologies (`apply --netns-prefix P`) are supported: P+name
is the namespace of host `name`, P+"host" holds the uplink bridge whose address is "the Internet".
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import selectors
import socket
import struct
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from crosscast.net import netns
from crosscast.relay.rules import Rule
from crosscast.topology.model import Topology

IPv4 = ipaddress.IPv4Address

BROADCAST_PORT = 5000  # the seeds' `nc -ulp 5000`
GROUP = IPv4("233.54.12.234")  # the seeds' socat test
GROUP_PORT = 22001
QUIET_PORT = BROADCAST_PORT + 1  # the first candidate for "a port no relay rule names"
QUIET_GROUP = IPv4("233.54.12.235")  # the first candidate for "a group no relay rule names"
LIMITED_BROADCAST = IPv4("255.255.255.255")
HOST_NS = "host"  # apply's namespace for the bridges and the uplink gateway
UPLINK_BRIDGE = "brup"
MEMBER_IFACE = "eth0"  # a container's or device's interface in its namespace

OK = "OK"
NO = "No connection"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

SO_BINDTODEVICE = 25  # asm-generic/socket.h (socket.SO_BINDTODEVICE is missing on some builds)


# --- the layout: who is on which VLAN ----------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    vlan_id: int
    name: str
    subnet: ipaddress.IPv4Network
    router_address: IPv4
    members: tuple[str, ...]  # containers (by name), then devices (by name)

    @property
    def label(self) -> str:
        return f"VLAN {self.vlan_id}"

    @property
    def broadcast(self) -> IPv4:
        return self.subnet.broadcast_address


@dataclass(frozen=True)
class Forward:
    """A firewall exception that lets pings through: source VLAN -> destination VLAN."""

    source: str  # VLAN name
    destination: str
    source_net: ipaddress.IPv4Network | None = None
    destination_net: ipaddress.IPv4Network | None = None


@dataclass(frozen=True)
class Layout:
    router: str
    segments: tuple[Segment, ...]
    uplink_gateway: IPv4
    forwards: tuple[Forward, ...] = ()
    quiet_port: int = QUIET_PORT  # a broadcast port no relay rule names
    quiet_group: IPv4 = QUIET_GROUP  # a multicast group no relay rule names

    def segment_of(self, member: str) -> Segment:
        for s in self.segments:
            if member in s.members:
                return s
        raise KeyError(member)


def layout_of(topology: Topology) -> Layout:
    """The parts of a topology the checks need."""
    segments = []
    for v in topology.vlans:
        members = [c.name for c in topology.containers if c.vlan == v.name]
        members += [d.name for d in topology.devices if d.vlan == v.name]
        segments.append(Segment(v.id, v.name, v.subnet, v.router_address, tuple(members)))
    forwards = tuple(
        Forward(f.source, f.destination, f.source_net, f.destination_net)
        for f in topology.firewall
        # Only an exception for all protocols or ICMP (no ports) lets an echo request through.
        if f.protocol in ("any", "icmp") and not f.ports
    )
    rules = topology.relay_rules
    ports = [p for r in rules for p in _rule_ports(r)]
    groups = {IPv4(g) for r in rules for g in r.groups}
    quiet_port = QUIET_PORT
    while quiet_port == GROUP_PORT or any(lo <= quiet_port <= hi for lo, hi in ports):
        quiet_port += 1
    quiet_group = QUIET_GROUP
    while quiet_group in groups:
        quiet_group += 1
    return Layout(
        topology.router.name,
        tuple(segments),
        topology.uplink.gateway,
        forwards,
        quiet_port,
        quiet_group,
    )


def _rule_ports(rule: Rule) -> list[tuple[int, int]]:
    """The port ranges a relay rule matches (a group's own port is among them: the relay
    matches every port of a rule on every group of it)."""
    return [(r.first, r.last) for r in rule.ports]


def _networks(nets: Iterable[tuple[int, int]]) -> tuple[ipaddress.IPv4Network, ...]:
    return tuple(ipaddress.IPv4Network(net) for net in nets)


# --- the reachability matrix -------------------------------------------------------------------


@dataclass(frozen=True)
class Ping:
    source: str  # a host name (its namespace is prefix + source)
    target: str  # what the table shows: a host name, "Router (a.b.c.d)", "Internet (a.b.c.d)"
    target_host: str | None  # the host whose eth0 address is pinged, or
    target_address: IPv4 | None  # a fixed address (the router's, the uplink gateway)
    expected: bool
    why: str


def _forwarded(
    layout: Layout,
    source: Segment,
    destination: Segment,
    src: IPv4 | None,
    dst: IPv4 | None,
) -> bool:
    for f in layout.forwards:
        if (f.source, f.destination) != (source.name, destination.name):
            continue
        if f.source_net is not None and (src is None or src not in f.source_net):
            continue
        if f.destination_net is not None and (dst is None or dst not in f.destination_net):
            continue
        return True
    return False


def expected_pings(layout: Layout, addresses: Mapping[str, IPv4] | None = None) -> list[Ping]:
    """The seeds' ping table for any layout, in the seeds' order.

    `addresses` (host -> address) is needed only for firewall exceptions limited to networks.
    """
    addr = addresses or {}
    rows: list[Ping] = []
    router_label = f"{layout.router} ({{}})"
    internet = f"Internet ({layout.uplink_gateway})"
    for seg in layout.segments:
        own_router = router_label.format(seg.router_address)
        for s in seg.members:
            rows += [Ping(s, t, t, None, True, seg.label) for t in seg.members if t != s]
        rows += [
            Ping(s, own_router, None, seg.router_address, True, seg.label) for s in seg.members
        ]
        via = f"{seg.label} to Internet via {layout.router}"
        rows += [Ping(s, internet, None, layout.uplink_gateway, True, via) for s in seg.members]
        rows += [Ping(layout.router, t, t, None, True, seg.label) for t in seg.members]
        for s in seg.members:
            for other in layout.segments:
                if other is seg:
                    continue
                why = f"{seg.label} to {other.label}"
                for t in other.members:
                    ok = _forwarded(layout, seg, other, addr.get(s), addr.get(t))
                    rows.append(Ping(s, t, t, None, ok, why + (" (firewall exception)" * ok)))
                # The router's address on another VLAN is the router's INPUT, not FORWARD: no
                # exception opens it.
                other_router = router_label.format(other.router_address)
                rows.append(Ping(s, other_router, None, other.router_address, False, why))
    return rows


# --- broadcast and multicast ---------------------------------------------------------------------


@dataclass(frozen=True)
class Crossing:
    """Traffic the configuration lets cross from one VLAN to another (a relay rule)."""

    kind: str  # "broadcast" (to port 5000) or "multicast" (to 233.54.12.234:22001)
    source: str  # VLAN name
    destination: str
    allow: tuple[ipaddress.IPv4Network, ...] = ()  # senders it admits (none: any)
    deny: tuple[ipaddress.IPv4Network, ...] = ()  # senders it refuses (deny wins)
    rule: str = field(default="", compare=False)  # the relay rule's name, for the table

    def admits(self, sender: IPv4 | None) -> bool:
        if not self.allow and not self.deny:
            return True
        if sender is None or any(sender in net for net in self.deny):
            return False
        return not self.allow or any(sender in net for net in self.allow)


@dataclass(frozen=True)
class Datagram:
    test: str  # "broadcast" or "multicast"
    source: str  # a host name; the router when sent from its address on the VLAN
    source_address: IPv4 | None  # the router's address, or None: the source host's eth0 address
    destination: IPv4
    port: int
    receiver: str  # the member listening
    expected: bool
    why: str
    arrives_at: IPv4 | None = None  # where it arrives when not `destination` (a relayed one)

    @property
    def target(self) -> str:
        return f"{self.receiver} ({self.arrives_at or self.destination}:{self.port})"


def _kind(destination: IPv4) -> str:
    return "multicast" if destination.is_multicast else "broadcast"


def expected_traffic(
    layout: Layout,
    expected_crossings: Iterable[Crossing] = (),
    addresses: Mapping[str, IPv4] | None = None,
) -> list[Datagram]:
    """Per VLAN: the seeds' broadcast and multicast tests, and the same traffic sent from a
    member, which must reach its own VLAN's listener and no other VLAN's unless it crosses;
    likewise broadcast to a port and multicast to a group that no relay rule names, which must
    cross nowhere.

    `addresses` (host -> address) is needed only for crossings limited to some senders.
    """
    crossings = list(expected_crossings)
    addr = addresses or {}
    rows: list[Datagram] = []
    listeners = {s.name: s.members[0] for s in layout.segments if s.members}
    for seg in layout.segments:
        if not seg.members:
            continue
        listener = seg.members[0]
        # The seeds' multicast test sends from another member; a VLAN with one member uses the
        # router's address there instead, and sends the isolation traffic from that member.
        other = seg.members[1] if len(seg.members) > 1 else None
        sender = other or listener
        # What the router sends in place of a second member.
        own_source, own_address = (other, None) if other else (layout.router, seg.router_address)
        label = seg.label
        rows.append(
            Datagram(
                "broadcast", layout.router, seg.router_address, seg.broadcast,
                BROADCAST_PORT, listener, True, label,
            )
        )  # fmt: skip
        rows.append(
            Datagram("multicast", own_source, own_address, GROUP, GROUP_PORT, listener, True, label)
        )  # fmt: skip
        sends = [(seg.broadcast, BROADCAST_PORT), (LIMITED_BROADCAST, BROADCAST_PORT)]
        if other is not None:
            rows += [
                Datagram(_kind(d), sender, None, d, p, listener, True, label) for d, p in sends
            ]
        quiet = [(seg.broadcast, layout.quiet_port), (layout.quiet_group, GROUP_PORT)]
        rows += [
            Datagram(
                _kind(d), own_source, own_address, d, p, listener, True, label + " (no relay rule)"
            )
            for d, p in quiet
        ]
        for dest_seg in layout.segments:
            if dest_seg is seg or dest_seg.name not in listeners:
                continue
            why = f"{label} to {dest_seg.label}"
            for d, p in [*sends, (GROUP, GROUP_PORT)]:
                rules = [
                    c.rule
                    for c in crossings
                    if (c.kind, c.source, c.destination) == (_kind(d), seg.name, dest_seg.name)
                    and c.admits(addr.get(sender))
                ]
                relayed = f" (relayed: {', '.join(rules)})" if any(rules) else " (relayed)"
                rows.append(
                    Datagram(
                        _kind(d), sender, None, d, p, listeners[dest_seg.name], bool(rules),
                        why + relayed * bool(rules), _arrives_at(d, seg, dest_seg),
                    )
                )  # fmt: skip
            rows += [
                Datagram(
                    _kind(d), sender, None, d, p, listeners[dest_seg.name], False,
                    why + " (no relay rule)", _arrives_at(d, seg, dest_seg),
                )
                for d, p in quiet
            ]  # fmt: skip
    return rows


def _arrives_at(destination: IPv4, source: Segment, receiving: Segment) -> IPv4 | None:
    """A directed broadcast relayed to another VLAN becomes that VLAN's broadcast address."""
    return receiving.broadcast if destination == source.broadcast else None


def crossings_of_relay_rules(topology: Topology) -> list[Crossing]:
    """The crossings a topology's relay rules create for verify's port and group (for a relay)."""
    found: list[Crossing] = []
    for rule in topology.relay_rules:
        ports = _rule_ports(rule)
        kinds = []
        if rule.broadcast and any(lo <= BROADCAST_PORT <= hi for lo, hi in ports):
            kinds.append("broadcast")
        if int(GROUP) in rule.groups and any(lo <= GROUP_PORT <= hi for lo, hi in ports):
            kinds.append("multicast")
        found += [
            Crossing(kind, rule.ingress, d, _networks(rule.allow), _networks(rule.deny), rule.name)
            for kind in kinds
            for d in rule.egress
        ]
    return found


@dataclass(frozen=True)
class Expectation:
    """What verify expects of the relay, and the line that says so."""

    crossings: tuple[Crossing, ...]
    summary: str


def relay_expectation(
    topology: Topology, netns_prefix: str, *, state_root: str | None = None
) -> Expectation:
    """Expect the crossings of the relay rules when apply started the router-mode relay.

    A relay whose PID file is there but which is no longer running is still expected: apply
    started it for these rules, so its crossings missing is a failure to report, not a reason
    to expect less.
    """
    from crosscast.topology import apply, plan

    nothing = "expecting nothing to cross between VLANs"
    if not topology.relay_rules:
        return Expectation((), f"relay: the topology has no relay rules: {nothing}")
    try:
        layout = plan.layout_for(topology, netns_prefix, state_root=state_root or plan.STATE_ROOT)
    except ValueError:
        return Expectation((), f"relay: {nothing}")
    paths = plan.relay_paths(layout)
    crossings = tuple(crossings_of_relay_rules(topology))
    named = ", ".join(f"{c.kind} {c.source} -> {c.destination}" for c in crossings)
    theirs = f"its rules' crossings: {named or 'none on these ports and groups'}"
    if not Path(paths["pid"]).exists():
        return Expectation((), f"relay: not started ({paths['pid']} absent): {nothing}")
    pid = apply.daemon_pid(paths["pid"], plan.RELAY, plan.relay_identity(layout))
    router = netns_prefix + topology.router.name
    if pid is None:
        return Expectation(
            crossings,
            f"relay: started by apply in {router} but not running (`topology apply` starts it "
            f"again): still expecting {theirs}",
        )
    return Expectation(crossings, f"relay: running in {router} (pid {pid}): expecting {theirs}")


# --- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    test: str
    source: str
    target: str
    expected: bool
    got: bool
    why: str
    error: str | None = None  # the check could not run (a host without an address)

    @property
    def passed(self) -> bool:
        return self.error is None and self.expected == self.got


def _word(test: str, value: bool) -> str:
    if test == "ping":
        return OK if value else NO
    return "received" if value else "not received"


def format_table(rows: Sequence[Row], *, with_test: bool) -> str:
    header = [*(["Test"] if with_test else []), "Source", "Target", "Expected", "Got", "Result"]
    body = [
        [
            *([r.test] if with_test else []),
            r.source,
            r.target,
            _word(r.test, r.expected),
            _word(r.test, r.got) if r.error is None else r.error,
            "pass" if r.passed else "FAIL",
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in [header, *body]
    )


# --- I/O: addresses, pings, datagrams ----------------------------------------------------------


def eth0_address(ns: str, iface: str = MEMBER_IFACE) -> IPv4 | None:
    """The first IPv4 address of `iface` in namespace `ns`, or None."""
    proc = netns.run(["ip", "-j", "-4", "addr", "show", "dev", iface], ns, check=False)
    if proc.returncode != 0:
        return None
    for link in json.loads(proc.stdout or "[]"):
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                return IPv4(a["local"])
    return None


def ping(ns: str, address: IPv4, *, tries: int = 1) -> bool:
    for _ in range(tries):
        proc = netns.run(["ping", "-n", "-q", "-c1", "-W1", str(address)], ns, check=False)
        if proc.returncode == 0:
            return True
    return False


def run_pings(prefix: str, rows: Sequence[Ping], addresses: Mapping[str, IPv4]) -> list[Row]:
    """Every ping at once (one thread each): a "No connection" row costs its 1 s only once."""

    def one(p: Ping) -> Row:
        target = p.target_address or addresses.get(p.target_host or "")
        if target is None:
            return Row("ping", p.source, p.target, p.expected, False, p.why, "no address")
        # A row expected OK gets a second try: the first echo also pays for ARP and may race it.
        got = ping(prefix + p.source, target, tries=2 if p.expected else 1)
        return Row("ping", p.source, p.target, p.expected, got, p.why)

    with ThreadPoolExecutor(max_workers=max(1, len(rows))) as pool:
        return list(pool.map(one, rows))


@contextlib.contextmanager
def _sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        yield opened
    finally:
        for s in opened:
            s.close()


def _listener(ns: str, port: int, groups: Iterable[IPv4]) -> socket.socket:
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            for group in groups:
                # Join on eth0, as socat's ip-add-membership=GROUP:eth0 does (struct ip_mreqn).
                index = socket.if_nametoindex(MEMBER_IFACE)
                mreqn = struct.pack("4s4si", group.packed, bytes(4), index)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            s.setblocking(False)
        except BaseException:
            s.close()
            raise
    return s


def _sender(ns: str, source: IPv4, destination: IPv4) -> socket.socket:
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((str(source), 0))
            if destination.is_multicast:
                # What `ip route add 233.54.12.234/32 dev eth0` does for socat: leave by this
                # address's interface.
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, source.packed)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            else:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        except BaseException:
            s.close()
            raise
    return s


def run_traffic(
    prefix: str,
    rows: Sequence[Datagram],
    addresses: Mapping[str, IPv4],
    *,
    resend: float = 0.2,
    settle: float = 0.5,
    limit: float = 3.0,
) -> list[Row]:
    """Send every row's datagram, with its own payload, and see which listener got what.

    All listeners are open before the first send. Every datagram is sent again each `resend`
    seconds: a bridge that snoops IGMP with a querier forwards a group only once the
    listener's membership report has reached it, which a first datagram can outrun. We stop
    `settle` seconds after every expected datagram is in (the unexpected ones get as many
    chances as the expected ones needed, and more), or after `limit` seconds.
    """
    payloads = {i: f"foo #{i}".encode() for i in range(len(rows))}
    received: set[tuple[str, int, bytes]] = set()  # (receiver, port, payload)
    with _sockets() as opened, selectors.DefaultSelector() as sel:
        # One socket per receiver and port, joined to every group sent to that port.
        listening: dict[tuple[str, int], set[IPv4]] = {}
        for r in rows:
            groups = listening.setdefault((r.receiver, r.port), set())
            if r.destination.is_multicast:
                groups.add(r.destination)
        for (receiver, port), groups in sorted(listening.items()):
            s = _listener(prefix + receiver, port, sorted(groups))
            opened.append(s)
            sel.register(s, selectors.EVENT_READ, (receiver, port))
        senders: dict[int, socket.socket] = {}
        for i, r in enumerate(rows):
            source = r.source_address or addresses.get(r.source)
            if source is not None:
                senders[i] = _sender(prefix + r.source, source, r.destination)
                opened.append(senders[i])
        wanted = {(r.receiver, r.port, payloads[i]) for i, r in enumerate(rows) if r.expected}
        start = time.monotonic()
        next_send = start
        quiet_from: float | None = None
        while (now := time.monotonic()) - start < limit:
            if wanted <= received:
                quiet_from = quiet_from or now
                if now - quiet_from >= settle:
                    break
            if now >= next_send:
                for i, sock in senders.items():
                    r = rows[i]
                    if (r.receiver, r.port, payloads[i]) not in received:
                        sock.sendto(payloads[i], (str(r.destination), r.port))
                next_send = now + resend
            for key, _ in sel.select(timeout=min(0.05, max(0.0, next_send - now))):
                receiver, port = key.data
                with contextlib.suppress(BlockingIOError):
                    while True:
                        data = key.fileobj.recv(2048)  # type: ignore[union-attr]
                        received.add((receiver, port, data))
    return [
        Row(
            r.test,
            r.source if r.source_address is None else f"{r.source} ({r.source_address})",
            r.target,
            r.expected,
            (r.receiver, r.port, payloads[i]) in received,
            r.why,
            None if i in senders else "source has no address",
        )
        for i, r in enumerate(rows)
    ]


# --- the command --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    pings: list[Row]
    traffic: list[Row]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in [*self.pings, *self.traffic])


def hosts_of(layout: Layout) -> list[str]:
    return [layout.router, *(m for s in layout.segments for m in s.members)]


def check(layout: Layout, prefix: str, expected_crossings: Iterable[Crossing] = ()) -> Report:
    """Run every check against the namespaces of an applied topology."""
    members = [m for s in layout.segments for m in s.members]
    with ThreadPoolExecutor(max_workers=max(1, len(members))) as pool:
        found = dict(
            zip(members, pool.map(lambda m: eth0_address(prefix + m), members), strict=True)
        )
    addresses = {m: a for m, a in found.items() if a is not None}
    with ThreadPoolExecutor(max_workers=2) as pool:
        pings = pool.submit(run_pings, prefix, expected_pings(layout, addresses), addresses)
        traffic = run_traffic(
            prefix, expected_traffic(layout, expected_crossings, addresses), addresses
        )
        return Report(pings.result(), traffic)


def run_verify(
    topology: Topology,
    netns_prefix: str | None = None,
    *,
    expected_crossings: Iterable[Crossing] = (),
    assumption: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Print the checks as tables; 0 if every row is as expected, 1 if not, 2 if not applied.

    `assumption` (what the crossings expected stand for, see relay_expectation) is printed on
    the line before the tables.
    """
    stream = out or sys.stdout
    if netns_prefix is None:
        print(
            "verify: only namespace topologies are supported so far: pass --netns-prefix P",
            file=sys.stderr,
        )
        return EXIT_USAGE
    layout = layout_of(topology)
    missing = [h for h in [HOST_NS, *hosts_of(layout)] if not netns.exists(netns_prefix + h)]
    if missing:
        print(
            f"verify: namespace {netns_prefix}{missing[0]} does not exist"
            f" (apply the topology with --netns-prefix {netns_prefix} first)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    unaddressed = [
        m for s in layout.segments for m in s.members if eth0_address(netns_prefix + m) is None
    ]
    started = time.monotonic()
    report = check(layout, netns_prefix, expected_crossings)
    took = time.monotonic() - started
    if assumption:
        stream.write(assumption + "\n\n")
    stream.write("Reachability (ping)\n")
    stream.write(format_table(report.pings, with_test=False))
    stream.write("\nBroadcast and multicast (UDP)\n")
    stream.write(format_table(report.traffic, with_test=True))
    bad = [r for r in [*report.pings, *report.traffic] if not r.passed]
    total = len(report.pings) + len(report.traffic)
    stream.write(f"\n{total - len(bad)}/{total} checks as expected in {took:.1f} s\n")
    for m in unaddressed:
        print(f"verify: {netns_prefix}{m} has no address on {MEMBER_IFACE}", file=sys.stderr)
    return EXIT_OK if not bad else EXIT_FAILED
