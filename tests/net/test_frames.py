"""Unit tests of crosscast.net.frames: parse, classify, rewrite, build, probes, checksums. Pure."""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet

from crosscast.net.frames import (
    BROADCAST_MAC,
    ETH_HLEN,
    ETH_P_CROSSCAST_PROBE,
    LIMITED_BROADCAST,
    MAX_FRAME_LEN,
    FrameError,
    ProbeFrame,
    UdpFrame,
    broadcast_address,
    build_probe_frame,
    build_udp_frame,
    checksum_delta,
    complete_udp_checksum,
    ip_checksum,
    ip_from_str,
    ip_to_str,
    is_multicast,
    is_probe_frame,
    looks_like_directed_broadcast,
    mac_from_str,
    mac_to_str,
    multicast_mac,
    parse_probe_frame,
    parse_udp_frame,
    rewrite_for_egress,
    rewrite_incremental,
    udp_checksum,
    udp_offset,
)

SENDER_MAC = "02:00:00:00:00:01"
SENDER_MAC_BYTES = mac_from_str(SENDER_MAC)
RELAY_MAC = mac_from_str("02:00:00:00:00:99")
SENDER_IP = "10.0.1.5"
DIRECTED = "10.0.1.255"
EGRESS_DIRECTED = "10.0.2.255"


def udp_packet(
    *,
    dst: str = DIRECTED,
    dport: int = 5076,
    payload: bytes = b"pva search",
    chksum: int | None = None,
    **ip_fields: Any,
) -> Packet:
    udp = (
        UDP(sport=40000, dport=dport)
        if chksum is None
        else UDP(sport=40000, dport=dport, chksum=chksum)
    )
    ip = IP(src=SENDER_IP, dst=dst, id=4242, ttl=64, **ip_fields)
    pkt: Packet = Ether(src=SENDER_MAC, dst="ff:ff:ff:ff:ff:ff") / ip / udp / payload
    return pkt


def udp_bytes(**kwargs: Any) -> bytes:
    return bytes(udp_packet(**kwargs))


def rebuilt_checksums(frame: bytes) -> tuple[int, int]:
    """The IP and UDP checksums scapy computes for `frame`'s headers and payload."""
    pkt = Ether(frame)
    del pkt[IP].chksum
    del pkt[UDP].chksum
    again = Ether(bytes(pkt))
    return again[IP].chksum, again[UDP].chksum


def assert_rejected(frame: bytes, reason: str) -> None:
    # udp_offset (the relay's per-frame validation) must reject exactly what parse rejects.
    for validate in (parse_udp_frame, udp_offset):
        with pytest.raises(FrameError) as info:
            validate(frame)
        assert info.value.reason == reason


# --- parse -----------------------------------------------------------------------------------


def test_parse_reads_addresses_ports_ttl_and_checksum() -> None:
    pkt = udp_packet()
    f = parse_udp_frame(bytes(pkt))
    assert f.dst_mac == BROADCAST_MAC
    assert f.src_mac == mac_from_str(SENDER_MAC)
    assert f.src_ip == ip_from_str(SENDER_IP)
    assert f.dst_ip == ip_from_str(DIRECTED)
    assert (f.ttl, f.ihl, f.src_port, f.dst_port) == (64, 20, 40000, 5076)
    assert f.udp_checksum == Ether(bytes(pkt))[UDP].chksum


def test_parse_payload_is_the_udp_payload() -> None:
    assert parse_udp_frame(udp_bytes(payload=b"\x00abc\xff")).payload == b"\x00abc\xff"


def test_parse_trims_ethernet_padding() -> None:
    frame = udp_bytes(payload=b"x")
    padded = frame + b"\x00" * (60 - len(frame))
    f = parse_udp_frame(padded)
    assert f.frame == frame
    assert f.payload == b"x"


def test_parse_finds_udp_after_ip_options() -> None:
    f = parse_udp_frame(udp_bytes(options=[IPOption_NOP()] * 4, dport=6000))
    assert f.ihl == 24
    assert f.dst_port == 6000
    assert f.payload == b"pva search"


def test_parse_accepts_bytearray_and_stores_bytes() -> None:
    f = parse_udp_frame(bytearray(udp_bytes()))  # type: ignore[arg-type]
    assert type(f.frame) is bytes


def test_frame_error_is_a_value_error_with_reason() -> None:
    error = FrameError("short")
    assert isinstance(error, ValueError)
    assert error.reason == "short"


