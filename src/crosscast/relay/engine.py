"""The relay's decisions: captured frames and mesh datagrams in, actions out.

Owns: classification of what was captured or received, rule matching, loop prevention (own and
peer relay MACs, the segment election, the duplicate window), frame rewriting for each egress,
envelope coding, and the counters. It must not own sockets, read the clock or sleep: time is
passed in as `now`, and the service turns the returned actions into system calls.

Loop prevention, layer by layer:
- the capture socket ignores our own transmissions (PACKET_IGNORE_OUTGOING, in capture.py);
- a frame whose Ethernet source is one of our MACs, or the MAC of another crosscast relay seen
  on that segment, is never relayed (relays re-emit with their own MAC, so this catches them);
- relays on one segment find each other with probe frames (EtherType 0x88B5, the IEEE local
  experimental type) and elect the one with the lowest id to forward for that segment, so two
  relays on a segment give one copy, not two, in every other segment;
- a short duplicate window keyed on the frame's fingerprint (source, IP id, ports, payload)
  drops a frame that was just emitted to, or captured on, the segment it would go to; and
  crosscast envelopes carry (origin, sequence) so a datagram seen twice is relayed once;
- a relay never forwards mesh to mesh (rule validation forbids it), so every envelope it sends
  carries hops=0, and one that arrives with hops >= HOP_LIMIT is dropped (Drop.HOP_LIMIT).

It does not log either: what happened besides the actions (drops, relays that joined a segment)
is recorded in `events`, which the service takes after each call and logs.
"""

from __future__ import annotations

import enum
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from crosscast.net.frames import (
    BROADCAST_MAC,
    LIMITED_BROADCAST,
    FrameError,
    UdpFrame,
    broadcast_address,
    build_probe_frame,
    fingerprint,
    is_multicast,
    is_probe_frame,
    looks_like_directed_broadcast,
    multicast_mac,
    parse_probe_frame,
    parse_udp_frame,
    rewrite_for_egress,
)
from crosscast.relay.envelope import (
    CROSSCAST_MAGIC,
    HEADER_LEN,
    HOP_LIMIT,
    KIND_FRAME,
    KIND_PROBE,
    SNOWSIGNAL_MAGIC,
    TAG_LEN,
    CrosscastCodec,
    Envelope,
    EnvelopeError,
    SequenceCounter,
    decode_snowsignal,
    encode_snowsignal,
)
from crosscast.relay.fragments import (
    Fragment,
    FragmentTracker,
    Pending,
    parse_fragment,
    rewrite_fragment,
    split_frame,
)
from crosscast.relay.ratelimit import Limiters, limits_of
from crosscast.relay.ruleindex import RuleTable
from crosscast.relay.rules import MESH, Rule

PROBE_INTERVAL = 5.0  # seconds between segment probes
PROBE_HOLD = 3 * PROBE_INTERVAL  # a relay not heard for this long has left the segment
DUPLICATE_WINDOW = 1.0  # seconds; identical frames inside it are one frame
DUPLICATE_CAPACITY = 65536  # entries; bounds memory under a flood of distinct frames
MESH_OVERHEAD = 20 + 8  # IPv4 + UDP headers of a mesh datagram, before the envelope


class Drop(enum.StrEnum):
    """Why a frame or datagram was not relayed: the `reason` label of the drop counter."""

    # what frames.parse_udp_frame rejects (FrameError.reason)
    SHORT = "short"
    NOT_IPV4 = "not-ipv4"
    BAD_IP_HEADER = "bad-ip-header"
    BAD_IP_CHECKSUM = "bad-ip-checksum"
    NOT_UDP = "not-udp"
    FRAGMENT = "fragment"
    NOT_FRAGMENT = "not-fragment"  # fragments.parse_fragment: a whole datagram
    BAD_LENGTH = "bad-length"
    TOO_LONG = "too-long"
    # what the envelope codec rejects (EnvelopeError.reason)
    BAD_MAGIC = "bad-magic"
    BAD_VERSION = "bad-version"
    BAD_KIND = "bad-kind"
    BAD_TAG = "bad-tag"
    UNEXPECTED_TAG = "unexpected-tag"
    UNAUTHENTICATED = "unauthenticated"
    REPLAY = "replay"
    STALE = "stale"
    HOP_LIMIT = "hop-limit"
    # the engine's own decisions
    NOT_BROADCAST = "not-broadcast"
    NO_RULE = "no-rule"
    DUPLICATE = "duplicate"
    RELAY_MAC = "relay-mac"
    STANDBY = "standby"
    BAD_PROBE = "bad-probe"  # a probe frame whose envelope does not decode
    OWN_PROBE = "own-probe"
    RATE_LIMIT = "rate-limit"  # a rule's rate or the egress cap (relay/ratelimit.py)
    FRAGMENT_TIMEOUT = "fragment-timeout"  # held for a first fragment that never came
    FRAGMENT_OVERFLOW = "fragment-overflow"  # the hold for early fragments was full
    # the service's, before the engine sees a datagram
    NOT_PEER = "not-peer"


