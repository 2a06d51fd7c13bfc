"""The relay's decisions: captured frames and mesh datagrams in, frames and datagrams out.

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
- a short duplicate window per segment, keyed on what relaying keeps (source address, IP id,
  ports, length, payload), drops a frame that was just emitted to, or captured on, the segment
  it would go to; and crosscast envelopes carry (origin, sequence) so a datagram seen twice is
  relayed once;
- a relay never forwards mesh to mesh (rule validation forbids it), so every envelope it sends
  carries hops=0, and one that arrives with hops >= HOP_LIMIT is dropped (Drop.HOP_LIMIT).

The fast path (issue 8). The service hands over everything one wake-up drained (`on_capture`,
`on_mesh`) and gets back one `Output`: (interface, frame) pairs to write and mesh datagrams, the
mesh frames of the drain batched into as few crosscast datagrams as fit. Per frame the engine
builds no object besides the output frame: it validates by fixed offsets (net.frames.udp_offset,
which falls back to the full parser for anything unusual), looks its decision up in a cache per
ingress keyed by destination address and port (and source address where a rule filters on
it), and applies precomputed `Plan`s with incremental checksums. Counters are plain ints on the
plans and decisions; `counters` assembles the tuple-keyed snapshot the metrics read.

Rate limits, fragments and the mesh MTU (issue 9) sit on the same path. A rule with a rate has
a token bucket (relay/ratelimit.py), checked once per frame by the decisions that matched it
(`Decision.limiter`, a `Gate`; None for the common unlimited case); the cap per egress
interface is a bucket per interface in `Plan.limiter` (None when the cap is off). Refused
frames are counted drops (`rate-limit`; per rule in `rule_dropped`). An IPv4 fragment is judged
by its datagram's first fragment (the cached decision of its destination and port) and every
later fragment of the same (source, destination, id, protocol) follows it (relay/fragments.py:
bounded hold, counted drops). A frame too large for one mesh datagram leaves as IPv4 fragments
that fit (`_encode`), so no mesh datagram needs IP fragmentation of its own.

It does not log either: what happened besides the actions (drops, relays that joined a segment)
is recorded in `events`, which the service takes after each call and logs.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from crosscast.net.frames import (
    BROADCAST_MAC,
    LIMITED_BROADCAST,
    FrameError,
    broadcast_address,
    build_probe_frame,
    checksum_delta,
    complete_udp_checksum,
    is_multicast,
    is_probe_frame,
    looks_like_directed_broadcast,
    multicast_mac,
    parse_probe_frame,
    rewrite_incremental,
    udp_offset,
)
from crosscast.relay.envelope import (
    CROSSCAST_MAGIC,
    HOP_LIMIT,
    KIND_BATCH,
    KIND_FRAME,
    KIND_PROBE,
    SNOWSIGNAL_MAGIC,
    CrosscastCodec,
    EnvelopeError,
    Reassembly,
    SequenceCounter,
    decode_snowsignal,
    encode_snowsignal,
    mesh_datagram_max,
    pack,
    split_batch,
)
from crosscast.relay.fragments import (
    Fragment,
    FragmentTracker,
    Pending,
    parse_fragment,
    rewrite_fragment,
)
from crosscast.relay.ratelimit import Limiters, TokenBucket, limits_of
from crosscast.relay.ruleindex import RuleTable
from crosscast.relay.rules import MESH, Rule

PROBE_INTERVAL = 5.0  # seconds between segment probes
PROBE_HOLD = 3 * PROBE_INTERVAL  # a relay not heard for this long has left the segment
DUPLICATE_WINDOW = 1.0  # seconds; identical frames inside it are one frame
# Keys per window; bounds memory under a flood of distinct frames. A window always remembers at
# least the last capacity / 2 keys, and a duplicate trails its original by at most what the
# queues on its path hold (an RX ring of 512 slots, a mesh socket of a few hundred datagrams):
# 16384 covers that with room to spare, where 65536 cost 10-14 MB of RSS under overload.
DUPLICATE_CAPACITY = 16384
# Frames taken in between two looks at the duplicate windows when none is due to rotate: a
# window holds at most its capacity plus this (and one drain), and a drain pays one comparison,
# not a call per window (at 1,000 pps those calls, run with cold caches, cost about 1 µs).
EXPIRE_EVERY = 1024
DECISION_CAPACITY = 4096  # cached decisions per ingress; a scan of many groups or sources
TP_STATUS_CSUMNOTREADY = 1 << 3  # linux/if_packet.h: checksum left to the NIC (local sender)


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
    BAD_BATCH = "bad-batch"
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
    PART_TIMEOUT = "part-timeout"  # a frame cut into mesh parts that never all came
    PART_OVERFLOW = "part-overflow"  # given up for a newer one: too many incomplete frames
    BAD_PART = "bad-part"  # its mesh parts contradict each other
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


Frame = bytes | bytearray
# A captured frame and its tp_status (PACKET_AUXDATA or the RX ring's slot header); anything
# after the status (the ring's VLAN tag, packet type and timestamp) is ignored.
Captured = tuple[bytes, int] | tuple[bytes, int, int, int, int, int]


# A fragmented datagram's fate, from its first fragment: the plans and whether the mesh too, or
# the reason its other fragments are dropped.
_Follow = tuple[tuple["Plan", ...], bool, "Drop | None"]


class Output(NamedTuple):
    """What one call wants done: frames to write, and datagrams for every current peer."""

    emits: list[tuple[str, Frame]]  # (interface, frame)
    datagrams: list[bytes]


class Plan:
    """How a frame to one destination leaves on one local egress, worked out once.

    `limiter` is the egress interface's bucket under the cap per interface (shared by every
    plan to it): None relays everything.
    """

    __slots__ = ("delta", "dst_ip", "egress", "hits", "limiter", "macs", "new_dst")

    def __init__(self, egress: Interface, dst_ip: int) -> None:
        if is_multicast(dst_ip):
            dst_mac, new = multicast_mac(dst_ip), dst_ip
        elif dst_ip == LIMITED_BROADCAST:
            dst_mac, new = BROADCAST_MAC, dst_ip
        else:
            # A directed broadcast of the source segment is dropped on this one (the receivers
            # count it in IpInAddrErrors): it becomes this segment's broadcast address.
            dst_mac = BROADCAST_MAC
            new = LIMITED_BROADCAST if egress.broadcast is None else egress.broadcast
        if len(egress.mac) != 6:
            raise ValueError(f"{egress.name}: MAC addresses are 6 bytes")
        self.egress = egress.name
        self.macs = dst_mac + egress.mac  # Ethernet destination and source, in frame order
        self.dst_ip = new
        self.new_dst: bytes | None = None if new == dst_ip else new.to_bytes(4, "big")
        self.delta = checksum_delta(dst_ip, new)
        self.hits = 0  # frames emitted through this plan
        self.limiter: TokenBucket | None = None


class Gate:
    """The rate limits of the rules one decision matched: each rule's bucket is asked once per
    frame (a rule with two egresses relays its rate to each), and a frame goes to the egresses
    of the rules that passed, plus those of the matched rules without a rate."""

    __slots__ = ("buckets", "egress_of", "names", "refused", "unlimited")

    def __init__(self, matched: tuple[Rule, ...], buckets: Mapping[str, TokenBucket]) -> None:
        limited = [rule for rule in matched if rule.name in buckets]
        self.names = tuple(rule.name for rule in limited)
        self.buckets = tuple(buckets[name] for name in self.names)
        self.egress_of = tuple(frozenset(rule.egress) for rule in limited)
        self.unlimited = frozenset(
            out for rule in matched if rule.name not in buckets for out in rule.egress
        )
        self.refused = [0] * len(self.names)  # frames each rule refused, in `names` order

    def admit(self, now: float) -> tuple[set[str], int] | None:
        """None when every rule passed; else where the frame may go (maybe nowhere) and how
        many rules refused it."""
        passed = [bucket.allow(now) for bucket in self.buckets]
        if all(passed):
            return None
        allowed = set(self.unlimited)
        refused = 0
        for i, ok in enumerate(passed):
            if ok:
                allowed |= self.egress_of[i]
            else:
                self.refused[i] += 1
                refused += 1
        return allowed, refused


class Decision:
    """What happens to every frame from one ingress to one (destination, port[, source])."""

    __slots__ = ("drop", "dst_mac", "hits", "limiter", "plans", "rules", "to_mesh")

    def __init__(
        self,
        drop: Drop | None,
        *,
        dst_mac: bytes | None = None,
        rules: tuple[str, ...] = (),
        plans: tuple[Plan, ...] = (),
        to_mesh: bool = False,
        limiter: Gate | None = None,
    ) -> None:
        self.drop = drop
        self.dst_mac = dst_mac  # what a frame from the mesh must be addressed to
        self.rules = rules  # names of the rules matched
        self.plans = plans
        self.to_mesh = to_mesh
        self.limiter = limiter  # the rules' rate limits; None: no matched rule has one
        self.hits = 0  # frames matched


class DuplicateWindow:
    """Keys seen in the last `window` to 2 x `window` seconds, about `capacity` of them at most.

    Two generations: keys go into `current`; `expire` makes it the `previous` generation once
    `window` has passed (and forgets both after two idle windows), or as soon as it holds half
    the capacity, so memory is bounded whatever the rate (by the capacity plus what is added
    between two calls of `expire`: the engine calls it when `rotate_at` is reached or
    EXPIRE_EVERY frames came in). The engine tests and adds on the two sets directly: one
    lookup and one insert per frame, no per-key timestamps.
    """

    __slots__ = ("_half", "_window", "current", "previous", "rotate_at")

    def __init__(self, window: float = DUPLICATE_WINDOW, capacity: int = DUPLICATE_CAPACITY):
        self._window = window
        self._half = max(1, capacity // 2)
        self.current: set[object] = set()
        self.previous: set[object] = set()
        self.rotate_at = float("-inf")  # when `current` becomes `previous`

    def __contains__(self, key: object) -> bool:
        return key in self.current or key in self.previous

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)

    def add(self, key: object) -> None:
        self.current.add(key)

    def expire(self, now: float) -> None:
        if now >= self.rotate_at:
            stale = now >= self.rotate_at + self._window
            self.previous = set() if stale else self.current
            self.current = set()
            self.rotate_at = now + self._window
        elif len(self.current) >= self._half:
            self.previous, self.current = self.current, set()


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
        self._seq = SequenceCounter()
        self._part_id = relay_id & 0xFFFF  # frame ids of the frames the mesh budget cuts
        # Body bytes per mesh datagram: the one size budget of batches and of the parts a
        # larger frame is cut into (envelope.pack).
        self._budget = mesh_datagram_max(mesh_mtu) - self.codec.overhead
        self._parts = Reassembly()  # frames that came cut into parts, put back together
        # per segment: frames seen there lately (captured on it or emitted to it)
        self._recent: dict[str, DuplicateWindow] = {n: DuplicateWindow() for n in interfaces}
        self._seen = DuplicateWindow()  # origin << 64 | seq of crosscast envelopes
        self._expire_at = float("-inf")  # when a duplicate window is next due to rotate
        self._unexpired = 0  # frames taken in since the windows were last looked at
        # segment election: interface -> {relay id: (mac, last heard)}
        self._segment: dict[str, dict[int, tuple[bytes, float]]] = {n: {} for n in interfaces}
        self._relay_macs: dict[bytes, float] = {}
        self._next_probe = 0.0
        self.events: list[Event] = []  # since the last take_events()
        # per ingress (an interface or MESH): decision key -> Decision
        self._decisions: dict[str, dict[bytes, Decision]] = {}
        # counters as plain ints; `counters` builds the snapshot
        self._captured: Counter[str] = Counter()
        self._completed: Counter[str] = Counter()
        self._dropped: Counter[Drop] = Counter()
        self._mesh_received = 0
        self._retired_rules: Counter[str] = Counter()  # hits of decisions no longer cached
        self._retired_emits: Counter[str] = Counter()
        self._retired_refused: Counter[str] = Counter()  # rate-limit refusals, per rule
        # Token buckets: per rule with a rate, per egress interface under the cap.
        self.limiters = Limiters(limits_of(rules.rules), egress=interfaces, egress_rate=egress_rate)
        # Each fragmented datagram's fate, decided on its first fragment.
        self._fragments: FragmentTracker[_Follow] = FragmentTracker()

    # -- inputs ----------------------------------------------------------------------------

    def on_capture(self, iface: str, frames: Iterable[Captured], now: float) -> Output:
        """The frames one wake-up drained from `iface`'s capture (the kernel filter passed
        them), each with its tp_status."""
        emits: list[tuple[str, Frame]] = []
        to_mesh: list[bytes] = []
        if now >= self._expire_at or self._unexpired >= EXPIRE_EVERY:
            self._expire(now)
        recent = self._recent
        window = recent[iface]
        current, previous = window.current, window.previous
        decisions = self._decisions.get(iface) or self._decisions.setdefault(iface, {})
        by_source = self.rules.filters_source(iface)
        own_mac = self.interfaces[iface].mac
        relay_macs = self._relay_macs
        peers = self._segment[iface]
        captured = 0
        for item in frames:
            captured += 1
            frame = item[0]
            partial = item[1] & TP_STATUS_CSUMNOTREADY != 0
            if partial:
                self._completed[iface] += 1
            try:
                frame, u = udp_offset(frame)
            except FrameError as e:
                if e.reason == Drop.FRAGMENT:  # the datagram's first fragment decides
                    self._on_fragment(iface, frame, now, emits, to_mesh)
                elif is_probe_frame(frame):
                    emits += self._on_probe(iface, frame, now)
                else:
                    self._drop(Drop(e.reason), iface)
                continue
            src_mac = frame[6:12]
            if src_mac == own_mac or src_mac in relay_macs:
                self._drop(Drop.RELAY_MAC, iface)
                continue
            if peers and not self._is_designated(iface, now):
                self._drop(Drop.STANDBY, iface)
                continue
            key = (frame[26:34] if by_source else frame[30:34]) + frame[u + 2 : u + 4]
            d = decisions.get(key)
            if d is None:
                d = self._decide(iface, key, decisions)
            if d.drop is not None:
                self._drop(d.drop, iface)
                continue
            seen = hash(frame[26:30] + frame[18:20] + frame[u : u + 6] + frame[u + 8 :])
            if seen in current or seen in previous:
                self._drop(Drop.DUPLICATE, iface)
                continue
            current.add(seen)
            d.hits += 1
            plans, mesh_too = d.plans, d.to_mesh
            if d.limiter is not None:
                plans, mesh_too = self._admit(d, d.limiter, iface, now)
            for p in plans:
                if p.limiter is not None and not p.limiter.allow(now):
                    self._drop(Drop.RATE_LIMIT, p.egress)
                    continue
                emits.append(
                    (
                        p.egress,
                        rewrite_incremental(frame, u, p.macs, p.new_dst, p.delta, partial),
                    )
                )
                p.hits += 1
                recent[p.egress].current.add(seen)
            if mesh_too:
                to_mesh.append(complete_udp_checksum(frame, u) if partial else frame)
        self._captured[iface] += captured
        self._unexpired += captured
        return Output(emits, self._encode(to_mesh, now) if to_mesh else [])

    def on_mesh(self, datagrams: Iterable[tuple[bytes, bool]], now: float) -> Output:
        """Datagrams from current peers (the caller drops non-peers as 'not-peer'), each with
        whether it came from one of our own addresses (a relay talking to itself)."""
        if now >= self._expire_at or self._unexpired >= EXPIRE_EVERY:
            self._expire(now)
        seen, seen_before = self._seen.current, self._seen.previous
        frames: list[tuple[bytes, bool, bool]] = []  # (frame, from self, complete checksum)
        received = 0
        for data, from_self in datagrams:
            received += 1
            magic = data[:2]
            try:
                if magic == CROSSCAST_MAGIC:
                    kind, origin, seq, hops, _ms, body = self.codec.open(data, now)
                    if kind != KIND_FRAME and kind != KIND_BATCH:
                        self._drop(Drop.BAD_KIND, MESH)
                        continue
                    if hops >= HOP_LIMIT:
                        self._drop(Drop.HOP_LIMIT, MESH)
                        continue
                    key = origin << 64 | seq  # one int, not a tuple of two: 48 bytes, not 124
                    if key in seen or key in seen_before:
                        self._drop(Drop.DUPLICATE, MESH)
                        continue
                    seen.add(key)
                    from_self = from_self or origin == self.relay_id
                    # The sending relay completed any partial checksum (on_capture).
                    if kind == KIND_FRAME:
                        frames.append((body, from_self, False))
                    else:
                        cut = False
                        for entry in split_batch(body):
                            if isinstance(entry, tuple):  # a PART: a frame when it completes one
                                cut = True
                                whole = self._parts.add(origin, entry, now)
                                if whole is not None:
                                    frames.append((whole, from_self, False))
                            else:
                                frames.append((entry, from_self, False))
                        if cut and (self._parts.overflowed or self._parts.contradicted):
                            self._count_part_drops()
                elif magic == SNOWSIGNAL_MAGIC and not self.codec.authenticated:
                    # SnowSignal forwards a frame exactly as its kernel captured it, with the
                    # partial checksum of a local sender: never trust it, recompute.
                    frames.append((decode_snowsignal(data), from_self, True))
                else:
                    reason = Drop.UNAUTHENTICATED if magic == SNOWSIGNAL_MAGIC else Drop.BAD_MAGIC
                    self._drop(reason, MESH)
            except EnvelopeError as e:
                self._drop(Drop(e.reason), MESH)
        self._mesh_received += received
        self._unexpired += received + len(frames)
        return Output(self._from_mesh(frames, now) if frames else [], [])

    def on_tick(self, now: float) -> Output:
        """Housekeeping, called about once a second: expiries and periodic probes."""
        self._expire(now)
        for _ in range(self._fragments.expire(now)):
            self._drop(Drop.FRAGMENT_TIMEOUT, "fragments")
        for _ in range(self._parts.expire(now)):
            self._drop(Drop.PART_TIMEOUT, MESH)
        for peers in self._segment.values():
            for rid in [r for r, (_, heard) in peers.items() if now - heard > PROBE_HOLD]:
                del peers[rid]
        for mac in [m for m, heard in self._relay_macs.items() if now - heard > PROBE_HOLD]:
            del self._relay_macs[mac]
        if now < self._next_probe:
            return Output([], [])
        self._next_probe = now + PROBE_INTERVAL
        return Output([self._probe(name, now) for name in self.interfaces], [])

    def update_interface(self, iface: Interface) -> None:
        """An interface came back, maybe with a new MAC or address: plans are worked out anew."""
        self.interfaces[iface.name] = iface
        self._segment.setdefault(iface.name, {})
        self._recent.setdefault(iface.name, DuplicateWindow())
        self._expire_at = float("-inf")  # a new window is looked at on the next drain
        self.limiters.add_egress(iface.name, 0.0)
        self._forget_decisions()

    def remove_interface(self, name: str) -> None:
        """No rule uses `name` any more (a reload): forget it, so it is not probed."""
        self.interfaces.pop(name, None)
        self._segment.pop(name, None)
        self._recent.pop(name, None)
        self.limiters.egress.pop(name, None)
        self._forget_decisions()
        self._decisions.pop(name, None)

    def update_rules(self, rules: RuleTable) -> None:
        """New rules (a reload): every decision is worked out anew. The bucket of a rule
        whose name, rate and burst did not change is kept, so a reload hands a flooding rule
        no fresh burst; so are the egress caps."""
        self.rules = rules
        self.limiters = self.limiters.rebuilt(
            limits_of(rules.rules), egress=self.interfaces, now=0.0
        )
        self._forget_decisions()

    def take_events(self) -> list[Event]:
        """What happened since the last call (drops, relays heard on a segment), oldest first."""
        events, self.events = self.events, []
        return events

    def segment_peers(self, iface: str) -> dict[int, bytes]:
        """The other relays heard on `iface`: relay id -> MAC."""
        return {rid: mac for rid, (mac, _) in self._segment[iface].items()}

    @property
    def counters(self) -> Counter[tuple[str, ...]]:
        """A snapshot of every counter, keyed ("captured", iface), ("checksum_completed",
        iface), ("emitted", iface), ("dropped", reason), ("rule", name) (frames relayed),
        ("rule_dropped", name, reason), ("mesh_received",); only non-zero ones. Built on each
        call (a scrape), never on the packet path."""
        rules = Counter(self._retired_rules)
        emitted = Counter(self._retired_emits)
        refused = Counter(self._retired_refused)
        for decisions in self._decisions.values():
            for d in decisions.values():
                if d.hits:
                    for name in d.rules:
                        rules[name] += d.hits
                for p in d.plans:
                    emitted[p.egress] += p.hits
                if d.limiter is not None:
                    for name, n in zip(d.limiter.names, d.limiter.refused, strict=True):
                        refused[name] += n
        rules.subtract(refused)  # "rule" counts what a rule relayed
        out: Counter[tuple[str, ...]] = Counter()
        for kind, source in (
            ("captured", self._captured),
            ("checksum_completed", self._completed),
            ("emitted", emitted),
            ("rule", rules),
        ):
            for name, n in source.items():
                if n:
                    out[kind, name] = n
        for reason, n in self._dropped.items():
            out["dropped", reason] = n
        for name, n in refused.items():
            if n:
                out["rule_dropped", name, Drop.RATE_LIMIT] = n
        if self._mesh_received:
            out["mesh_received",] = self._mesh_received
        return out

    # -- internals -------------------------------------------------------------------------

    def _drop(self, reason: Drop, where: str) -> None:
        self._dropped[reason] += 1
        self.events.append(Dropped(reason, where))

    def _count_part_drops(self) -> None:
        parts = self._parts
        for reason, n in (
            (Drop.PART_OVERFLOW, parts.overflowed),
            (Drop.BAD_PART, parts.contradicted),
        ):
            for _ in range(n):
                self._drop(reason, MESH)
        parts.overflowed = parts.contradicted = 0

    def _expire(self, now: float) -> None:
        windows = [*self._recent.values(), self._seen]
        for window in windows:
            window.expire(now)
        self._expire_at = min(window.rotate_at for window in windows)
        self._unexpired = 0

    def _is_designated(self, iface: str, now: float) -> bool:
        peers = self._segment[iface]
        return not peers or all(
            self.relay_id < rid for rid, (_, heard) in peers.items() if now - heard <= PROBE_HOLD
        )

    def _decide(self, ingress: str, key: bytes, decisions: dict[bytes, Decision]) -> Decision:
        """Work out (and cache) what happens to frames from `ingress` with this key: the
        destination address and port, after the source address when a rule filters on it."""
        dst_ip = int.from_bytes(key[-6:-2], "big")
        dst_port = int.from_bytes(key[-2:], "big")
        src_ip = int.from_bytes(key[:4], "big") if len(key) == 10 else 0
        if ingress == MESH:
            # Untrusted: only what a segment would carry as a broadcast or multicast.
            if dst_ip == LIMITED_BROADCAST or looks_like_directed_broadcast(dst_ip):
                dst_mac: bytes | None = BROADCAST_MAC
            elif is_multicast(dst_ip):
                dst_mac = multicast_mac(dst_ip)
            else:
                dst_mac = None
        elif dst_ip == LIMITED_BROADCAST or dst_ip == self.interfaces[ingress].broadcast:
            dst_mac = BROADCAST_MAC
        else:
            dst_mac = multicast_mac(dst_ip) if is_multicast(dst_ip) else None
        if dst_mac is None:
            d = Decision(Drop.NOT_BROADCAST)
        else:
            egress, matched = self.rules.egress_for(
                ingress, dst_ip, dst_port, src_ip, is_broadcast=dst_mac == BROADCAST_MAC
            )
            if not egress:
                d = Decision(Drop.NO_RULE, dst_mac=dst_mac)
            else:
                caps = self.limiters.egress
                plans = []
                # validation forbids mesh -> mesh; never re-flood the mesh
                for out in egress:
                    if out != MESH:
                        plan = Plan(self.interfaces[out], dst_ip)
                        plan.limiter = caps.get(out)
                        plans.append(plan)
                buckets = self.limiters.rules
                d = Decision(
                    None,
                    dst_mac=dst_mac,
                    rules=tuple(rule.name for rule in matched),
                    plans=tuple(plans),
                    to_mesh=MESH in egress and ingress != MESH,
                    limiter=Gate(matched, buckets)
                    if any(rule.name in buckets for rule in matched)
                    else None,
                )
        if len(decisions) >= DECISION_CAPACITY:
            self._retire(decisions)
        decisions[key] = d
        return d

    def _retire(self, decisions: dict[bytes, Decision]) -> None:
        # Keep what the dropped decisions counted before forgetting them.
        for d in decisions.values():
            for name in d.rules:
                self._retired_rules[name] += d.hits
            for p in d.plans:
                self._retired_emits[p.egress] += p.hits
            if d.limiter is not None:
                for name, n in zip(d.limiter.names, d.limiter.refused, strict=True):
                    self._retired_refused[name] += n
        decisions.clear()

    def _forget_decisions(self) -> None:
        for decisions in self._decisions.values():
            self._retire(decisions)
        # What fragments were to follow names plans just forgotten: the rest of those datagrams
        # is lost (counted), rather than sent by stale rules or to a stale broadcast address.
        for _ in range(self._fragments.clear()):
            self._drop(Drop.FRAGMENT_TIMEOUT, "fragments")

    def _from_mesh(
        self, frames: list[tuple[bytes, bool, bool]], now: float
    ) -> list[tuple[str, Frame]]:
        emits: list[tuple[str, Frame]] = []
        decisions = self._decisions.get(MESH) or self._decisions.setdefault(MESH, {})
        by_source = self.rules.filters_source(MESH)
        recent = self._recent
        segment = self._segment
        for raw, from_self, complete in frames:
            try:
                frame, u = udp_offset(raw)
            except FrameError as e:
                if e.reason == Drop.FRAGMENT:  # the datagram's first fragment decides
                    self._on_fragment(MESH, raw, now, emits, [], from_self=from_self)
                else:
                    self._drop(Drop(e.reason), MESH)
                continue
            key = (frame[26:34] if by_source else frame[30:34]) + frame[u + 2 : u + 4]
            d = decisions.get(key)
            if d is None:
                d = self._decide(MESH, key, decisions)
            if frame[0:6] != d.dst_mac:
                self._drop(Drop.NOT_BROADCAST, MESH)
                continue
            if d.drop is not None:
                self._drop(d.drop, MESH)
                continue
            d.hits += 1
            plans = d.plans
            if d.limiter is not None:
                plans = self._admit(d, d.limiter, MESH, now)[0]
            seen = hash(frame[26:30] + frame[18:20] + frame[u : u + 6] + frame[u + 8 :])
            for p in plans:
                out = p.egress
                window = recent[out]
                if segment[out] and not self._is_designated(out, now):
                    self._drop(Drop.STANDBY, out)
                elif not from_self and (seen in window.current or seen in window.previous):
                    self._drop(Drop.DUPLICATE, out)
                elif p.limiter is not None and not p.limiter.allow(now):
                    self._drop(Drop.RATE_LIMIT, out)
                else:
                    emits.append(
                        (
                            out,
                            rewrite_incremental(frame, u, p.macs, p.new_dst, p.delta, complete),
                        )
                    )
                    p.hits += 1
                    window.current.add(seen)
        return emits

    def _encode(self, frames: list[bytes], now: float) -> list[bytes]:
        if self.mesh_format == "snowsignal":
            # SnowSignal cannot parse fragments: a frame goes whole, and the kernel fragments a
            # datagram over the path MTU.
            return [encode_snowsignal(frame) for frame in frames]
        seal = self.codec.seal
        origin, ms, seq = self.relay_id, int(now * 1000), self._seq
        bodies, self._part_id = pack(frames, self._budget, self._part_id)
        # Never forwarded mesh to mesh (validation forbids it): what we send crossed no relay.
        return [seal(kind, origin, seq.next(), 0, ms, body) for kind, body in bodies]

    def _admit(
        self, d: Decision, gate: Gate, where: str, now: float
    ) -> tuple[tuple[Plan, ...], bool]:
        """The plans, and whether the mesh too, that `d`'s rate-limited rules let this frame
        take; each rule that refused it is a counted `rate-limit` drop."""
        verdict = gate.admit(now)
        if verdict is None:
            return d.plans, d.to_mesh
        allowed, refused = verdict
        for _ in range(refused):
            self._drop(Drop.RATE_LIMIT, where)
        return tuple(p for p in d.plans if p.egress in allowed), d.to_mesh and MESH in allowed

    # -- fragments (relay/fragments.py); not the common case, so objects are fine here -------

    def _on_fragment(
        self,
        where: str,
        frame: bytes,
        now: float,
        emits: list[tuple[str, Frame]],
        to_mesh: list[bytes],
        *,
        from_self: bool = False,
    ) -> None:
        """A fragment of a UDP datagram, captured on `where` or received from the mesh: the
        first one is judged like a whole datagram, the others follow it (or wait for it)."""
        try:
            f = parse_fragment(frame)
        except FrameError as e:
            self._drop(Drop(e.reason), where)
            return
        if where != MESH:
            if f.src_mac == self.interfaces[where].mac or f.src_mac in self._relay_macs:
                self._drop(Drop.RELAY_MAC, where)
                return
            if self._segment[where] and not self._is_designated(where, now):
                self._drop(Drop.STANDBY, where)
                return
            window = self._recent[where]
            seen = (f.key, f.offset)
            if seen in window:
                self._drop(Drop.DUPLICATE, where)
                return
            window.add(seen)
        if f.first:
            follow = self._judge_first(where, f, now)
            # Remembered when dropped too: the rest of the datagram is dropped at once, not
            # held until it times out.
            held = self._fragments.first(where, f, follow, now)
            self._send_fragments(where, [f, *held], follow, now, emits, to_mesh, from_self)
            return
        known = self._fragments.follow(where, f, now)
        if known is Pending.OVERFLOW:
            self._drop(Drop.FRAGMENT_OVERFLOW, where)
        elif known is not Pending.HELD:
            self._send_fragments(where, [f], known, now, emits, to_mesh, from_self)

    def _judge_first(self, where: str, f: Fragment, now: float) -> _Follow:
        """The fate of a fragmented datagram, from its first fragment: the cached decision of
        its destination and port, as a whole datagram's (one rule hit, one token)."""
        assert f.dst_port is not None  # a first fragment carries the UDP header
        ips = f.frame[26:34]
        key = (ips if self.rules.filters_source(where) else ips[4:]) + f.dst_port.to_bytes(2, "big")
        decisions = self._decisions.get(where) or self._decisions.setdefault(where, {})
        d = decisions.get(key)
        if d is None:
            d = self._decide(where, key, decisions)
        if where == MESH and f.dst_mac != d.dst_mac:
            self._drop(Drop.NOT_BROADCAST, where)
            return (), False, Drop.NOT_BROADCAST
        if d.drop is not None:
            self._drop(d.drop, where)
            return (), False, d.drop
        d.hits += 1
        if d.limiter is None:
            return d.plans, d.to_mesh, None
        plans, mesh_too = self._admit(d, d.limiter, where, now)
        return plans, mesh_too, None if plans or mesh_too else Drop.RATE_LIMIT

    def _send_fragments(
        self,
        where: str,
        frags: list[Fragment],
        follow: _Follow,
        now: float,
        emits: list[tuple[str, Frame]],
        to_mesh: list[bytes],
        from_self: bool,
    ) -> None:
        plans, mesh_too, reason = follow
        if reason is not None:
            for f in frags:
                if not f.first:  # the first was counted when it was judged
                    self._drop(reason, where)
            return
        recent = self._recent
        for f in frags:
            if mesh_too:
                to_mesh.append(f.frame)
            seen = (f.key, f.offset)
            for p in plans:
                out = p.egress
                window = recent[out]
                if where == MESH:
                    if self._segment[out] and not self._is_designated(out, now):
                        self._drop(Drop.STANDBY, out)
                        continue
                    if not from_self and seen in window:
                        self._drop(Drop.DUPLICATE, out)
                        continue
                if p.limiter is not None and not p.limiter.allow(now):
                    self._drop(Drop.RATE_LIMIT, out)
                    continue
                frame = rewrite_fragment(
                    f, src_mac=p.macs[6:], dst_mac=p.macs[:6], dst_ip=p.dst_ip,
                    ttl=max(1, f.ttl - 1),
                )  # fmt: skip
                emits.append((out, frame))
                p.hits += 1
                window.add(seen)

    def _probe(self, iface: str, now: float) -> tuple[str, bytes]:
        # The body names our mesh port: relays of another mesh on this segment do not elect us.
        body = self.codec.seal(
            KIND_PROBE,
            self.relay_id,
            self._seq.next(),
            0,
            int(now * 1000),
            self.mesh_port.to_bytes(2, "big"),
        )
        return iface, build_probe_frame(self.interfaces[iface].mac, body)

    def _on_probe(self, iface: str, frame: bytes, now: float) -> list[tuple[str, Frame]]:
        try:
            probe = parse_probe_frame(frame)
            env = self.codec.decode(probe.body, now)
        except (FrameError, EnvelopeError):
            # The codec's reason is not kept: one label for every undecodable probe.
            self._drop(Drop.BAD_PROBE, iface)
            return []
        if env.kind != KIND_PROBE or env.body[:2] != self.mesh_port.to_bytes(2, "big"):
            return []
        if env.origin == self.relay_id:
            # Two of our own interfaces on one segment: every relayed frame would loop back.
            self._drop(Drop.OWN_PROBE, iface)
            return []
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
