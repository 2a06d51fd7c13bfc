"""IPv4 fragments: parse, rewrite (checksums), split for the mesh, and the follow-the-first
tracker. Fragments are cut by scapy (tests only) and reassembled by scapy to check the result."""

from __future__ import annotations

import random

import pytest
from scapy.layers.inet import IP, UDP, defragment, fragment
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from crosscast.net.frames import FrameError, ip_from_str, udp_checksum
from crosscast.relay.fragments import (
    Fragment,
    FragmentTracker,
    Pending,
    adjust_checksum,
    parse_fragment,
    rewrite_fragment,
)

PAYLOAD = bytes(random.Random(9).randrange(256) for _ in range(4000))
EGRESS_MAC = bytes.fromhex("02cc00000012")


def datagram(payload: bytes = PAYLOAD, *, dst: str = "10.0.1.255", df: bool = False) -> Packet:
    return (
        Ether(src="02:00:00:00:01:0b", dst="ff:ff:ff:ff:ff:ff")
        / IP(src="10.0.1.11", dst=dst, id=4242, flags="DF" if df else 0)
        / UDP(sport=40000, dport=10110)
        / payload
    )


def fragments(payload: bytes = PAYLOAD, size: int = 1480) -> list[bytes]:
    pkt = datagram(payload)
    return [bytes(Ether(src=pkt.src, dst=pkt.dst) / f) for f in fragment(pkt[IP], fragsize=size)]


def reassembled(frames: list[bytes]) -> Packet:
    """The one IP datagram scapy rebuilds from `frames` (with its checksums recomputed from what
    the frames carried: compare against them)."""
    ips = sorted((Ether(f)[IP] for f in frames), key=lambda ip: int(ip.frag))
    whole = [p for p in defragment(ips) if not (p.flags.MF or p.frag)]
    assert len(whole) == 1
    return IP(bytes(whole[0]))


def udp_checksum_ok(ip: Packet) -> bool:
    raw = bytes(ip[UDP])
    return udp_checksum(ip_from_str(ip.src), ip_from_str(ip.dst), raw) == ip[UDP].chksum


def test_each_fragment_parses_with_one_key_and_only_the_first_has_the_port() -> None:
    parsed = [parse_fragment(f) for f in fragments()]
    assert len(parsed) == 3
    assert len({f.key for f in parsed}) == 1
    assert [f.offset for f in parsed] == [0, 1480, 2960]
    assert [f.more for f in parsed] == [True, True, False]
    assert [f.dst_port for f in parsed] == [10110, None, None]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (bytes(datagram(b"small")), "not-fragment"),
        (bytes(Ether() / IP(flags="MF", proto=6) / (b"x" * 16)), "not-udp"),
        (
            bytes(Ether() / IP(flags="MF", proto=17) / (b"x" * 13)),
            "bad-length",
        ),  # MF, not 8-aligned
        (bytes(Ether() / IP(flags="MF", proto=17, chksum=1) / (b"x" * 16)), "bad-ip-checksum"),
        (bytes(Ether() / IP(frag=8191, proto=17) / (b"x" * 16)), "bad-length"),  # past 65,535
        (bytes(Ether() / IP(flags="MF") / UDP(len=8) / (b"x" * 8)), "bad-length"),
        (bytes(Ether() / IP(flags="MF"))[:30], "short"),
    ],
)
def test_bad_fragments_are_refused_with_a_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as e:
        parse_fragment(frame)
    assert e.value.reason == reason


def test_adjust_checksum_equals_a_full_recompute() -> None:
    rng = random.Random(1)
    for _ in range(200):
        seg = bytes(UDP(sport=1, dport=2, chksum=0) / bytes(rng.randrange(256) for _ in range(33)))
        src, old, new = (rng.getrandbits(32) for _ in range(3))
        before = udp_checksum(src, old, seg)
        assert adjust_checksum(before, old, new) in (udp_checksum(src, new, seg), 0)