@dataclass(frozen=True, slots=True)
class Dropped:
    """A frame or datagram was dropped for `reason` on `where` (an interface, or "mesh")."""

    reason: Drop
    where: str


@dataclass(frozen=True, slots=True)
class RelayJoined:
    """Relay `origin` (MAC `mac`) was first heard on segment `iface`; `designated` says whether
    this relay (rather than it) forwards for that segment now."""

    origin: int
    mac: bytes
    iface: str
    designated: bool


Event = Dropped | RelayJoined


@dataclass(frozen=True, slots=True)
class Interface:
    """What the engine needs to know of one local interface."""

    name: str
    mac: bytes
    address: int | None = None
    prefix_len: int | None = None

    @property
    def broadcast(self) -> int | None:
        # /31 and /32 have no directed broadcast (RFC 3021): such a segment gets 255.255.255.255.
        if self.address is None or self.prefix_len is None or self.prefix_len >= 31:
            return None
        return broadcast_address(self.address, self.prefix_len)


@dataclass(frozen=True, slots=True)
class Emit:
    """Write `frame` on interface `interface`."""

    interface: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class ToMesh:
    """Send `datagram` to every current peer."""

    datagram: bytes


Action = Emit | ToMesh


class DuplicateWindow:
    """Keys remembered for `window` seconds, oldest first, at most `capacity` of them."""

    def __init__(self, window: float = DUPLICATE_WINDOW, capacity: int = DUPLICATE_CAPACITY):
        self._window = window
        self._capacity = capacity
        self._expiry: OrderedDict[object, float] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._expiry

    def expire(self, now: float) -> None:
        expiry = self._expiry
        while expiry:
            key, when = next(iter(expiry.items()))
            if when > now:
                break
            del expiry[key]

    def add(self, key: object, now: float) -> None:
        self._expiry[key] = now + self._window
        self._expiry.move_to_end(key)
        if len(self._expiry) > self._capacity:
            self._expiry.popitem(last=False)  # a flood of distinct frames: forget the oldest


