"""Unit tests of crosscast.net.bpf: what the capture and lease programs accept, by interpreter."""

from __future__ import annotations

import socket
import struct
import sys
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from crosscast.net.bpf import (
    BPF_MAXINSNS,
    DROP_ALL,
    CaptureSpec,
    Instruction,
    assemble,
    capture_program,
    run_program,
    udp_port_program,
)
from crosscast.net.frames import ETH_P_CROSSCAST_PROBE, LIMITED_BROADCAST, ip_from_str
from crosscast.net.packet import attach_filter

SNAPLEN = 0x40000
DIRECTED = "10.0.1.255"
GROUP = "233.54.12.234"
SPEC = CaptureSpec(
    broadcast_ports=((5076, 5076), (6000, 6010)),
    broadcast_addrs=(LIMITED_BROADCAST, ip_from_str(DIRECTED)),
    groups=((ip_from_str(GROUP), ((22001, 22001),)),),
)
PROGRAM = capture_program(SPEC)


def udp_frame(dst: str = DIRECTED, dport: int = 5076, **ip_fields: Any) -> bytes:
    return bytes(
        Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff")
        / IP(src="10.0.1.5", dst=dst, **ip_fields)
        / UDP(sport=40000, dport=dport)
        / b"payload"
    )


def accepts(frame: bytes, program: list[Instruction] = PROGRAM) -> bool:
    result = run_program(program, frame)
    assert result in (0, SNAPLEN)
    return result == SNAPLEN


def assert_kernel_shaped(program: list[Instruction]) -> None:
    """What the kernel's classic BPF checker demands of jumps and the last instruction."""
    assert 0 < len(program) <= BPF_MAXINSNS
    for pc, (code, jt, jf, _k) in enumerate(program):
        assert 0 <= jt <= 255
        assert 0 <= jf <= 255
        if code == 0x05:  # ja: its 32-bit offset lands inside the program
            assert pc + 1 + _k < len(program)
        elif code & 0x07 == 0x05:  # BPF_JMP: both targets inside the program
            assert pc + 1 + max(jt, jf) < len(program)
    assert program[-1][0] == 0x06  # ret #k


# --- broadcast -------------------------------------------------------------------------------


def test_limited_broadcast_to_relayed_port_is_accepted() -> None:
    assert accepts(udp_frame(dst="255.255.255.255"))


def test_directed_broadcast_to_relayed_port_is_accepted() -> None:
    assert accepts(udp_frame(dst=DIRECTED))


def test_directed_broadcast_of_another_subnet_is_rejected() -> None:
    assert not accepts(udp_frame(dst="10.0.2.255"))


def test_broadcast_to_other_port_is_rejected() -> None:
    assert not accepts(udp_frame(dport=5075))


@pytest.mark.parametrize(("port", "expected"), [(5999, False), (6000, True), (6005, True),
                                                (6010, True), (6011, False)])  # fmt: skip
def test_port_range_bounds_are_inclusive(port: int, expected: bool) -> None:
    assert accepts(udp_frame(dport=port)) is expected


def test_range_starting_at_port_zero_is_accepted() -> None:
    spec = CaptureSpec(broadcast_ports=((0, 10),), broadcast_addrs=(LIMITED_BROADCAST,), groups=())
    program = capture_program(spec)
    assert accepts(udp_frame(dst="255.255.255.255", dport=0), program)
    assert accepts(udp_frame(dst="255.255.255.255", dport=10), program)
    assert not accepts(udp_frame(dst="255.255.255.255", dport=11), program)


def test_overlapping_ranges_are_merged() -> None:
    spec = CaptureSpec(
        broadcast_ports=((5000, 5010), (5005, 5020), (5021, 5021)),
        broadcast_addrs=(LIMITED_BROADCAST,),
        groups=(),
    )
    program = capture_program(spec)
    assert all(
        accepts(udp_frame(dst="255.255.255.255", dport=p), program) for p in (5000, 5015, 5021)
    )
    assert not accepts(udp_frame(dst="255.255.255.255", dport=5022), program)