def test_frame_shorter_than_headers_is_short() -> None:
    assert_rejected(udp_bytes(payload=b"")[:41], "short")


def test_frame_truncated_below_ip_total_length_is_short() -> None:
    assert_rejected(udp_bytes(payload=b"0123456789")[:-1], "short")


def test_frame_longer_than_jumbo_is_too_long() -> None:
    frame = udp_bytes(payload=b"x" * (MAX_FRAME_LEN - 42 + 1))
    assert len(frame) == MAX_FRAME_LEN + 1
    assert_rejected(frame, "too-long")


def test_jumbo_frame_at_the_limit_is_accepted() -> None:
    frame = udp_bytes(payload=b"x" * (MAX_FRAME_LEN - 42))
    assert len(parse_udp_frame(frame).frame) == MAX_FRAME_LEN


def test_arp_is_not_ipv4() -> None:
    frame = bytes(Ether(src=SENDER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP() / (b"\x00" * 20))
    assert_rejected(frame, "not-ipv4")


def test_ipv6_is_not_ipv4() -> None:
    frame = bytes(Ether() / IPv6(dst="ff02::1") / UDP(dport=5076) / b"pva search")
    assert_rejected(frame, "not-ipv4")


def test_ip_version_other_than_4_is_a_bad_ip_header() -> None:
    frame = udp_bytes(version=6)
    assert_rejected(frame, "bad-ip-header")


def test_ihl_below_five_words_is_a_bad_ip_header() -> None:
    assert_rejected(udp_bytes(ihl=4), "bad-ip-header")


def test_total_length_below_ihl_is_a_bad_ip_header() -> None:
    assert_rejected(udp_bytes(len=19), "bad-ip-header")


def test_wrong_ip_header_checksum_is_rejected() -> None:
    frame = bytearray(udp_bytes())
    frame[24] ^= 0x01  # flip one bit of the header checksum
    assert_rejected(bytes(frame), "bad-ip-checksum")


def test_tcp_is_not_udp() -> None:
    frame = bytes(Ether() / IP(src=SENDER_IP, dst=DIRECTED) / TCP(dport=5076) / b"x")
    assert_rejected(frame, "not-udp")


def test_first_fragment_with_more_fragments_flag_is_a_fragment() -> None:
    assert_rejected(udp_bytes(flags="MF"), "fragment")


def test_non_first_fragment_is_a_fragment() -> None:
    assert_rejected(udp_bytes(frag=10), "fragment")


def test_dont_fragment_flag_is_not_a_fragment() -> None:
    assert parse_udp_frame(udp_bytes(flags="DF")).dst_port == 5076


def test_udp_length_disagreeing_with_ip_length_is_bad_length() -> None:
    pkt = udp_packet()
    pkt[UDP].len = 9
    assert_rejected(bytes(pkt), "bad-length")


def test_ip_payload_shorter_than_udp_header_is_bad_length() -> None:
    # A 20-byte IP header and 4 bytes of "UDP", padded to the Ethernet minimum.
    frame = bytes(Ether() / IP(src=SENDER_IP, dst=DIRECTED, proto=17, len=24) / (b"\x00" * 26))
    assert_rejected(frame, "bad-length")


def test_parse_does_not_check_the_udp_checksum() -> None:
    assert parse_udp_frame(udp_bytes(chksum=0x1234)).udp_checksum == 0x1234


# --- checksums -------------------------------------------------------------------------------


def test_ip_checksum_matches_scapy() -> None:
    frame = udp_bytes(options=[IPOption_NOP()] * 4)
    header = frame[ETH_HLEN : ETH_HLEN + 24]
    assert ip_checksum(header) == Ether(frame)[IP].chksum


def test_ip_checksum_ignores_the_checksum_field() -> None:
    header = bytearray(udp_bytes()[ETH_HLEN : ETH_HLEN + 20])
    expected = struct.unpack_from("!H", header, 10)[0]
    header[10:12] = b"\xab\xcd"
    assert ip_checksum(bytes(header)) == expected


def test_udp_checksum_matches_scapy_for_odd_length_payload() -> None:
    frame = udp_bytes(payload=b"odd")
    segment = frame[ETH_HLEN + 20 :]
    expected = Ether(frame)[UDP].chksum
    assert udp_checksum(ip_from_str(SENDER_IP), ip_from_str(DIRECTED), segment) == expected


def test_udp_checksum_that_computes_to_zero_is_sent_as_ffff() -> None:
    src, dst = ip_from_str(SENDER_IP), ip_from_str(DIRECTED)
    segment = bytearray(struct.pack("!HHHH", 40000, 5076, 12, 0) + b"\x00\x00\x00\x00")
    # Put the complement of the sum into the payload: the total becomes "negative zero".
    segment[8:10] = struct.pack("!H", udp_checksum(src, dst, bytes(segment)))
    assert udp_checksum(src, dst, bytes(segment)) == 0xFFFF


# --- classify --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("224.0.0.1", True),
        ("233.54.12.234", True),
        ("239.255.255.255", True),
        ("223.255.255.255", False),
        ("240.0.0.0", False),
        ("255.255.255.255", False),
    ],
)
def test_is_multicast_is_224_slash_4(address: str, expected: bool) -> None:
    assert is_multicast(ip_from_str(address)) is expected


