"""The relay engine, pure: frames in, actions out; relays joined by a fake mesh (a list)."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether

from crosscast.net.frames import (
    build_udp_frame,
    ip_from_str,
    mac_from_str,
    multicast_mac,
    parse_udp_frame,
)
from crosscast.relay.engine import (
    DECISION_CAPACITY,
    DUPLICATE_CAPACITY,
    EXPIRE_EVERY,
    PROBE_HOLD,
    TP_STATUS_CSUMNOTREADY,
    Drop,
    Dropped,
    DuplicateWindow,
    Interface,
    Output,
    Relay,
    RelayJoined,
)
from crosscast.relay.envelope import (
    ENVELOPE_ERROR_REASONS,
    HOP_LIMIT,
    KIND_BATCH,
    KIND_FRAME,
    KIND_PROBE,
    MESH_DATAGRAM_MAX,
    CrosscastCodec,
    Envelope,
    encode_snowsignal,
)
from crosscast.relay.ruleindex import RuleTable
from crosscast.relay.rules import parse_rules_text, snowsignal_rules

NOW = 1_800_000_000.0
SENDER_MAC = mac_from_str("02:00:00:00:01:0b")
SECRET = b"correct horse battery staple"


def iface(name: str, mac_last: int, address: str, prefix: int = 24) -> Interface:
    return Interface(
        name=name,
        mac=mac_from_str(f"02:cc:00:00:00:{mac_last:02x}"),
        address=ip_from_str(address),
        prefix_len=prefix,
    )


def relay(
    rules: str | None = None,
    *,
    relay_id: int = 1,
    interfaces: tuple[Interface, ...] = (),
    secret: bytes | None = None,
    mesh_format: str = "crosscast",
) -> Relay:
    table = RuleTable(parse_rules_text(rules, "test") if rules else snowsignal_rules("eth0", 5076))
    interfaces = interfaces or (iface("eth0", relay_id, f"10.0.{relay_id}.21"),)
    return Relay(
        rules=table,
        interfaces={i.name: i for i in interfaces},
        relay_id=relay_id,
        mesh_port=7124,
        mesh_format=mesh_format,
        codec=CrosscastCodec(secret),
    )


def bcast(
    dst: str = "10.0.1.255",
    port: int = 5076,
    payload: bytes = b"search",
    src: str = "10.0.1.11",
    src_mac: bytes = SENDER_MAC,
    ttl: int = 64,
) -> bytes:
    dst_ip = ip_from_str(dst)
    dst_mac = multicast_mac(dst_ip) if dst_ip >> 28 == 0xE else b"\xff" * 6
    return build_udp_frame(
        src_mac=src_mac,
        dst_mac=dst_mac,
        src_ip=ip_from_str(src),
        dst_ip=dst_ip,
        src_port=40000,
        dst_port=port,
        payload=payload,
        ttl=ttl,
    )


NOTHING = Output([], [])


class Emit(NamedTuple):
    interface: str
    frame: bytes


def capture(r: Relay, iface: str, frame: bytes, now: float, *, partial: bool = False) -> Output:
    """One frame captured on `iface` (a drain of one)."""
    return r.on_capture(iface, [(frame, TP_STATUS_CSUMNOTREADY if partial else 0)], now)


def mesh(r: Relay, datagram: bytes, now: float, *, from_self: bool = False) -> Output:
    """One datagram from a peer."""
    return r.on_mesh([(datagram, from_self)], now)


def mesh_datagrams(out: Output) -> list[bytes]:
    return out.datagrams


def emits(out: Output) -> list[Emit]:
    return [Emit(name, bytes(frame)) for name, frame in out.emits]


def envelope(
    frame: bytes | None = None,
    *,
    hops: int = 0,
    kind: int = KIND_FRAME,
    secret: bytes | None = None,
    origin: int = 77,
    seq: int = 0,
) -> bytes:
    """A crosscast datagram from relay `origin`, as a peer would send it."""
    body = bcast() if frame is None else frame
    env = Envelope(kind, origin, seq, hops, int(NOW * 1000), body)
    return CrosscastCodec(secret).encode(env)


UNICAST = bytes(
    Ether(src="02:00:00:00:01:0b", dst="02:00:00:00:01:0c")
    / IP(src="10.0.1.11", dst="10.0.1.12")
    / UDP(sport=1, dport=5076)
    / b"x"
)
ICMP_BROADCAST = bytes(
    Ether(src="02:00:00:00:01:0b", dst="ff:ff:ff:ff:ff:ff")
    / IP(src="10.0.1.11", dst="10.0.1.255")
    / ICMP()
)
LIMITED = "255.255.255.255"  # a broadcast on any segment (10.0.1.255 is not one on eth0's)
OWN_MAC = mac_from_str("02:cc:00:00:00:02")  # relay(relay_id=2)'s eth0
PROBE_ETHERTYPE = b"\x88\xb5"

# Each case: a relay (relay_id 2, one interface eth0, snowsignal-style rules on port 5076, the
# `secret` given), the inputs fed to it in order ("capture" frames on eth0, "mesh" datagrams
# from a peer), and the one drop the last input must cause. Nothing may be emitted or sent for
# the last input, and no other drop may be counted. The drop names where it happened: eth0
# for a capture or for a frame from the mesh that eth0 just had, else "mesh".
Input = tuple[str, bytes]
DROP_CASES: list[tuple[str, bytes | None, list[Input], Dropped]] = [
    ("capture-unicast", None, [("capture", UNICAST)], Dropped(Drop.NOT_BROADCAST, "eth0")),
    (
        "capture-other-port",
        None,
        [("capture", bcast(LIMITED, port=5077))],
        Dropped(Drop.NO_RULE, "eth0"),
    ),
    (
        "capture-own-mac",
        None,
        [("capture", bcast(LIMITED, src_mac=OWN_MAC))],
        Dropped(Drop.RELAY_MAC, "eth0"),
    ),
    ("capture-truncated", None, [("capture", bcast()[:20])], Dropped(Drop.SHORT, "eth0")),
    ("capture-not-udp", None, [("capture", ICMP_BROADCAST)], Dropped(Drop.NOT_UDP, "eth0")),
    ("capture-twice", None, [("capture", bcast(LIMITED))] * 2, Dropped(Drop.DUPLICATE, "eth0")),
    (
        "capture-bad-probe",
        None,
        [("capture", b"\xff" * 6 + OWN_MAC + PROBE_ETHERTYPE)],
        Dropped(Drop.BAD_PROBE, "eth0"),
    ),
    (
        "mesh-unicast",
        None,
        [("mesh", encode_snowsignal(UNICAST))],
        Dropped(Drop.NOT_BROADCAST, "mesh"),
    ),
    (
        "mesh-other-port",
        None,
        [("mesh", encode_snowsignal(bcast(port=22)))],
        Dropped(Drop.NO_RULE, "mesh"),
    ),
    ("mesh-bad-magic", None, [("mesh", b"XX" + bcast())], Dropped(Drop.BAD_MAGIC, "mesh")),
    ("mesh-short", None, [("mesh", b"CX\x01")], Dropped(Drop.SHORT, "mesh")),
    (
        "mesh-probe-kind",
        None,
        [("mesh", envelope(b"\x1b\xd4", kind=KIND_PROBE))],
        Dropped(Drop.BAD_KIND, "mesh"),
    ),
    ("mesh-hop-limit", None, [("mesh", envelope(hops=HOP_LIMIT))], Dropped(Drop.HOP_LIMIT, "mesh")),
    ("mesh-same-seq-twice", None, [("mesh", envelope())] * 2, Dropped(Drop.DUPLICATE, "mesh")),
    (
        "mesh-same-frame-twice",
        None,
        [("mesh", encode_snowsignal(bcast()))] * 2,
        Dropped(Drop.DUPLICATE, "eth0"),
    ),
    (
        "mesh-unauthenticated",
        SECRET,
        [("mesh", encode_snowsignal(bcast()))],
        Dropped(Drop.UNAUTHENTICATED, "mesh"),
    ),
    ("mesh-untagged", SECRET, [("mesh", envelope())], Dropped(Drop.UNAUTHENTICATED, "mesh")),
    (
        "mesh-other-secret",
        SECRET,
        [("mesh", envelope(secret=b"one"))],
        Dropped(Drop.BAD_TAG, "mesh"),
    ),
    ("mesh-replay", SECRET, [("mesh", envelope(secret=SECRET))] * 2, Dropped(Drop.REPLAY, "mesh")),
    (
        "mesh-tag-unexpected",
        None,
        [("mesh", envelope(secret=SECRET))],
        Dropped(Drop.UNEXPECTED_TAG, "mesh"),
    ),
]


@pytest.mark.parametrize(
    ("secret", "inputs", "drop"), [c[1:] for c in DROP_CASES], ids=[c[0] for c in DROP_CASES]
)
def test_each_drop_is_counted_and_recorded_with_its_reason(
    secret: bytes | None, inputs: list[Input], drop: Dropped
) -> None:
    r = relay(relay_id=2, secret=secret)
    for i, (where, data) in enumerate(inputs):
        r.take_events()
        now = NOW + i * 0.1
        out = capture(r, "eth0", data, now) if where == "capture" else mesh(r, data, now)
    assert out == NOTHING
    assert r.take_events() == [drop]
    dropped = {k[1]: v for k, v in r.counters.items() if k[0] == "dropped"}
    assert dropped == {drop.reason: 1}


def test_every_codec_reason_is_a_drop_reason() -> None:
    # The engine turns FrameError/EnvelopeError reasons into Drop(reason): a reason without a
    # member would raise ValueError in the packet path (a counted internal error, not a drop).
    frame_reasons = ("short", "not-ipv4", "bad-ip-header", "bad-ip-checksum", "not-udp")
    frame_reasons += ("fragment", "bad-length", "too-long")  # frames.FrameError's docstring
    for reason in (*ENVELOPE_ERROR_REASONS, *frame_reasons):
        assert Drop(reason).value == reason


@pytest.mark.parametrize("hops", range(HOP_LIMIT))
def test_a_datagram_below_the_hop_limit_is_relayed(hops: int) -> None:
    assert len(emits(mesh(relay(relay_id=2), envelope(hops=hops), NOW))) == 1


def test_what_a_relay_sends_to_the_mesh_has_crossed_no_relay() -> None:
    # Validation forbids mesh -> mesh, so a relay only ever originates envelopes: hops 0.
    (datagram,) = mesh_datagrams(capture(relay(), "eth0", bcast(), NOW))
    assert CrosscastCodec(None).decode(datagram, NOW).hops == 0


def test_events_are_taken_once_and_oldest_first() -> None:
    r = relay(relay_id=2)
    capture(r, "eth0", UNICAST, NOW)
    mesh(r, b"XX", NOW)
    assert r.take_events() == [
        Dropped(Drop.NOT_BROADCAST, "eth0"),
        Dropped(Drop.BAD_MAGIC, "mesh"),
    ]
    assert r.take_events() == []


def test_a_relay_heard_on_a_segment_is_recorded_once() -> None:
    low, high = relay(relay_id=5), relay(relay_id=9)
    (probe_high,) = probes(high, NOW)
    capture(low, "eth0", probe_high.frame, NOW)
    capture(low, "eth0", probe_high.frame, NOW + 1)
    assert low.take_events() == [
        RelayJoined(origin=9, mac=probe_high.frame[6:12], iface="eth0", designated=True)
    ]


def test_broadcast_to_relayed_port_goes_to_the_mesh() -> None:
    a = relay()
    out = capture(a, "eth0", bcast(), NOW)
    assert len(mesh_datagrams(out)) == 1
    assert a.counters["rule", "snowsignal-out"] == 1


def test_frame_crosses_the_mesh_with_relay_mac_kept_source_and_rewritten_destination() -> None:
    a, b = relay(relay_id=1), relay(relay_id=2)
    (datagram,) = mesh_datagrams(capture(a, "eth0", bcast(), NOW))
    (emit,) = emits(mesh(b, datagram, NOW))
    out = Ether(emit.frame)
    assert emit.interface == "eth0"
    assert out.src == "02:cc:00:00:00:02"
    assert out[IP].src == "10.0.1.11"
    assert out[IP].dst == "10.0.2.255"
    assert out[UDP].payload.load == b"search"


def test_rewritten_frame_has_correct_checksums() -> None:
    a, b = relay(relay_id=1), relay(relay_id=2)
    (datagram,) = mesh_datagrams(capture(a, "eth0", bcast(), NOW))
    (emit,) = emits(mesh(b, datagram, NOW))
    pkt = Ether(emit.frame)
    ip_sum, udp_sum = pkt[IP].chksum, pkt[UDP].chksum
    del pkt[IP].chksum
    del pkt[UDP].chksum
    rebuilt = Ether(bytes(pkt))
    assert (ip_sum, udp_sum) == (rebuilt[IP].chksum, rebuilt[UDP].chksum)


def test_limited_broadcast_destination_is_kept() -> None:
    a, b = relay(relay_id=1), relay(relay_id=2)
    (datagram,) = mesh_datagrams(capture(a, "eth0", bcast(dst="255.255.255.255"), NOW))
    (emit,) = emits(mesh(b, datagram, NOW))
    assert Ether(emit.frame)[IP].dst == "255.255.255.255"


def test_malformed_mesh_datagram_is_dropped_without_action() -> None:
    b = relay(relay_id=2)
    for junk in (b"", b"SS", b"SS" + b"\x00" * 30, b"CX\x01", bytes(range(256))):
        assert mesh(b, junk, NOW) == NOTHING
    assert sum(v for k, v in b.counters.items() if k[0] == "dropped") == 5


def test_snowsignal_format_round_trip() -> None:
    a = relay(relay_id=1, mesh_format="snowsignal")
    b = relay(relay_id=2, mesh_format="snowsignal")
    (datagram,) = mesh_datagrams(capture(a, "eth0", bcast(), NOW))
    assert datagram.startswith(b"SS")
    assert len(emits(mesh(b, datagram, NOW))) == 1


def test_authenticated_round_trip_and_replay_is_dropped() -> None:
    a, b = relay(relay_id=1, secret=SECRET), relay(relay_id=2, secret=SECRET)
    (datagram,) = mesh_datagrams(capture(a, "eth0", bcast(), NOW))
    assert len(emits(mesh(b, datagram, NOW))) == 1
    assert mesh(b, datagram, NOW + 0.5) == NOTHING
    assert mesh(b, datagram, NOW + 5) == NOTHING


def test_same_frame_from_two_peers_is_emitted_once() -> None:
    b = relay(relay_id=2)
    datagram = encode_snowsignal(bcast())
    assert len(emits(mesh(b, datagram, NOW))) == 1
    assert mesh(b, datagram, NOW + 0.1) == NOTHING
    assert b.counters["dropped", "duplicate"] == 1


def test_frame_just_emitted_and_captured_again_is_not_relayed_back() -> None:
    b = relay(relay_id=2)
    (emit,) = emits(mesh(b, encode_snowsignal(bcast()), NOW))
    # another relay on the segment re-emits it with its own MAC; we capture that copy
    copy = emit.frame[:6] + SENDER_MAC + emit.frame[12:]
    assert parse_udp_frame(copy).payload == b"search"
    assert capture(b, "eth0", copy, NOW + 0.2) == NOTHING
    assert b.counters["dropped", "duplicate"] == 1


def test_identical_payload_after_the_window_is_relayed_again() -> None:
    b = relay(relay_id=2)
    datagram = encode_snowsignal(bcast())
    assert len(emits(mesh(b, datagram, NOW))) == 1
    b.on_tick(NOW + 2)
    assert len(emits(mesh(b, datagram, NOW + 2))) == 1


def test_talking_to_itself_rebroadcasts_on_the_same_segment() -> None:
    a = relay(relay_id=1)
    (datagram,) = mesh_datagrams(capture(a, "eth0", bcast(), NOW))
    (emit,) = emits(mesh(a, datagram, NOW, from_self=True))
    assert Ether(emit.frame).src == "02:cc:00:00:00:01"


def probes(r: Relay, now: float) -> list[Emit]:
    return emits(r.on_tick(now))


def test_relays_on_one_segment_elect_the_lowest_id() -> None:
    low, high = relay(relay_id=5), relay(relay_id=9)
    (probe_high,) = probes(high, NOW)
    (reply,) = emits(capture(low, "eth0", probe_high.frame, NOW))
    (answer,) = emits(capture(high, "eth0", reply.frame, NOW))  # high is new to it, too
    assert capture(low, "eth0", answer.frame, NOW) == NOTHING  # and the exchange ends there
    datagram = encode_snowsignal(bcast())
    assert len(emits(mesh(low, datagram, NOW))) == 1
    assert mesh(high, datagram, NOW) == NOTHING
    assert high.counters["dropped", "standby"] == 1


def test_standby_relay_takes_over_when_the_other_goes_quiet() -> None:
    low, high = relay(relay_id=5), relay(relay_id=9)
    (probe_low,) = probes(low, NOW)
    capture(high, "eth0", probe_low.frame, NOW)
    later = NOW + PROBE_HOLD + 1
    high.on_tick(later)
    assert len(emits(mesh(high, encode_snowsignal(bcast()), later))) == 1


def test_frame_from_a_known_relay_mac_is_not_captured() -> None:
    low, high = relay(relay_id=5), relay(relay_id=9)
    (probe_low,) = probes(low, NOW)
    capture(high, "eth0", probe_low.frame, NOW)
    low_mac = probe_low.frame[6:12]
    assert capture(high, "eth0", bcast(src_mac=low_mac), NOW) == NOTHING
    assert high.counters["dropped", "relay-mac"] == 1


def test_probe_with_bad_tag_is_ignored() -> None:
    a = relay(relay_id=5, secret=b"other")
    b = relay(relay_id=9, secret=SECRET)
    (probe,) = probes(a, NOW)
    assert capture(b, "eth0", probe.frame, NOW) == NOTHING
    assert b.segment_peers("eth0") == {}


ROUTER_RULES = (
    "gps from eth0 to eth2,eth3 port 10110;"
    "emergency from eth3 to eth0,eth2 port 5000;"
    "video from eth0 to eth2 group 233.54.12.234 port 22001"
)
ROUTER_IFACES = (
    iface("eth0", 0x10, "10.0.1.3"),
    iface("eth2", 0x12, "10.0.2.3"),
    iface("eth3", 0x13, "10.0.3.3"),
)


def router() -> Relay:
    return relay(ROUTER_RULES, interfaces=ROUTER_IFACES)


def test_router_rule_emits_on_each_egress_with_its_mac_and_broadcast() -> None:
    out = emits(capture(router(), "eth0", bcast(port=10110), NOW))
    got = {(e.interface, Ether(e.frame).src, Ether(e.frame)[IP].dst) for e in out}
    assert got == {
        ("eth2", "02:cc:00:00:00:12", "10.0.2.255"),
        ("eth3", "02:cc:00:00:00:13", "10.0.3.255"),
    }


def test_router_rule_is_one_way() -> None:
    r = router()
    gps_from_vlan2 = bcast(dst="10.0.2.255", src="10.0.2.11", port=10110)
    assert capture(r, "eth2", gps_from_vlan2, NOW) == NOTHING


def test_multicast_keeps_group_and_uses_group_mac_with_ttl_at_least_one() -> None:
    (emit,) = emits(capture(router(), "eth0", bcast(dst="233.54.12.234", port=22001, ttl=1), NOW))
    pkt = Ether(emit.frame)
    assert (emit.interface, pkt.dst, pkt[IP].dst, pkt[IP].ttl) == (
        "eth2",
        "01:00:5e:36:0c:ea",
        "233.54.12.234",
        1,
    )


def test_multicast_to_unconfigured_group_is_dropped() -> None:
    r = router()
    assert capture(r, "eth0", bcast(dst="239.1.2.3", port=22001), NOW) == NOTHING


def test_partial_checksum_from_local_sender_is_completed() -> None:
    frame = bytearray(bcast(port=10110))
    frame[40:42] = b"\x12\x34"  # what a local sender leaves: a partial (pseudo-header) sum
    out = emits(capture(router(), "eth0", bytes(frame), NOW, partial=True))
    pkt = Ether(out[0].frame)
    got = pkt[UDP].chksum
    del pkt[UDP].chksum
    assert got == Ether(bytes(pkt))[UDP].chksum


@pytest.mark.parametrize(
    ("rules", "source", "relayed"),
    [
        ("g from eth0 to eth2 port 10110 allow 10.0.1.11/32", "10.0.1.11", True),
        ("g from eth0 to eth2 port 10110 allow 10.0.1.11/32", "10.0.1.12", False),
        ("g from eth0 to eth2 port 10110 deny 10.0.1.12/32", "10.0.1.12", False),
        ("g from eth0 to eth2 port 10110 deny 10.0.1.12/32", "10.0.1.13", True),
    ],
)
def test_source_cidrs(rules: str, source: str, relayed: bool) -> None:
    r = relay(rules, interfaces=ROUTER_IFACES)
    assert bool(capture(r, "eth0", bcast(port=10110, src=source), NOW).emits) is relayed


def test_partial_checksum_arriving_from_a_snowsignal_peer_is_completed() -> None:
    frame = bytearray(bcast(dst="255.255.255.255"))  # destination kept: no rewrite would fix it
    frame[40:42] = b"\x2a\xbe"  # SnowSignal forwards the partial sum its kernel captured
    (emit,) = emits(mesh(relay(relay_id=2), encode_snowsignal(bytes(frame)), NOW))
    pkt = Ether(emit.frame)
    got = pkt[UDP].chksum
    del pkt[UDP].chksum
    assert got == Ether(bytes(pkt))[UDP].chksum


def test_duplicate_window_never_holds_more_than_its_capacity_and_keeps_the_newest() -> None:
    window = DuplicateWindow(window=1.0, capacity=4)
    window.expire(NOW)
    for key in range(1000):
        window.add(key)
        window.expire(NOW)  # the engine expires once per drain; here a drain is one frame
        assert len(window) <= 4
    assert 998 in window
    assert 999 in window
    assert 0 not in window


def test_the_duplicate_windows_stay_bounded_when_every_frame_is_its_own_drain() -> None:
    # One instant, so no window is due to rotate: only the count of frames taken in makes the
    # engine look at them.
    r = router()
    frames = [
        bcast(port=10110, payload=i.to_bytes(4, "big")) for i in range(2 * DUPLICATE_CAPACITY)
    ]
    for frame in frames:
        capture(r, "eth0", frame, NOW)
    assert all(len(w) <= DUPLICATE_CAPACITY + EXPIRE_EVERY for w in r._recent.values())
    assert capture(r, "eth0", frames[-1], NOW) == NOTHING  # the newest are still remembered
    assert r.counters["dropped", "duplicate"] == 1


def test_duplicate_window_remembers_for_one_window_and_forgets_after_two() -> None:
    window = DuplicateWindow(window=1.0, capacity=100)
    window.expire(NOW)
    window.add("a")
    window.expire(NOW + 0.5)
    assert "a" in window
    window.expire(NOW + 1.0)
    assert "a" in window  # between one and two windows old: still remembered
    window.expire(NOW + 2.0)
    assert "a" not in window


def test_duplicate_window_forgets_everything_after_an_idle_spell() -> None:
    window = DuplicateWindow(window=1.0, capacity=100)
    window.expire(NOW)
    window.add("a")
    window.expire(NOW + 5)
    assert "a" not in window


# -- the fast path: batches, cached decisions, counters -----------------------------------------


def drain(r: Relay, iface: str, frames: list[bytes], now: float = NOW) -> Output:
    return r.on_capture(iface, [(f, 0) for f in frames], now)


def searches(n: int, size: int = 64) -> list[bytes]:
    return [bcast(payload=i.to_bytes(2, "big") * (size // 2)) for i in range(n)]


def test_the_mesh_frames_of_one_drain_leave_in_one_datagram() -> None:
    a, b = relay(relay_id=1), relay(relay_id=2)
    (datagram,) = mesh_datagrams(drain(a, "eth0", searches(5)))
    assert CrosscastCodec(None).decode(datagram, NOW).kind == KIND_BATCH
    out = emits(mesh(b, datagram, NOW))
    assert [Ether(e.frame)[UDP].payload.load for e in out] == [
        i.to_bytes(2, "big") * 32 for i in range(5)
    ]


def test_a_drain_too_large_for_one_datagram_is_split_under_the_mesh_bound() -> None:
    a = relay(relay_id=1, secret=SECRET)
    datagrams = mesh_datagrams(drain(a, "eth0", searches(40, size=200)))
    assert len(datagrams) > 1
    assert all(len(d) <= MESH_DATAGRAM_MAX for d in datagrams)
    b = relay(relay_id=2, secret=SECRET)
    assert sum(len(emits(mesh(b, d, NOW))) for d in datagrams) == 40


def test_the_snowsignal_format_stays_one_frame_per_datagram() -> None:
    a = relay(relay_id=1, mesh_format="snowsignal")
    datagrams = mesh_datagrams(drain(a, "eth0", searches(3)))
    assert [d[:2] for d in datagrams] == [b"SS"] * 3


def test_a_batch_with_a_bad_frame_relays_the_good_ones() -> None:
    good, bad = bcast(), bcast(port=22)
    body = b"".join(len(f).to_bytes(2, "big") + f for f in (bad, good))
    datagram = CrosscastCodec(None).seal(KIND_BATCH, 77, 0, 0, int(NOW * 1000), body)
    r = relay(relay_id=2)
    assert len(emits(mesh(r, datagram, NOW))) == 1
    assert r.take_events() == [Dropped(Drop.NO_RULE, "mesh")]


def test_a_batch_whose_lengths_do_not_add_up_is_dropped_whole() -> None:
    body = len(bcast()).to_bytes(2, "big") + bcast() + b"\x00\x09abc"
    datagram = CrosscastCodec(None).seal(KIND_BATCH, 77, 0, 0, int(NOW * 1000), body)
    r = relay(relay_id=2)
    assert mesh(r, datagram, NOW) == NOTHING
    assert r.take_events() == [Dropped(Drop.BAD_BATCH, "mesh")]


def test_a_new_interface_address_is_used_at_once_by_cached_decisions() -> None:
    r = router()
    (first, _) = emits(capture(r, "eth0", bcast(port=10110, payload=b"1"), NOW))
    assert Ether(first.frame)[IP].dst == "10.0.2.255"
    r.update_interface(iface("eth2", 0x22, "10.0.7.3"))
    out = {e.interface: Ether(e.frame) for e in emits(capture(r, "eth0", bcast(port=10110), NOW))}
    assert (out["eth2"][IP].dst, out["eth2"].src) == ("10.0.7.255", "02:cc:00:00:00:22")


def test_counters_survive_the_decisions_being_worked_out_anew() -> None:
    r = router()
    capture(r, "eth0", bcast(port=10110, payload=b"1"), NOW)
    r.update_interface(ROUTER_IFACES[1])
    capture(r, "eth0", bcast(port=10110, payload=b"2"), NOW)
    assert r.counters["rule", "gps"] == 2
    assert r.counters["emitted", "eth2"] == 2
    assert r.counters["captured", "eth0"] == 2


def test_decisions_per_source_keep_source_filters_exact() -> None:
    r = relay("g from eth0 to eth2 port 10110 allow 10.0.1.11/32", interfaces=ROUTER_IFACES)
    srcs = ["10.0.1.11", "10.0.1.12", "10.0.1.11", "10.0.1.12"]
    got = [
        bool(capture(r, "eth0", bcast(port=10110, src=s, payload=bytes([i])), NOW).emits)
        for i, s in enumerate(srcs)
    ]
    assert got == [True, False, True, False]


def test_the_decision_cache_is_bounded() -> None:
    r = relay("g from eth0 to eth2 port 10110 allow 10.0.0.0/8", interfaces=ROUTER_IFACES)
    for i in range(DECISION_CAPACITY + 10):
        capture(r, "eth0", bcast(port=10110, src=f"10.1.{i >> 8}.{i & 0xFF}"), NOW)
    assert len(r._decisions["eth0"]) <= DECISION_CAPACITY
    assert r.counters["rule", "g"] == DECISION_CAPACITY + 10


def test_frames_of_equal_length_from_one_sender_are_not_duplicates() -> None:
    # Linux sends UDP with DF set and IP id 0: only the payload tells two searches apart.
    r = router()
    out = drain(
        r, "eth0", [bcast(port=10110, payload=b"search 1"), bcast(port=10110, payload=b"search 2")]
    )
    assert len(out.emits) == 4


def test_every_frame_of_a_drain_is_counted_once() -> None:
    r = relay(relay_id=1)
    drain(r, "eth0", [*searches(3), UNICAST])
    assert r.counters["captured", "eth0"] == 4
    assert r.counters["rule", "snowsignal-out"] == 3
    assert r.counters["dropped", "not-broadcast"] == 1