def test_unicast_to_relayed_port_is_rejected() -> None:
    assert not accepts(udp_frame(dst="10.0.1.7"))


# --- multicast -------------------------------------------------------------------------------


def test_group_to_its_port_is_accepted() -> None:
    assert accepts(udp_frame(dst=GROUP, dport=22001))


def test_group_to_a_broadcast_port_is_rejected() -> None:
    assert not accepts(udp_frame(dst=GROUP, dport=5076))


def test_broadcast_to_a_group_port_is_rejected() -> None:
    assert not accepts(udp_frame(dst=DIRECTED, dport=22001))


def test_other_group_is_rejected() -> None:
    assert not accepts(udp_frame(dst="233.54.12.235", dport=22001))


def test_group_with_no_ports_is_rejected() -> None:
    spec = CaptureSpec(broadcast_ports=(), broadcast_addrs=(), groups=((ip_from_str(GROUP), ()),))
    assert not accepts(udp_frame(dst=GROUP, dport=22001), capture_program(spec))


# --- what is not UDP/IPv4 ----------------------------------------------------------------------


def test_first_fragment_to_a_relayed_port_is_accepted() -> None:
    # It carries the UDP header: the engine matches it like a datagram, and the rest follow it.
    assert accepts(udp_frame(flags="MF"))


def test_first_fragment_to_another_port_is_rejected() -> None:
    assert not accepts(udp_frame(dport=5077, flags="MF"))


def later_fragment(dst: str, **ip_fields: Any) -> bytes:
    # No UDP header: whatever sits where the port would be must not matter.
    return bytes(
        Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff")
        / IP(src="10.0.1.5", dst=dst, proto=17, frag=185, **ip_fields)
        / (b"\x00\x01\x02\x03" * 8)
    )


@pytest.mark.parametrize("dst", [DIRECTED, "255.255.255.255", GROUP])
def test_later_fragment_to_a_relayed_destination_is_accepted(dst: str) -> None:
    assert accepts(later_fragment(dst))
    assert accepts(later_fragment(dst, flags="MF"))


@pytest.mark.parametrize("dst", ["10.0.1.7", "10.0.2.255", "233.54.12.235"])
def test_later_fragment_to_another_destination_is_rejected(dst: str) -> None:
    assert not accepts(later_fragment(dst))


def test_later_fragment_of_tcp_is_rejected() -> None:
    assert not accepts(bytes(Ether() / IP(dst=DIRECTED, proto=6, frag=185) / (b"x" * 16)))


def test_later_fragments_to_many_groups_keep_the_jumps_short() -> None:
    groups = tuple(
        (ip_from_str(f"233.1.{i // 250}.{i % 250 + 1}"), ((9000, 9000),)) for i in range(600)
    )
    program = capture_program(CaptureSpec(((5076, 5076),), (LIMITED_BROADCAST,), groups))
    assert_kernel_shaped(program)
    assert accepts(later_fragment("233.1.2.1"), program)
    assert accepts(later_fragment("233.1.0.1"), program)
    assert not accepts(later_fragment("233.1.9.1"), program)
    assert accepts(udp_frame("233.1.1.5", 9000), program)


def test_dont_fragment_flag_is_accepted() -> None:
    assert accepts(udp_frame(flags="DF"))


def test_tcp_is_rejected() -> None:
    frame = bytes(Ether() / IP(dst=DIRECTED) / TCP(dport=5076))
    assert not accepts(frame)


def test_icmp_is_rejected() -> None:
    assert not accepts(bytes(Ether() / IP(dst=DIRECTED) / ICMP()))


def test_ipv6_is_rejected() -> None:
    assert not accepts(bytes(Ether() / IPv6(dst="ff02::1") / UDP(dport=5076)))


def test_arp_is_rejected() -> None:
    assert not accepts(bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP()))