@pytest.mark.parametrize(
    ("group", "mac"),
    [
        ("233.54.12.234", "01:00:5e:36:0c:ea"),
        ("239.128.0.1", "01:00:5e:00:00:01"),  # the 24th bit is not mapped
        ("224.0.0.251", "01:00:5e:00:00:fb"),
    ],
)
def test_multicast_mac_maps_low_23_bits(group: str, mac: str) -> None:
    assert mac_to_str(multicast_mac(ip_from_str(group))) == mac


@pytest.mark.parametrize(
    ("address", "prefix", "broadcast"),
    [
        ("10.0.1.5", 24, "10.0.1.255"),
        ("10.0.1.5", 25, "10.0.1.127"),
        ("10.0.1.200", 25, "10.0.1.255"),
        ("172.16.3.4", 16, "172.16.255.255"),
        ("10.0.1.5", 0, "255.255.255.255"),
    ],
)
def test_broadcast_address_is_derived_from_the_prefix(
    address: str, prefix: int, broadcast: str
) -> None:
    assert ip_to_str(broadcast_address(ip_from_str(address), prefix)) == broadcast


def test_broadcast_address_rejects_prefix_over_32() -> None:
    with pytest.raises(ValueError, match="prefix"):
        broadcast_address(ip_from_str("10.0.1.5"), 33)


@pytest.mark.parametrize("address", ["10.0.1.255", "10.0.1.127", "10.0.1.3", "192.168.255.255"])
def test_looks_like_directed_broadcast(address: str) -> None:
    assert looks_like_directed_broadcast(ip_from_str(address))


@pytest.mark.parametrize(
    "address",
    [
        "10.0.1.254",  # host part not all ones
        "10.0.1.1",
        "224.0.0.255",  # multicast
        "255.255.255.255",  # the limited broadcast is not a directed one
        "127.0.0.255",
        "0.0.0.255",
    ],
)
def test_does_not_look_like_directed_broadcast(address: str) -> None:
    assert not looks_like_directed_broadcast(ip_from_str(address))


# --- rewrite ---------------------------------------------------------------------------------


def test_directed_broadcast_rewrite_has_new_destination_and_valid_checksums() -> None:
    f = parse_udp_frame(udp_bytes())
    out = rewrite_for_egress(f, src_mac=RELAY_MAC, dst_ip=ip_from_str(EGRESS_DIRECTED))
    pkt = Ether(out)
    assert pkt[IP].dst == EGRESS_DIRECTED
    assert (pkt[IP].chksum, pkt[UDP].chksum) == rebuilt_checksums(out)


def test_rewrite_keeps_ip_source_id_ports_and_payload() -> None:
    f = parse_udp_frame(udp_bytes())
    pkt = Ether(rewrite_for_egress(f, src_mac=RELAY_MAC, dst_ip=ip_from_str(EGRESS_DIRECTED)))
    assert (pkt[IP].src, pkt[IP].id) == (SENDER_IP, 4242)
    assert (pkt[UDP].sport, pkt[UDP].dport) == (40000, 5076)
    assert bytes(pkt[UDP].payload) == b"pva search"


def test_limited_broadcast_rewrite_keeps_ip_header_and_udp_checksum() -> None:
    frame = udp_bytes(dst="255.255.255.255")
    out = rewrite_for_egress(parse_udp_frame(frame), src_mac=RELAY_MAC)
    assert out[ETH_HLEN:] == frame[ETH_HLEN:]
    assert Ether(out)[IP].dst == "255.255.255.255"


