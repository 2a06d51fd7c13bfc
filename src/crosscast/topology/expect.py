"""What `topology verify` expects of a topology, derived from it and never hard-coded: pure.

Owns the derivation: who is on which VLAN (`layout_of`), the reachability matrix of the seeds'
ping table (`expected_pings`), the broadcast and multicast datagrams and where each must and
must not arrive (`expected_traffic`), the crossings a topology's relay rules create
(`crossings_of_relay_rules`) and the report table (`format_table`). Topology and rules in,
expectations out: no namespaces, no sockets, no files. crosscast.topology.verify runs them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from crosscast.relay.rules import Rule
from crosscast.topology.model import Topology

IPv4 = ipaddress.IPv4Address

BROADCAST_PORT = 5000  # the seeds' `nc -ulp 5000`
GROUP = IPv4("233.54.12.234")  # the seeds' socat test
GROUP_PORT = 22001
QUIET_PORT = BROADCAST_PORT + 1  # the first candidate for "a port no relay rule names"
QUIET_GROUP = IPv4("233.54.12.235")  # the first candidate for "a group no relay rule names"
LIMITED_BROADCAST = IPv4("255.255.255.255")

OK = "OK"
NO = "No connection"


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


def outcome_word(test: str, value: bool) -> str:
    """How the tables (and verify's progress) say an outcome: OK / No connection for a ping,
    received / not received for a datagram."""
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
            outcome_word(r.test, r.expected),
            outcome_word(r.test, r.got) if r.error is None else r.error,
            "pass" if r.passed else "FAIL",
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in [header, *body]
    )