def test_udp_port_is_found_after_ip_options() -> None:
    assert accepts(udp_frame(dport=5076, options=[IPOption_NOP()] * 4))


def test_port_is_not_read_at_the_fixed_offset_when_there_are_options() -> None:
    # With a 24-byte IP header, offset 36 (the UDP dst port without options) holds the last two
    # option bytes; make them read as port 5076 while the real dst port is 7.
    frame = bytearray(udp_frame(dport=7, options=[IPOption_NOP()] * 4))
    frame[36:38] = (5076).to_bytes(2, "big")  # BPF does not check the IP header checksum
    assert not accepts(bytes(frame))


def test_frame_cut_before_the_udp_port_is_rejected() -> None:
    assert not accepts(udp_frame()[:36])


# --- probes ----------------------------------------------------------------------------------


def probe_frame() -> bytes:
    return bytes(Ether(dst="ff:ff:ff:ff:ff:ff", type=ETH_P_CROSSCAST_PROBE) / (b"\x00" * 46))


def test_probe_ethertype_is_accepted() -> None:
    assert accepts(probe_frame())


def test_probe_ethertype_is_rejected_when_probes_are_off() -> None:
    spec = CaptureSpec(
        broadcast_ports=SPEC.broadcast_ports,
        broadcast_addrs=SPEC.broadcast_addrs,
        groups=SPEC.groups,
        accept_probes=False,
    )
    program = capture_program(spec)
    assert not accepts(probe_frame(), program)
    assert accepts(udp_frame(), program)


# --- program shape and limits ----------------------------------------------------------------


def test_program_returns_the_given_snaplen() -> None:
    assert run_program(capture_program(SPEC, snaplen=1500), udp_frame()) == 1500


def test_drop_all_rejects_everything() -> None:
    assert run_program(DROP_ALL, udp_frame()) == 0
    assert run_program(DROP_ALL, probe_frame()) == 0


def test_sixty_ranges_assemble_and_each_is_accepted() -> None:
    ranges = tuple((p, p + 2) for p in range(10000, 10000 + 60 * 10, 10))
    spec = CaptureSpec(broadcast_ports=ranges, broadcast_addrs=(LIMITED_BROADCAST,), groups=())
    program = capture_program(spec)
    assert_kernel_shaped(program)
    assert len(assemble(program)) == 8 * len(program)
    for lo, hi in ranges:
        assert accepts(udp_frame(dst="255.255.255.255", dport=lo), program)
        assert accepts(udp_frame(dst="255.255.255.255", dport=hi), program)
        assert not accepts(udp_frame(dst="255.255.255.255", dport=hi + 1), program)


def test_many_groups_with_the_same_ports_stay_within_jump_range() -> None:
    groups = tuple(
        (ip_from_str(f"239.1.{i // 256}.{i % 256}"), ((22001, 22001),)) for i in range(300)
    )
    program = capture_program(CaptureSpec(broadcast_ports=(), broadcast_addrs=(), groups=groups))
    assert_kernel_shaped(program)
    assert accepts(udp_frame(dst="239.1.0.0", dport=22001), program)
    assert accepts(udp_frame(dst="239.1.1.43", dport=22001), program)
    assert not accepts(udp_frame(dst="239.1.1.44", dport=22001), program)


def test_too_many_ranges_for_one_destination_raise() -> None:
    ranges = tuple((p, p + 1) for p in range(1000, 1000 + 200 * 3, 3))
    spec = CaptureSpec(broadcast_ports=ranges, broadcast_addrs=(LIMITED_BROADCAST,), groups=())
    with pytest.raises(ValueError, match="jump"):
        capture_program(spec)


def test_program_over_kernel_limit_raises() -> None:
    ranges = tuple((p, p + 1) for p in range(1000, 1000 + 50 * 3, 3))
    groups = tuple((ip_from_str(f"239.2.0.{i}"), ranges[i:] + ranges[:i]) for i in range(50))
    distinct = tuple((g, (*r, (30000 + i, 30000 + i))) for i, (g, r) in enumerate(groups))
    spec = CaptureSpec(broadcast_ports=(), broadcast_addrs=(), groups=distinct)
    with pytest.raises(ValueError, match="too long"):
        capture_program(spec)