def test_rewrite_sets_source_mac_and_keeps_destination_mac() -> None:
    out = rewrite_for_egress(parse_udp_frame(udp_bytes()), src_mac=RELAY_MAC)
    assert out[6:12] == RELAY_MAC
    assert out[0:6] == BROADCAST_MAC


def test_rewrite_replaces_destination_mac_when_given() -> None:
    group_mac = multicast_mac(ip_from_str("233.54.12.234"))
    out = rewrite_for_egress(
        parse_udp_frame(udp_bytes(dst="233.54.12.234")), src_mac=RELAY_MAC, dst_mac=group_mac
    )
    assert out[0:6] == group_mac


def test_rewrite_rejects_a_mac_that_is_not_six_bytes() -> None:
    with pytest.raises(ValueError, match="6 bytes"):
        rewrite_for_egress(parse_udp_frame(udp_bytes()), src_mac=b"\x02" * 5)


def test_rewrite_sets_ttl_with_valid_ip_checksum() -> None:
    out = rewrite_for_egress(parse_udp_frame(udp_bytes()), src_mac=RELAY_MAC, ttl=1)
    pkt = Ether(out)
    assert pkt[IP].ttl == 1
    assert pkt[IP].chksum == rebuilt_checksums(out)[0]


def test_zero_udp_checksum_stays_zero_when_destination_changes() -> None:
    f = parse_udp_frame(udp_bytes(chksum=0))
    out = rewrite_for_egress(f, src_mac=RELAY_MAC, dst_ip=ip_from_str(EGRESS_DIRECTED))
    pkt = Ether(out)
    assert pkt[UDP].chksum == 0
    assert pkt[IP].chksum == rebuilt_checksums(out)[0]


def test_partial_udp_checksum_is_completed_when_asked() -> None:
    # What a local sender's frame looks like before NIC offload: only a partial sum is there.
    f = parse_udp_frame(udp_bytes(dst="255.255.255.255", chksum=0x1234))
    out = rewrite_for_egress(f, src_mac=RELAY_MAC, fix_udp_checksum=True)
    assert Ether(out)[UDP].chksum == rebuilt_checksums(out)[1]


def test_udp_checksum_is_left_alone_when_nothing_requires_it() -> None:
    f = parse_udp_frame(udp_bytes(dst="255.255.255.255", chksum=0x1234))
    out = rewrite_for_egress(f, src_mac=RELAY_MAC)
    assert Ether(out)[UDP].chksum == 0x1234


def test_rewrite_of_padded_frame_is_trimmed() -> None:
    frame = udp_bytes(payload=b"x")
    out = rewrite_for_egress(
        parse_udp_frame(frame + b"\x00" * 20),
        src_mac=RELAY_MAC,
        dst_ip=ip_from_str(EGRESS_DIRECTED),
    )
    assert len(out) == len(frame)


def test_rewrite_with_ip_options_has_valid_checksums() -> None:
    f = parse_udp_frame(udp_bytes(options=[IPOption_NOP()] * 4, payload=b"odd"))
    out = rewrite_for_egress(f, src_mac=RELAY_MAC, dst_ip=ip_from_str(EGRESS_DIRECTED), ttl=3)
    pkt = Ether(out)
    assert (pkt[IP].chksum, pkt[UDP].chksum) == rebuilt_checksums(out)


def test_rewritten_frame_parses_again() -> None:
    f = parse_udp_frame(udp_bytes())
    out = rewrite_for_egress(f, src_mac=RELAY_MAC, dst_ip=ip_from_str(EGRESS_DIRECTED))
    assert parse_udp_frame(out).dst_ip == ip_from_str(EGRESS_DIRECTED)


# --- the relay's per-frame path: udp_offset and rewrite_incremental -------------------------


def _random_frame(rng: random.Random, *, ttl: int, udp_zero: bool = False) -> bytes:
    dst = rng.choice(
        [
            LIMITED_BROADCAST,
            ip_from_str("10.0.1.255"),
            ip_from_str("233.54.12.234"),
            rng.getrandbits(32),
        ]
    )
    frame = build_udp_frame(
        src_mac=rng.randbytes(6),
        dst_mac=BROADCAST_MAC,
        src_ip=rng.getrandbits(32),
        dst_ip=dst,
        src_port=rng.getrandbits(16),
        dst_port=rng.getrandbits(16),
        payload=rng.randbytes(rng.randrange(0, 1473)),
        ttl=ttl,
        ident=rng.getrandbits(16),
        tos=rng.getrandbits(8),
    )
    if udp_zero:
        frame = frame[:40] + b"\x00\x00" + frame[42:]
    return frame


