"""Classic BPF programs for the packet sockets: assemble, pack, and interpret.

This module owns the kernel-side filters that let a packet socket wake up only for frames it
wants: the relay's capture filter (`capture_program`) and the lease client's (`udp_port_program`).
It is pure: it builds lists of `struct sock_filter` tuples and packs them; attaching them
(SO_ATTACH_FILTER, the drop-all / drain / real-filter dance) belongs to crosscast.net.packet.
`run_program` is a small interpreter for the opcodes emitted here, so tests can prove what a
program accepts without sockets or privileges.

Classic BPF jump offsets are 8-bit and relative, so the program is laid out in small local
blocks (each destination address is followed by its own port checks and its own `ret`s) instead
of jumping to shared labels at the end; no jump then grows with the number of rules.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from crosscast.net.frames import ETH_P_CROSSCAST_PROBE, ETH_P_IP

__all__ = [
    "BPF_MAXINSNS",
    "DROP_ALL",
    "CaptureSpec",
    "Instruction",
    "assemble",
    "capture_program",
    "run_program",
    "udp_port_program",
]

Instruction = tuple[int, int, int, int]  # (code, jt, jf, k): struct sock_filter

# Instruction classes, sizes, modes and operations: linux/bpf_common.h
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_JMP = 0x05
BPF_RET = 0x06
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10
BPF_ABS = 0x20
BPF_IND = 0x40
BPF_MSH = 0xA0
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JGT = 0x20
BPF_JGE = 0x30
BPF_JSET = 0x40
BPF_K = 0x00
BPF_MAXINSNS = 4096  # linux/bpf_common.h: the kernel rejects longer classic programs

# The opcodes this module emits (tcpdump -d spelling).
LD_W_ABS = BPF_LD | BPF_W | BPF_ABS  # ld [k]
LD_H_ABS = BPF_LD | BPF_H | BPF_ABS  # ldh [k]
LD_B_ABS = BPF_LD | BPF_B | BPF_ABS  # ldb [k]
LD_H_IND = BPF_LD | BPF_H | BPF_IND  # ldh [x + k]
LDX_B_MSH = BPF_LDX | BPF_B | BPF_MSH  # ldxb 4*([k]&0xf)
JMP_JA = BPF_JMP | BPF_JA  # ja +k
JMP_JEQ_K = BPF_JMP | BPF_JEQ | BPF_K  # jeq #k, jt, jf
JMP_JGT_K = BPF_JMP | BPF_JGT | BPF_K  # jgt #k, jt, jf
JMP_JGE_K = BPF_JMP | BPF_JGE | BPF_K  # jge #k, jt, jf
JMP_JSET_K = BPF_JMP | BPF_JSET | BPF_K  # jset #k, jt, jf
RET_K = BPF_RET | BPF_K  # ret #k

# Frame offsets: Ethernet (linux/if_ether.h) then IPv4 (RFC 791), UDP (RFC 768).
OFF_ETHERTYPE = 12
OFF_IP = 14  # IP version/IHL byte
OFF_IP_FRAG = 20  # flags and fragment offset
OFF_IP_PROTO = 23
OFF_IP_DST = 30
OFF_UDP_DPORT_FROM_IP = OFF_IP + 2  # with X = IP header length: [x + 16] is the UDP dst port
IPPROTO_UDP = 17  # netinet/in.h
IP_MF_OFFMASK = 0x3FFF  # RFC 791: "more fragments" flag and the 13-bit fragment offset
IP_OFFMASK = 0x1FFF  # RFC 791: the fragment offset alone (non-zero: not the first fragment)

_MAX_JUMP = 0xFF  # jt and jf are __u8
_ADDRS_PER_BLOCK = 128  # destinations sharing one port block; keeps their jumps < 256
_U32_MAX = 0xFFFFFFFF

DROP_ALL: tuple[Instruction, ...] = ((RET_K, 0, 0, 0),)
DEFAULT_SNAPLEN = 0x40000  # what tcpdump -dd returns for an accepted frame: all of it


PortRanges = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class CaptureSpec:
    """What one capture socket lets through to Python."""

    broadcast_ports: PortRanges  # inclusive port ranges relayed when the IPv4 dst is a broadcast
    broadcast_addrs: tuple[int, ...]  # IPv4 dsts counted as broadcast: 255.255.255.255, directed
    groups: tuple[tuple[int, PortRanges], ...]  # (multicast group, its port ranges)
    accept_probes: bool = True  # also accept EtherType ETH_P_CROSSCAST_PROBE frames


def _merge_ranges(ranges: PortRanges) -> list[tuple[int, int]]:
    for lo, hi in ranges:
        if not 0 <= lo <= hi <= 0xFFFF:
            raise ValueError(f"bad port range: {lo}-{hi}")
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _port_block(ranges: list[tuple[int, int]], snaplen: int) -> list[Instruction]:
    """Load the UDP dst port and accept it if it is in `ranges`; otherwise reject.

    Layout: ldxb, ldh, checks..., ret #0, ret #snaplen. Every check jumps forward to the
    block's own accept, so its distance is bounded by the block's length.
    """
    checks: list[tuple[int, int, int]] = []  # (code, k, which) before offsets are known
    for lo, hi in ranges:
        if lo == hi:
            checks.append((JMP_JEQ_K, lo, 0))  # jeq #port -> accept
        elif lo == 0:
            checks.append((JMP_JGT_K, hi, 1))  # jgt #hi -> next, else accept
        else:
            checks.append((JMP_JGE_K, lo, 2))  # jge #lo -> the jgt below, else skip it
            checks.append((JMP_JGT_K, hi, 1))
    block: list[Instruction] = [
        # The IP header has options when IHL > 5: find UDP through X, never at a fixed 34.
        (LDX_B_MSH, 0, 0, OFF_IP),  # ldxb 4*([14]&0xf)
        (LD_H_IND, 0, 0, OFF_UDP_DPORT_FROM_IP),  # ldh [x + 16]
    ]
    accept = 2 + len(checks) + 1  # index of `ret #snaplen` in the block
    for code, k, which in checks:
        here = len(block)
        to_accept = accept - here - 1
        if to_accept > _MAX_JUMP:
            raise ValueError("too many port ranges for one destination (jump > 255)")
        if which == 0:
            block.append((code, to_accept, 0, k))
        elif which == 1:
            block.append((code, 0, to_accept, k))
        else:
            block.append((code, 0, 1, k))
    block.append((RET_K, 0, 0, 0))  # no range matched
    block.append((RET_K, 0, 0, snaplen))
    return block


def _accept_ethertype(ethertype: int, snaplen: int) -> list[Instruction]:
    """With the EtherType in A: accept a frame of `ethertype` whole, else go on."""
    if not 0 <= ethertype <= 0xFFFF:
        raise ValueError(f"bad EtherType: {ethertype}")
    return [(JMP_JEQ_K, 0, 1, ethertype), (RET_K, 0, 0, snaplen)]


# With the EtherType in A: fall through for unfragmented IPv4 UDP, reject the rest. Only a
# first-and-only fragment has the UDP header we match on; fragments are rejected here (the
# parsers would drop them anyway).
_UNFRAGMENTED_UDP: tuple[Instruction, ...] = (
    # IPv4 only (ETH_P_ALL sockets see everything on the wire).
    (JMP_JEQ_K, 0, 4, ETH_P_IP),  # not IPv4 -> the ret #0 below
    # UDP only.
    (LD_B_ABS, 0, 0, OFF_IP_PROTO),  # ldb [23]
    (JMP_JEQ_K, 0, 2, IPPROTO_UDP),
    (LD_H_ABS, 0, 0, OFF_IP_FRAG),  # ldh [20]
    (JMP_JSET_K, 0, 1, IP_MF_OFFMASK),  # MF or offset set -> ret #0
    (RET_K, 0, 0, 0),
)


# With the EtherType in A, for the relay's capture: IPv4 UDP falls through to the destination
# checks when it is whole or a first fragment (offset 0: it carries the UDP header and its port),
# and jumps to the fragment block (`_later_fragments`) when it is a later fragment, which has
# no UDP header and no port: the engine relays it when its first fragment was relayed.
def _udp_head(fragment_block: int) -> list[Instruction]:
    return [
        (JMP_JEQ_K, 0, 5, ETH_P_IP),  # not IPv4 -> the ret #0 below
        (LD_B_ABS, 0, 0, OFF_IP_PROTO),  # ldb [23]
        (JMP_JEQ_K, 0, 3, IPPROTO_UDP),
        (LD_H_ABS, 0, 0, OFF_IP_FRAG),  # ldh [20]
        (JMP_JSET_K, 2, 0, IP_OFFMASK),  # a later fragment -> past the ja, into the block
        (JMP_JA, 0, 0, 1 + fragment_block),  # whole or first: over the ret and the block
        (RET_K, 0, 0, 0),
    ]


def _later_fragments(addrs: Sequence[int], snaplen: int) -> list[Instruction]:
    """Accept a later fragment whose IPv4 destination is one of `addrs`, reject the rest; ends
    with its own `ret`s. Chunks of at most _ADDRS_PER_BLOCK addresses keep the jumps short."""
    block: list[Instruction] = [(LD_W_ABS, 0, 0, OFF_IP_DST)]  # ld [30]
    for start in range(0, len(addrs), _ADDRS_PER_BLOCK):
        chunk = addrs[start : start + _ADDRS_PER_BLOCK]
        for i, addr in enumerate(chunk):
            block.append((JMP_JEQ_K, len(chunk) - i, 0, addr))  # hit -> the chunk's accept
        block.append((JMP_JA, 0, 0, 1))  # no hit in this chunk: over its accept
        block.append((RET_K, 0, 0, snaplen))
    block.append((RET_K, 0, 0, 0))
    return block


def _check_snaplen(snaplen: int) -> None:
    if not 0 < snaplen <= _U32_MAX:
        raise ValueError(f"bad snaplen: {snaplen}")


def udp_port_program(
    port: int, *, ethertypes: Sequence[int] = (), snaplen: int = DEFAULT_SNAPLEN
) -> list[Instruction]:
    """Accept frames of `ethertypes` whole and unfragmented IPv4 UDP to `port`; reject the rest.

    The lease client's filter is `udp_port_program(68, ethertypes=[ETH_P_ARP])`: what
    `tcpdump -dd 'arp or (ip and udp dst port 68)'` accepts, minus IPv4 fragments (a first
    fragment included), which the parsers reject anyway.
    """
    _check_snaplen(snaplen)
    prog: list[Instruction] = [(LD_H_ABS, 0, 0, OFF_ETHERTYPE)]  # ldh [12]
    for ethertype in ethertypes:
        prog += _accept_ethertype(ethertype, snaplen)
    prog += _UNFRAGMENTED_UDP
    prog += _port_block(_merge_ranges(((port, port),)), snaplen)
    return prog


def capture_program(spec: CaptureSpec, snaplen: int = DEFAULT_SNAPLEN) -> list[Instruction]:
    """The filter for one capture socket; returns snaplen for frames to relay, 0 otherwise.

    Accepted: crosscast probe frames (if `spec.accept_probes`), and IPv4 UDP (whole, or the
    first fragment) whose destination is one of `spec.broadcast_addrs` with a dst port in
    `spec.broadcast_ports`, or a group of `spec.groups` with a dst port in that group's ranges;
    and later IPv4 fragments (no UDP header, so no port) to any of those destinations.
    Raises ValueError for bad ranges or addresses, or a program the kernel would refuse.
    """
    _check_snaplen(snaplen)

    # One destination address -> the merged port ranges it is relayed on. A group listed twice,
    # or an address that is both (absurd, but harmless), gets the union.
    by_addr: dict[int, PortRanges] = {}
    for addr in spec.broadcast_addrs:
        by_addr[addr] = by_addr.get(addr, ()) + tuple(spec.broadcast_ports)
    for group, ranges in spec.groups:
        by_addr[group] = by_addr.get(group, ()) + tuple(ranges)
    # Addresses with the same ranges (255.255.255.255 and the directed broadcast) share one
    # port block, tested by consecutive jeq's.
    by_ranges: dict[tuple[tuple[int, int], ...], list[int]] = {}
    for addr, ranges in by_addr.items():
        if not 0 <= addr <= _U32_MAX:
            raise ValueError(f"bad IPv4 address: {addr}")
        merged = tuple(_merge_ranges(ranges))
        if merged:
            by_ranges.setdefault(merged, []).append(addr)

    prog: list[Instruction] = [(LD_H_ABS, 0, 0, OFF_ETHERTYPE)]  # ldh [12]
    if spec.accept_probes:
        # Segment probes between relays: an EtherType of their own, accepted whole.
        prog += _accept_ethertype(ETH_P_CROSSCAST_PROBE, snaplen)
    fragments = _later_fragments([a for addrs in by_ranges.values() for a in addrs], snaplen)
    prog += _udp_head(len(fragments))
    prog += fragments
    prog.append((LD_W_ABS, 0, 0, OFF_IP_DST))  # ld [30]: the IPv4 destination selects the block
    for ranges, addrs in by_ranges.items():
        block = _port_block(list(ranges), snaplen)
        if len(block) > _MAX_JUMP:
            raise ValueError("too many port ranges for one destination (jump > 255)")
        # jeq addr_i: a hit skips the remaining jeq's into the block; the last miss skips the
        # block. Many addresses are split into chunks, each with its own copy of the block, so
        # that the skip over the remaining jeq's stays below 256.
        for start in range(0, len(addrs), _ADDRS_PER_BLOCK):
            chunk = addrs[start : start + _ADDRS_PER_BLOCK]
            for i, addr in enumerate(chunk):
                remaining = len(chunk) - i - 1
                prog.append((JMP_JEQ_K, remaining, len(block) if remaining == 0 else 0, addr))
            prog += block
    prog.append((RET_K, 0, 0, 0))  # no destination matched
    if len(prog) > BPF_MAXINSNS:
        raise ValueError(f"filter too long: {len(prog)} > {BPF_MAXINSNS} instructions")
    return prog


def assemble(program: Sequence[Instruction]) -> bytes:
    """The packed `struct sock_filter` array (native "HBBI" each) for a `struct sock_fprog`."""
    if not 0 < len(program) <= BPF_MAXINSNS:
        raise ValueError(f"program length {len(program)} not in 1..{BPF_MAXINSNS}")
    out = bytearray()
    for code, jt, jf, k in program:
        if not (0 <= code <= 0xFFFF and 0 <= jt <= _MAX_JUMP and 0 <= jf <= _MAX_JUMP):
            raise ValueError(f"bad instruction: {(code, jt, jf, k)}")
        out += struct.pack("HBBI", code, jt, jf, k & _U32_MAX)
    return bytes(out)


def run_program(program: Sequence[Instruction], frame: bytes) -> int:
    """Run a classic BPF program over `frame` and return what it returns (bytes to keep).

    Covers the opcodes this module emits (plus `ja`). As in the kernel, a load beyond the end
    of the frame ends the program with 0; an unknown opcode or a jump out of the program is a
    ValueError.
    """
    a = 0
    x = 0
    pc = 0
    n = len(frame)
    while True:
        if not 0 <= pc < len(program):
            raise ValueError(f"program counter out of range: {pc}")
        code, jt, jf, k = program[pc]
        pc += 1
        if code == RET_K:
            return k
        if code in (LD_W_ABS, LD_H_ABS, LD_B_ABS, LD_H_IND):
            off = k + x if code == LD_H_IND else k
            size = 4 if code == LD_W_ABS else 1 if code == LD_B_ABS else 2
            if off + size > n:
                return 0
            a = int.from_bytes(frame[off : off + size], "big")
        elif code == LDX_B_MSH:
            if k >= n:
                return 0
            x = (frame[k] & 0x0F) << 2
        elif code == JMP_JA:
            pc += k
        elif code in (JMP_JEQ_K, JMP_JGT_K, JMP_JGE_K, JMP_JSET_K):
            if code == JMP_JEQ_K:
                taken = a == k
            elif code == JMP_JGT_K:
                taken = a > k
            elif code == JMP_JGE_K:
                taken = a >= k
            else:
                taken = bool(a & k)
            pc += jt if taken else jf
        else:
            raise ValueError(f"opcode not supported: {code:#x}")