@pytest.mark.parametrize("bad", [(10, 9), (-1, 5), (5, 65536)])
def test_bad_port_range_raises(bad: tuple[int, int]) -> None:
    spec = CaptureSpec(broadcast_ports=(bad,), broadcast_addrs=(LIMITED_BROADCAST,), groups=())
    with pytest.raises(ValueError, match="port range"):
        capture_program(spec)


def test_assemble_packs_native_sock_filter() -> None:
    blob = assemble([(0x28, 0, 0, 12), (0x06, 0, 0, SNAPLEN)])
    assert struct.unpack("HBBIHBBI", blob) == (0x28, 0, 0, 12, 0x06, 0, 0, SNAPLEN)


def test_assemble_rejects_a_jump_over_255() -> None:
    with pytest.raises(ValueError, match="bad instruction"):
        assemble([(0x15, 256, 0, 1), (0x06, 0, 0, 0)])


# --- the lease client's program: ARP, and IPv4 UDP to one port ---------------------------------

ETH_P_ARP = 0x0806  # linux/if_ether.h
LEASE = udp_port_program(68, ethertypes=[ETH_P_ARP])


def test_udp_to_the_port_is_accepted_whatever_its_destination() -> None:
    assert accepts(udp_frame(dst="255.255.255.255", dport=68), LEASE)
    assert accepts(udp_frame(dst="10.0.1.100", dport=68), LEASE)


def test_udp_to_another_port_is_rejected() -> None:
    assert not accepts(udp_frame(dport=67), LEASE)
    assert not accepts(udp_frame(dport=5076), LEASE)


def test_extra_ethertype_is_accepted_whole() -> None:
    assert accepts(bytes(Ether() / ARP()), LEASE)
    assert not accepts(bytes(Ether() / ARP()), udp_port_program(68))


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(udp_frame(dport=68, flags="MF"), id="first-fragment"),
        pytest.param(udp_frame(dport=68, frag=10), id="later-fragment"),
        pytest.param(bytes(Ether() / IP(dst="10.0.1.100") / TCP(dport=68)), id="tcp"),
        pytest.param(bytes(Ether() / IPv6() / UDP(dport=68)), id="ipv6"),
        pytest.param(probe_frame(), id="probe"),
    ],
)
def test_lease_program_rejects(frame: bytes) -> None:
    assert not accepts(frame, LEASE)


def test_lease_program_finds_the_port_after_ip_options() -> None:
    assert accepts(udp_frame(dport=68, options=[IPOption_NOP()] * 4), LEASE)


def test_lease_program_is_kernel_shaped() -> None:
    assert_kernel_shaped(LEASE)


@pytest.mark.parametrize("bad", [-1, 65536])
def test_bad_port_raises(bad: int) -> None:
    with pytest.raises(ValueError, match="port range"):
        udp_port_program(bad)


def test_bad_ethertype_raises() -> None:
    with pytest.raises(ValueError, match="EtherType"):
        udp_port_program(68, ethertypes=[0x10000])


def test_interpreter_rejects_unknown_opcode() -> None:
    with pytest.raises(ValueError, match="opcode"):
        run_program([(0x07, 0, 0, 0)], udp_frame())  # tax: not emitted here


@pytest.mark.skipif(sys.platform != "linux", reason="SO_ATTACH_FILTER is Linux")
@pytest.mark.parametrize("program", [capture_program(SPEC), LEASE, list(DROP_ALL)])
def test_kernel_accepts_the_program(program: list[Instruction]) -> None:
    # Attaching a classic filter to an unbound UDP socket needs no privilege and runs the
    # kernel's checker on it; nothing is sent or received.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        attach_filter(sock, program)