def _full_rewrite(frame: bytes, macs: bytes, new_dst: int) -> bytes:
    """The reference: rewrite_for_egress recomputes both checksums from scratch."""
    f = parse_udp_frame(frame)
    out = rewrite_for_egress(
        f, src_mac=macs[6:], dst_mac=macs[:6], dst_ip=new_dst, ttl=max(1, f.ttl - 1)
    )
    if f.udp_checksum and new_dst == f.dst_ip:  # rewrite_for_egress leaves it alone then
        out = out[:40] + struct.pack("!H", udp_checksum(f.src_ip, new_dst, out[34:])) + out[42:]
    return out


@pytest.mark.parametrize("seed", range(8))
def test_incremental_rewrite_equals_a_full_recompute_on_random_frames(seed: int) -> None:
    rng = random.Random(seed)
    for i in range(250):
        ttl = (1, 2, 64, 255)[i % 4]  # TTL 1 stays 1; the others lose one
        frame = _random_frame(rng, ttl=ttl, udp_zero=i % 7 == 0)
        old_dst = int.from_bytes(frame[30:34], "big")
        new_dst = rng.choice([old_dst, rng.getrandbits(32), LIMITED_BROADCAST])
        macs = rng.randbytes(12)
        new = None if new_dst == old_dst else new_dst.to_bytes(4, "big")
        got = rewrite_incremental(frame, 34, macs, new, checksum_delta(old_dst, new_dst))
        want = _full_rewrite(frame, macs, new_dst)
        if i % 7 == 0:  # no UDP checksum: it stays "none"
            assert got[40:42] == b"\x00\x00"
            want = want[:40] + b"\x00\x00" + want[42:]
        assert bytes(got) == want, (seed, i)


