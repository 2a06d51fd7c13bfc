"""Protocol decoding over real wire bytes (tests/relay/data/*.bin, see capture.py there) and
over garbage: a property test feeds random and mutated datagrams and the decoder never raises."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from crosscast.net.frames import build_udp_frame
from crosscast.relay.protocols import (
    BEACON,
    CA,
    PVA,
    SEARCH,
    Decoded,
    DecodeLog,
    decode_payload,
)

DATA = Path(__file__).resolve().parent / "data"
PV = "crosscast:test:pv"


def golden(name: str) -> bytes:
    return (DATA / name).read_bytes()


def little_endian_search(names: list[str], port: int = 5075) -> bytes:
    """A PVA search as a little-endian client (flags bit 7 clear) writes it."""
    body = struct.pack("<I", 7) + b"\x81\0\0\0" + bytes(16) + struct.pack("<H", port)
    body += b"\x01\x03tcp" + struct.pack("<H", len(names))
    for cid, name in enumerate(names):
        body += struct.pack("<I", cid) + bytes([len(name)]) + name.encode()
    return struct.pack("<BBBBI", 0xCA, 2, 0x00, 0x03, len(body)) + body


def ca_beacon(port: int, address: bytes) -> bytes:
    return struct.pack(">HHHHI", 13, 0, port, 0, 42) + address


def test_pvaccess_search_from_p4p_names_the_pv_and_its_reply_port() -> None:
    decoded = decode_payload(golden("pva-search.bin"))
    assert decoded is not None
    assert (decoded.protocol, decoded.kind, decoded.names) == (PVA, SEARCH, (PV,))
    # p4p asks for replies at "this datagram's source" (zeros) on its own UDP port.
    assert decoded.address is not None
    assert decoded.address[0] == "::"
    assert decoded.address[1] == struct.unpack_from(">H", golden("pva-search.bin"), 32)[0]


def test_pvaccess_beacon_from_a_p4p_server_is_a_beacon_with_its_tcp_port() -> None:
    decoded = decode_payload(golden("pva-beacon.bin"))
    assert decoded is not None
    assert (decoded.protocol, decoded.kind, decoded.names) == (PVA, BEACON, ())
    assert decoded.address == ("0.0.0.0", struct.unpack_from(">H", golden("pva-beacon.bin"), 40)[0])


def test_channel_access_search_from_caproto_names_the_pv() -> None:
    assert decode_payload(golden("ca-search.bin")) == Decoded(CA, SEARCH, (PV,))


def test_little_endian_pvaccess_search_with_several_channels() -> None:
    decoded = decode_payload(little_endian_search(["a:b", "c:d"], port=40000))
    assert decoded == Decoded(PVA, SEARCH, ("a:b", "c:d"), ("::", 40000))


def test_pvaccess_control_message_before_the_search_is_skipped() -> None:
    control = struct.pack(">BBBBI", 0xCA, 2, 0x81, 0x02, 1234)  # a set-byte-order message
    decoded = decode_payload(control + golden("pva-search.bin"))
    assert decoded is not None
    assert decoded.names == (PV,)


def test_several_channel_access_searches_in_one_datagram_give_every_name() -> None:
    search = golden("ca-search.bin")
    second = struct.pack(">HHHHII", 6, 8, 5, 13, 2, 2) + b"abc:def\0"
    assert decode_payload(search + second) == Decoded(CA, SEARCH, (PV, "abc:def"))


def test_channel_access_beacon_names_the_server() -> None:
    decoded = decode_payload(ca_beacon(5064, bytes([10, 0, 1, 5])))
    assert decoded == Decoded(CA, BEACON, (), ("10.0.1.5", 5064))


def test_channel_access_search_reply_is_not_a_search() -> None:
    # A server's reply reuses command 6 with its TCP port in the data type field.
    reply = struct.pack(">HHHHII", 6, 8, 5064, 0, 0xFFFFFFFF, 1) + b"\0\x0d" + bytes(6)
    assert decode_payload(reply) is None


def test_truncated_golden_datagrams_decode_to_none() -> None:
    for name in ("pva-search.bin", "pva-beacon.bin", "ca-search.bin"):
        data = golden(name)
        for cut in range(len(data)):
            assert decode_payload(data[:cut]) is None, (name, cut)


def test_unrelated_payloads_decode_to_none() -> None:
    for payload in (b"", b"hello world", b"SS" + bytes(40), bytes(16), b"\xca", b"\xca" * 64):
        assert decode_payload(payload) is None


@settings(max_examples=400, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(payload: bytes) -> None:
    result = decode_payload(payload)
    assert result is None or isinstance(result, Decoded)


@settings(max_examples=600, deadline=None, database=None)
@given(
    st.sampled_from(["pva-search.bin", "pva-beacon.bin", "ca-search.bin"]),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    st.integers(0, 80),
)
def test_mutated_golden_datagrams_never_raise(
    name: str, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(golden(name))
    for position, value in flips:
        data[position % len(data)] = value
    payload = bytes(data[: len(data) - cut % len(data)])
    result = decode_payload(payload)
    assert result is None or isinstance(result, Decoded)


# -- DecodeLog: what --decode-pvaccess logs and counts -------------------------------------------

SOURCE_MAC = b"\x02\x00\x00\x00\x00\x05"


def frame_with(payload: bytes, src_port: int = 40000, dst_port: int = 5076) -> bytes:
    return build_udp_frame(
        src_mac=SOURCE_MAC,
        dst_mac=b"\xff" * 6,
        src_ip=int(IPv4Address("10.0.1.5")),
        dst_ip=int(IPv4Address("10.0.1.255")),
        src_port=src_port,
        dst_port=dst_port,
        payload=payload,
    )


def test_decode_log_names_the_pv_and_the_reply_address() -> None:
    log = DecodeLog()
    line = log.observe(frame_with(golden("pva-search.bin")), "eth0", now=0.0)
    reply_port = struct.unpack_from(">H", golden("pva-search.bin"), 32)[0]
    assert line == (
        f"pva search from 10.0.1.5:40000 on eth0: {PV} (replies to 10.0.1.5:{reply_port})"
    )
    assert log.counts == {("decoded", PVA, SEARCH): 1}


def test_decode_log_channel_access_search_and_beacons() -> None:
    log = DecodeLog()
    ca = log.observe(frame_with(golden("ca-search.bin"), dst_port=5064), "eth2", now=0.0)
    assert ca == f"ca search from 10.0.1.5:40000 on eth2: {PV}"
    beacon = log.observe(frame_with(ca_beacon(5064, bytes(4)), dst_port=5065), "eth2", now=0.0)
    assert beacon == "ca beacon from 10.0.1.5:40000 on eth2: server 10.0.1.5:5064"
    assert log.counts == {("decoded", CA, SEARCH): 1, ("decoded", CA, BEACON): 1}


def test_decode_log_counts_unknown_payloads_without_a_line() -> None:
    log = DecodeLog()
    assert log.observe(frame_with(b"not epics"), "eth0", now=0.0) is None
    assert log.observe(b"\x00" * 20, "eth0", now=0.0) is None  # not even a frame: not counted
    assert log.counts == {("decoded", "unknown", "unknown"): 1}


def test_decode_log_rate_limits_per_protocol_and_says_how_many_it_left_out() -> None:
    log = DecodeLog(burst=2, window=10.0)
    pva, ca = frame_with(golden("pva-search.bin")), frame_with(golden("ca-search.bin"))
    lines = [log.observe(pva, "eth0", now=float(t)) for t in range(5)]
    assert [line is not None for line in lines] == [True, True, False, False, False]
    assert log.observe(ca, "eth0", now=4.0) is not None  # another protocol has its own budget
    later = log.observe(pva, "eth0", now=10.0)
    assert later is not None
    assert later.endswith("(3 more pva messages not logged)")
    assert log.counts["decoded", PVA, SEARCH] == 6