def test_rewritten_fragments_reassemble_to_the_datagram_with_valid_checksums() -> None:
    out = [
        rewrite_fragment(parse_fragment(f), src_mac=EGRESS_MAC, dst_mac=b"\xff" * 6,
                         dst_ip=ip_from_str("10.0.2.255"), ttl=63)
        for f in fragments()
    ]  # fmt: skip
    for frame in out:
        ip = Ether(frame)[IP]
        assert (Ether(frame).src, ip.dst, ip.ttl) == ("02:cc:00:00:00:12", "10.0.2.255", 63)
        fresh = ip.copy()
        del fresh.chksum
        assert IP(bytes(fresh)).chksum == ip.chksum
    whole = reassembled(out)
    assert bytes(whole[UDP].payload) == PAYLOAD
    assert udp_checksum_ok(whole)


def test_a_udp_checksum_of_zero_stays_zero() -> None:
    pkt = datagram()
    pkt[UDP].chksum = 0
    frames = [bytes(Ether(src=pkt.src, dst=pkt.dst) / f) for f in fragment(pkt[IP], 1480)]
    first = rewrite_fragment(parse_fragment(frames[0]), src_mac=EGRESS_MAC, dst_mac=b"\xff" * 6,
                             dst_ip=ip_from_str("10.0.2.255"), ttl=63)  # fmt: skip
    assert Ether(first)[UDP].chksum == 0


def frag(offset: int, *, key: bytes = b"k" * 10, size: int = 1000) -> Fragment:
    return Fragment(b"x" * size, key, b"", b"", 0, 0, 64, 20, offset, True, None, None)


def test_fragments_before_their_first_one_are_held_and_released_in_order() -> None:
    tracker: FragmentTracker[str] = FragmentTracker()
    second, third = frag(1480), frag(2960)
    assert tracker.follow("eth0", second, 0.0) is Pending.HELD
    assert tracker.follow("eth0", third, 0.1) is Pending.HELD
    assert tracker.first("eth0", frag(0), "to eth2", 0.2) == [second, third]
    assert tracker.held == 0
    assert tracker.follow("eth0", frag(4440), 0.3) == "to eth2"


def test_the_same_datagram_on_another_interface_is_another_datagram() -> None:
    tracker: FragmentTracker[str] = FragmentTracker()
    tracker.first("eth0", frag(0), "to eth2", 0.0)
    assert tracker.follow("eth3", frag(1480), 0.0) is Pending.HELD


def test_held_fragments_time_out_and_decisions_are_forgotten() -> None:
    tracker: FragmentTracker[str] = FragmentTracker(hold=2.0)
    tracker.follow("eth0", frag(1480, key=b"a" * 10), 0.0)
    tracker.first("eth0", frag(0, key=b"b" * 10), "to eth2", 0.0)
    assert tracker.expire(1.9) == 0
    assert tracker.expire(2.0) == 1
    assert len(tracker) == 0
    assert tracker.follow("eth0", frag(1480, key=b"b" * 10), 2.1) is Pending.HELD


def test_the_hold_is_bounded_in_count_and_bytes() -> None:
    by_count: FragmentTracker[str] = FragmentTracker(max_held=2)
    by_bytes: FragmentTracker[str] = FragmentTracker(max_held_bytes=2500)
    for tracker in (by_count, by_bytes):
        results = [tracker.follow("eth0", frag(8, key=bytes([i]) * 10), 0.0) for i in range(3)]
        assert results == [Pending.HELD, Pending.HELD, Pending.OVERFLOW]


def test_decisions_are_bounded() -> None:
    tracker: FragmentTracker[str] = FragmentTracker(max_datagrams=2)
    for i in range(3):
        tracker.first("eth0", frag(0, key=bytes([i]) * 10), f"d{i}", 0.0)
    assert tracker.follow("eth0", frag(8, key=bytes([0]) * 10), 0.0) is Pending.HELD
    assert tracker.follow("eth0", frag(8, key=bytes([2]) * 10), 0.0) == "d2"