@pytest.mark.parametrize("seed", range(4))
def test_a_partial_checksum_is_completed_in_full(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(100):
        frame = _random_frame(rng, ttl=64)
        partial = frame[:40] + rng.randbytes(2) + frame[42:]  # what a local sender leaves
        if partial[40:42] == b"\x00\x00":
            continue
        old_dst = int.from_bytes(frame[30:34], "big")
        new_dst = rng.getrandbits(32)
        macs = rng.randbytes(12)
        delta = checksum_delta(old_dst, new_dst)
        got = rewrite_incremental(
            partial, 34, macs, new_dst.to_bytes(4, "big"), delta, complete=True
        )
        assert bytes(got) == _full_rewrite(frame, macs, new_dst)
        assert complete_udp_checksum(partial, 34) == frame


def test_a_udp_checksum_that_would_be_zero_is_sent_as_ffff() -> None:
    # Search for a frame whose rewritten checksum computes to 0: it must go out as 0xFFFF.
    rng = random.Random(1)
    for _ in range(400_000):
        frame = build_udp_frame(
            src_mac=SENDER_MAC_BYTES,
            dst_mac=BROADCAST_MAC,
            src_ip=ip_from_str(SENDER_IP),
            dst_ip=ip_from_str(DIRECTED),
            src_port=rng.getrandbits(16),
            dst_port=5076,
            payload=b"x",
        )
        new_dst = ip_from_str(EGRESS_DIRECTED)
        delta = checksum_delta(ip_from_str(DIRECTED), new_dst)
        got = rewrite_incremental(frame, 34, bytes(12), new_dst.to_bytes(4, "big"), delta)
        f = parse_udp_frame(bytes(got))
        if udp_checksum(f.src_ip, f.dst_ip, bytes(got)[34:]) == 0xFFFF:
            assert got[40:42] == b"\xff\xff"
            return
    pytest.fail("no frame with a computed checksum of 0 found")


def test_a_bad_ip_checksum_stays_bad_after_an_incremental_rewrite() -> None:
    frame = bytearray(udp_bytes())
    frame[24] ^= 0x01
    out = rewrite_incremental(bytes(frame), 34, bytes(12), None, 0)
    assert int.from_bytes(out[14:34], "big") % 0xFFFF != 0


def test_udp_offset_takes_the_common_case_without_parsing() -> None:
    frame = udp_bytes()
    assert udp_offset(frame) == (frame, 34)


def test_udp_offset_trims_padding_and_skips_ip_options() -> None:
    padded = udp_bytes(payload=b"x") + bytes(10)
    assert udp_offset(padded) == (padded[:-10], 34)
    with_options = udp_bytes(options=[IPOption_NOP()] * 4)
    assert udp_offset(with_options) == (with_options, 38)


# --- build and text forms --------------------------------------------------------------------


def test_built_frame_has_valid_checksums_and_parses() -> None:
    out = build_udp_frame(
        src_mac=RELAY_MAC,
        dst_mac=BROADCAST_MAC,
        src_ip=ip_from_str(SENDER_IP),
        dst_ip=LIMITED_BROADCAST,
        src_port=40000,
        dst_port=5076,
        payload=b"odd",
        ttl=7,
        ident=99,
    )
    pkt = Ether(out)
    assert (pkt[IP].chksum, pkt[UDP].chksum) == rebuilt_checksums(out)
    f = parse_udp_frame(out)
    assert f == UdpFrame(
        out, BROADCAST_MAC, RELAY_MAC, ip_from_str(SENDER_IP), LIMITED_BROADCAST, 7, 20,
        40000, 5076, pkt[UDP].chksum,
    )  # fmt: skip


def test_built_frame_carries_the_type_of_service() -> None:
    out = build_udp_frame(
        src_mac=RELAY_MAC,
        dst_mac=BROADCAST_MAC,
        src_ip=0,
        dst_ip=LIMITED_BROADCAST,
        src_port=68,
        dst_port=67,
        payload=b"dhcp",
        tos=0x10,
    )
    pkt = Ether(out)
    assert pkt[IP].tos == 0x10
    assert (pkt[IP].chksum, pkt[UDP].chksum) == rebuilt_checksums(out)


# --- segment probes ---------------------------------------------------------------------------


def test_probe_frame_is_a_broadcast_of_the_probe_ethertype() -> None:
    out = build_probe_frame(RELAY_MAC, b"envelope")
    pkt = Ether(out)
    assert (pkt.dst, pkt.src, pkt.type) == ("ff:ff:ff:ff:ff:ff", mac_to_str(RELAY_MAC), 0x88B5)
    assert bytes(pkt.payload) == b"envelope"
    assert ETH_P_CROSSCAST_PROBE == 0x88B5


def test_probe_frame_round_trips() -> None:
    out = build_probe_frame(RELAY_MAC, b"envelope")
    assert is_probe_frame(out)
    assert parse_probe_frame(out) == ProbeFrame(RELAY_MAC, b"envelope")


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (bytes(Ether(type=ETH_P_CROSSCAST_PROBE))[:13], "short"),
        (bytes(udp_packet()), "not-probe"),
        (bytes(Ether(type=ETH_P_CROSSCAST_PROBE)) + bytes(MAX_FRAME_LEN), "too-long"),
    ],
)
def test_parse_probe_frame_rejects(frame: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as exc:
        parse_probe_frame(frame)
    assert exc.value.reason == reason


def test_udp_and_short_frames_are_not_probes() -> None:
    assert not is_probe_frame(bytes(udp_packet()))
    assert not is_probe_frame(b"\x88\xb5")


def test_probe_frame_needs_a_six_byte_mac() -> None:
    with pytest.raises(ValueError, match="6 bytes"):
        build_probe_frame(b"\x02" * 5, b"")


def test_mac_text_round_trips() -> None:
    assert mac_to_str(mac_from_str("02:AB:cd:00:0f:99")) == "02:ab:cd:00:0f:99"


@pytest.mark.parametrize("text", ["02:ab:cd:00:0f", "02:ab:cd:00:0f:zz", "02ab.cd00.0f99", ""])
def test_bad_mac_text_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="MAC"):
        mac_from_str(text)


def test_ip_text_round_trips() -> None:
    assert ip_from_str("233.54.12.234") == 0xE9360CEA
    assert ip_to_str(0xE9360CEA) == "233.54.12.234"


@pytest.mark.parametrize("text", ["10.0.1", "10.0.1.256", "10.0.1.-1", "10.0.1.1.1", "a.b.c.d"])
def test_bad_ip_text_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="IPv4"):
        ip_from_str(text)