class Relay:
    """One relay's state machine. Feed it with on_capture / on_mesh / on_tick."""

    def __init__(
        self,
        *,
        rules: RuleTable,
        interfaces: Mapping[str, Interface],
        relay_id: int,
        mesh_port: int,
        mesh_format: str = "crosscast",
        codec: CrosscastCodec | None = None,
        egress_rate: int = 0,
        mesh_mtu: int = 1500,
    ) -> None:
        self.rules = rules
        self.interfaces = dict(interfaces)
        self.relay_id = relay_id
        self.mesh_port = mesh_port
        self.mesh_format = mesh_format
        self.codec = codec or CrosscastCodec(None)
        self.counters: Counter[tuple[str, ...]] = Counter()
        self._seq = SequenceCounter()
        self._recent = DuplicateWindow()
        # segment election: interface -> {relay id: (mac, last heard)}
        self._segment: dict[str, dict[int, tuple[bytes, float]]] = {n: {} for n in interfaces}
        self._relay_macs: dict[bytes, float] = {}
        self._next_probe = 0.0
        self.events: list[Event] = []  # since the last take_events()
        # -- issue 9: rate limits, fragments, mesh MTU --
        self.limiters = Limiters(limits_of(rules.rules), egress=interfaces, egress_rate=egress_rate)
        # each fragmented datagram's egress, decided on its first fragment
        self._fragments: FragmentTracker[tuple[str, ...]] = FragmentTracker()
        # The largest frame one mesh datagram carries without IP fragmentation of its own on a
        # path of `mesh_mtu` bytes; larger frames are sent as IPv4 fragments (fragments.py).
        tag = TAG_LEN if self.codec.authenticated else 0
        self.mesh_frame_limit = mesh_mtu - MESH_OVERHEAD - HEADER_LEN - tag

    # -- inputs ----------------------------------------------------------------------------

    def on_capture(
        self, iface: str, frame: bytes, now: float, *, csum_partial: bool = False
    ) -> list[Action]:
        """A frame the kernel filter passed on `iface`."""
        self.counters["captured", iface] += 1
        if csum_partial:
            self.counters["checksum_completed", iface] += 1
        if is_probe_frame(frame):
            return self._on_probe(iface, frame, now)
        try:
            f = parse_udp_frame(frame)
        except FrameError as e:
            if e.reason == Drop.FRAGMENT:  # issue 9: fragments follow their first one
                return self._on_fragment(iface, frame, now)
            return self._drop(Drop(e.reason), iface)
        if f.src_mac in self._relay_macs or f.src_mac == self.interfaces[iface].mac:
            return self._drop(Drop.RELAY_MAC, iface)
        if not self._is_designated(iface, now):
            return self._drop(Drop.STANDBY, iface)
        ingress = self.interfaces[iface]
        if f.dst_ip == LIMITED_BROADCAST or f.dst_ip == ingress.broadcast:
            is_broadcast = True
        elif is_multicast(f.dst_ip):
            is_broadcast = False
        else:
            return self._drop(Drop.NOT_BROADCAST, iface)
        key = fingerprint(f)
        if (iface, key) in self._recent:
            return self._drop(Drop.DUPLICATE, iface)
        self._recent.add((iface, key), now)
        egress, matched = self.rules.egress_for(
            iface, f.dst_ip, f.dst_port, f.src_ip, is_broadcast=is_broadcast
        )
        if not egress:
            return self._drop(Drop.NO_RULE, iface)
        egress, matched = self._admit(iface, matched, egress, now)  # issue 9: rule rate limits
        for rule in matched:
            self.counters["rule", rule.name] += 1
        actions: list[Action] = []
        for out in egress:
            if out == MESH:
                actions.extend(self._to_mesh(self._complete(f, csum_partial), now))
            else:
                actions.extend(self._emit(out, f, key, now, csum_partial=csum_partial))
        return actions

    def on_mesh(self, data: bytes, now: float, *, from_self: bool = False) -> list[Action]:
        """A datagram from a current peer (the caller drops non-peers as 'not-peer')."""
        self.counters["mesh_received",] += 1
        magic = data[:2]
        try:
            if magic == CROSSCAST_MAGIC:
                env = self.codec.decode(data, now)
                if env.kind != KIND_FRAME:
                    return self._drop(Drop.BAD_KIND, MESH)
                if env.hops >= HOP_LIMIT:
                    return self._drop(Drop.HOP_LIMIT, MESH)
                if (env.origin, env.seq) in self._recent:
                    return self._drop(Drop.DUPLICATE, MESH)
                self._recent.add((env.origin, env.seq), now)
                from_self = from_self or env.origin == self.relay_id
                frame = env.body
            elif magic == SNOWSIGNAL_MAGIC and not self.codec.authenticated:
                frame = decode_snowsignal(data)
            else:
                return self._drop(
                    Drop.UNAUTHENTICATED if magic == SNOWSIGNAL_MAGIC else Drop.BAD_MAGIC, MESH
                )
            f = parse_udp_frame(frame)
        except (EnvelopeError, FrameError) as e:
            if e.reason == Drop.FRAGMENT:  # issue 9: fragments follow their first one
                return self._on_fragment(MESH, frame, now, from_self=from_self)
            return self._drop(Drop(e.reason), MESH)
        if f.dst_mac == BROADCAST_MAC and (
            f.dst_ip == LIMITED_BROADCAST or looks_like_directed_broadcast(f.dst_ip)
        ):
            is_broadcast = True
        elif is_multicast(f.dst_ip) and f.dst_mac == multicast_mac(f.dst_ip):
            is_broadcast = False
        else:
            return self._drop(Drop.NOT_BROADCAST, MESH)
        egress, matched = self.rules.egress_for(
            MESH, f.dst_ip, f.dst_port, f.src_ip, is_broadcast=is_broadcast
        )
        if not egress:
            return self._drop(Drop.NO_RULE, MESH)
        egress, matched = self._admit(MESH, matched, egress, now)  # issue 9: rule rate limits
        for rule in matched:
            self.counters["rule", rule.name] += 1
        key = fingerprint(f)
        actions: list[Action] = []
        for out in egress:
            if out == MESH:
                continue  # validation forbids mesh -> mesh; never re-flood the mesh
            if not self._is_designated(out, now):
                self._drop(Drop.STANDBY, out)
            elif (out, key) in self._recent and not from_self:
                self._drop(Drop.DUPLICATE, out)
            else:
                # A peer may forward a frame exactly as its kernel captured it, with the partial
                # checksum of a local sender (SnowSignal does): never trust it, recompute.
                actions.extend(self._emit(out, f, key, now, csum_partial=True))
        return actions

    def on_tick(self, now: float) -> list[Action]:
        """Housekeeping, called about once a second: expiries and periodic probes."""
        self._recent.expire(now)
        for _ in range(self._fragments.expire(now)):
            self._drop(Drop.FRAGMENT_TIMEOUT, "fragments")
        for peers in self._segment.values():
            for rid in [r for r, (_, heard) in peers.items() if now - heard > PROBE_HOLD]:
                del peers[rid]
        for mac in [m for m, heard in self._relay_macs.items() if now - heard > PROBE_HOLD]:
            del self._relay_macs[mac]
        if now < self._next_probe:
            return []
        self._next_probe = now + PROBE_INTERVAL
        return [self._probe(name, now) for name in self.interfaces]

    def update_interface(self, iface: Interface) -> None:
        """An interface came back, maybe with a new MAC or address."""
        self.interfaces[iface.name] = iface
        self._segment.setdefault(iface.name, {})
        self.limiters.add_egress(iface.name, 0.0)

    def remove_interface(self, name: str) -> None:
        """No rule uses `name` any more (a reload): forget it, so it is not probed."""
        self.interfaces.pop(name, None)
        self._segment.pop(name, None)
        self.limiters.egress.pop(name, None)

    def set_rules(self, rules: RuleTable, now: float) -> None:
        """Swap in a new rule table (a reload). Limits of unchanged rules keep their state, so a
        flooding rule gets no fresh burst; fragment decisions are forgotten (they name egresses
        of the old rules), and their held fragments are dropped as `fragment-timeout`."""
        self.rules = rules
        self.limiters = self.limiters.rebuilt(
            limits_of(rules.rules), egress=self.interfaces, now=now
        )
        for _ in range(self._fragments.clear()):
            self._drop(Drop.FRAGMENT_TIMEOUT, "fragments")

    def take_events(self) -> list[Event]:
        """What happened since the last call (drops, relays heard on a segment), oldest first."""
        events, self.events = self.events, []
        return events

    def segment_peers(self, iface: str) -> dict[int, bytes]:
        """The other relays heard on `iface`: relay id -> MAC."""
        return {rid: mac for rid, (mac, _) in self._segment[iface].items()}

    # -- internals -------------------------------------------------------------------------

    def _drop(self, reason: Drop, where: str) -> list[Action]:
        self.counters["dropped", reason] += 1
        self.events.append(Dropped(reason, where))
        return []

    def _is_designated(self, iface: str, now: float) -> bool:
        peers = self._segment[iface]
        return not peers or all(
            self.relay_id < rid for rid, (_, heard) in peers.items() if now - heard <= PROBE_HOLD
        )

    def _complete(self, f: UdpFrame, csum_partial: bool) -> bytes:
        if not csum_partial:
            return f.frame
        return rewrite_for_egress(f, src_mac=f.src_mac, fix_udp_checksum=True)

    def _egress_dst(self, egress: Interface, dst: int) -> tuple[bytes, int | None]:
        """The destination MAC and IP (None: unchanged) of a datagram to `dst` on `egress`."""
        if is_multicast(dst):
            return multicast_mac(dst), None
        # A directed broadcast of the source segment is dropped on this one (the receivers
        # count it in IpInAddrErrors): it becomes this segment's broadcast address.
        if dst == LIMITED_BROADCAST:
            return BROADCAST_MAC, None
        return BROADCAST_MAC, LIMITED_BROADCAST if egress.broadcast is None else egress.broadcast

    def _emit(
        self, out: str, f: UdpFrame, key: bytes, now: float, *, csum_partial: bool = False
    ) -> list[Action]:
        if not self.limiters.allow_egress(out, now):  # issue 9: the default cap per egress
            return self._drop(Drop.RATE_LIMIT, out)
        egress = self.interfaces[out]
        dst_mac, dst_ip = self._egress_dst(egress, f.dst_ip)
        frame = rewrite_for_egress(
            f,
            src_mac=egress.mac,
            dst_mac=dst_mac,
            dst_ip=dst_ip,
            ttl=max(1, f.ttl - 1),
            fix_udp_checksum=csum_partial,
        )
        self._recent.add((out, key), now)
        self.counters["emitted", out] += 1
        return [Emit(out, frame)]

    # -- issue 9: rate limits, fragments, mesh MTU ------------------------------------------

    def _admit(
        self, ingress: str, matched: tuple[Rule, ...], egress: tuple[str, ...], now: float
    ) -> tuple[tuple[str, ...], tuple[Rule, ...]]:
        """`egress` less what rate-limited rules may not send now, and the rules that may (each
        refusal is a counted `rate-limit` drop, per rule). The fast path calls this where a
        rule matched."""
        limiters = self.limiters
        if not limiters.rules:
            return egress, matched
        passed = tuple(rule for rule in matched if limiters.allow_rule(rule.name, now))
        if len(passed) == len(matched):
            return egress, matched
        for rule in matched:
            if rule not in passed:
                self.counters["rule_dropped", rule.name, Drop.RATE_LIMIT] += 1
                self._drop(Drop.RATE_LIMIT, ingress)
        names = dict.fromkeys(name for rule in passed for name in rule.egress)
        return tuple(name for name in egress if name in names), passed

    def _to_mesh(self, frame: bytes, now: float) -> list[Action]:
        """`frame` for the peers; in the crosscast format as IPv4 fragments that each fit one
        mesh datagram of `mesh_mtu` bytes. The snowsignal format sends it whole (SnowSignal
        cannot parse fragments), so the kernel fragments a mesh datagram over the path MTU."""
        if self.mesh_format == "snowsignal" or len(frame) <= self.mesh_frame_limit:
            return [ToMesh(self._encode(frame, now))]
        return [
            ToMesh(self._encode(piece, now)) for piece in split_frame(frame, self.mesh_frame_limit)
        ]

    def _on_fragment(
        self, where: str, frame: bytes, now: float, *, from_self: bool = False
    ) -> list[Action]:
        """A fragment of a UDP datagram, captured on `where` or received from the mesh: the
        first one is matched against the rules like a datagram, the others follow it."""
        try:
            f = parse_fragment(frame)
        except FrameError as e:
            return self._drop(Drop(e.reason), where)
        if where != MESH:
            if f.src_mac in self._relay_macs or f.src_mac == self.interfaces[where].mac:
                return self._drop(Drop.RELAY_MAC, where)
            if not self._is_designated(where, now):
                return self._drop(Drop.STANDBY, where)
            dedup = (where, f.key, f.offset)
            if dedup in self._recent:
                return self._drop(Drop.DUPLICATE, where)
            self._recent.add(dedup, now)
        if not f.first:
            decision = self._fragments.follow(where, f, now)
            if decision is Pending.HELD:
                return []
            if decision is Pending.OVERFLOW:
                return self._drop(Drop.FRAGMENT_OVERFLOW, where)
            return self._send_fragments(where, [f], decision, now, from_self)
        is_broadcast = self._fragment_is_broadcast(where, f)
        if is_broadcast is None:
            egress: tuple[str, ...] = ()
            self._drop(Drop.NOT_BROADCAST, where)
        else:
            assert f.dst_port is not None  # a first fragment carries the UDP header
            egress, matched = self.rules.egress_for(
                where, f.dst_ip, f.dst_port, f.src_ip, is_broadcast=is_broadcast
            )
            if not egress:
                self._drop(Drop.NO_RULE, where)
            egress, matched = self._admit(where, matched, egress, now)
            for rule in matched:
                self.counters["rule", rule.name] += 1
        # Remembered even when empty: the rest of a datagram that was dropped is dropped too,
        # at once, instead of being held until it times out.
        held = self._fragments.first(where, f, egress, now)
        return self._send_fragments(where, [f, *held], egress, now, from_self)

    def _fragment_is_broadcast(self, where: str, f: Fragment) -> bool | None:
        """True for a broadcast, False for a multicast, None for neither (as on_capture and
        on_mesh judge whole datagrams)."""
        if where != MESH:
            if f.dst_ip == LIMITED_BROADCAST or f.dst_ip == self.interfaces[where].broadcast:
                return True
            return False if is_multicast(f.dst_ip) else None
        if f.dst_mac == BROADCAST_MAC and (
            f.dst_ip == LIMITED_BROADCAST or looks_like_directed_broadcast(f.dst_ip)
        ):
            return True
        if is_multicast(f.dst_ip) and f.dst_mac == multicast_mac(f.dst_ip):
            return False
        return None

    def _send_fragments(
        self,
        where: str,
        frags: list[Fragment],
        egress: tuple[str, ...],
        now: float,
        from_self: bool,
    ) -> list[Action]:
        if not egress:
            if frags and not frags[0].first:
                self._drop(Drop.NO_RULE, where)
            return []
        actions: list[Action] = []
        for f in frags:
            for out in egress:
                if out == MESH:
                    if where != MESH:  # never mesh to mesh
                        actions.extend(self._to_mesh(f.frame, now))
                    continue
                if where == MESH:
                    if not self._is_designated(out, now):
                        self._drop(Drop.STANDBY, out)
                        continue
                    dedup = (out, f.key, f.offset)
                    if dedup in self._recent and not from_self:
                        self._drop(Drop.DUPLICATE, out)
                        continue
                    self._recent.add(dedup, now)
                if not self.limiters.allow_egress(out, now):
                    self._drop(Drop.RATE_LIMIT, out)
                    continue
                dst_mac, dst_ip = self._egress_dst(self.interfaces[out], f.dst_ip)
                frame = rewrite_fragment(
                    f, src_mac=self.interfaces[out].mac, dst_mac=dst_mac, dst_ip=dst_ip,
                    ttl=max(1, f.ttl - 1),
                )  # fmt: skip
                self.counters["emitted", out] += 1
                actions.append(Emit(out, frame))
        return actions

    def _encode(self, frame: bytes, now: float) -> bytes:
        if self.mesh_format == "snowsignal":
            return encode_snowsignal(frame)
        return self.codec.encode(self._envelope(KIND_FRAME, frame, now))

    def _envelope(self, kind: int, body: bytes, now: float) -> Envelope:
        return Envelope(
            kind=kind,
            origin=self.relay_id,
            seq=self._seq.next(),
            # Never forwarded mesh to mesh (validation forbids it): what we send crossed no relay.
            hops=0,
            timestamp_ms=int(now * 1000),
            body=body,
        )

    def _probe(self, iface: str, now: float) -> Emit:
        # The body names our mesh port: relays of another mesh on this segment do not elect us.
        body = self.codec.encode(self._envelope(KIND_PROBE, self.mesh_port.to_bytes(2, "big"), now))
        return Emit(iface, build_probe_frame(self.interfaces[iface].mac, body))

    def _on_probe(self, iface: str, frame: bytes, now: float) -> list[Action]:
        try:
            probe = parse_probe_frame(frame)
            env = self.codec.decode(probe.body, now)
        except (FrameError, EnvelopeError):
            # The codec's reason is not kept: one label for every undecodable probe.
            return self._drop(Drop.BAD_PROBE, iface)
        if env.kind != KIND_PROBE or env.body[:2] != self.mesh_port.to_bytes(2, "big"):
            return []
        if env.origin == self.relay_id:
            # Two of our own interfaces on one segment: every relayed frame would loop back.
            return self._drop(Drop.OWN_PROBE, iface)
        mac = probe.src_mac
        peers = self._segment[iface]
        is_new = env.origin not in peers
        peers[env.origin] = (mac, now)
        self._relay_macs[mac] = now
        if is_new:
            self.events.append(
                RelayJoined(env.origin, mac, iface, designated=self._is_designated(iface, now))
            )
            return [self._probe(iface, now)]  # answer at once, so it learns us too
        return []
