"""Ethernet/IPv4/UDP frames: parse, classify, rewrite for egress, build, checksums.

This module is the one codec of the Ethernet/IPv4/UDP frames crosscast captures and emits: the
relay's hot path, the relays' segment probes (EtherType 0x88B5) and the DHCP client's frames
(`crosscast lease`) all use it. It is pure: no sockets, no I/O, no logging, no clock. Malformed
input raises `FrameError` (a ValueError), whose `reason` is a short label the caller counts and
drops with.

It runs once or twice per relayed packet, so it works on `bytes` with `struct` and int addresses
(never `ipaddress` objects), and computes Internet checksums with one big-int reduction instead
of a Python loop over 16-bit words (see `_sum16`). The relay's per-frame path uses the two
functions that build no object at all: `udp_offset` (validation by fixed offsets, falling back
to `parse_udp_frame` for anything unusual) and `rewrite_incremental` (RFC 1624 checksum updates
instead of recomputing them).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "BROADCAST_MAC",
    "ETH_HLEN",
    "ETH_P_CROSSCAST_PROBE",
    "ETH_P_IP",
    "LIMITED_BROADCAST",
    "MAX_FRAME_LEN",
    "FrameError",
    "ProbeFrame",
    "UdpFrame",
    "broadcast_address",
    "build_probe_frame",
    "build_udp_frame",
    "checksum_delta",
    "complete_udp_checksum",
    "ip_checksum",
    "ip_from_str",
    "ip_to_str",
    "is_multicast",
    "is_probe_frame",
    "looks_like_directed_broadcast",
    "mac_from_str",
    "mac_to_str",
    "multicast_mac",
    "parse_probe_frame",
    "parse_udp_frame",
    "rewrite_for_egress",
    "rewrite_incremental",
    "udp_checksum",
    "udp_offset",
]

ETH_HLEN = 14  # linux/if_ether.h: dst MAC, src MAC, EtherType
ETH_P_IP = 0x0800  # linux/if_ether.h
ETH_P_CROSSCAST_PROBE = 0x88B5  # IEEE 802: local experimental EtherType 1; crosscast segment probes
BROADCAST_MAC = b"\xff" * 6
LIMITED_BROADCAST = 0xFFFFFFFF  # 255.255.255.255 (RFC 919)
MAX_FRAME_LEN = 9216  # jumbo frame; anything longer is "too-long"

IPPROTO_UDP = 17  # netinet/in.h
IP_MIN_HLEN = 20  # RFC 791: IHL >= 5 words
UDP_HLEN = 8  # RFC 768
IP_MF = 0x2000  # RFC 791: "more fragments" flag in the flags/fragment-offset word
IP_OFFMASK = 0x1FFF  # RFC 791: fragment offset, in 8-byte units
_MIN_FRAME_LEN = ETH_HLEN + IP_MIN_HLEN + UDP_HLEN  # 42

# Offsets inside the Ethernet frame (IPv4 header starts at ETH_HLEN).
_OFF_ETHERTYPE = 12
_OFF_IP = ETH_HLEN
_OFF_IP_TOTLEN = ETH_HLEN + 2
_OFF_IP_ID = ETH_HLEN + 4
_OFF_IP_FRAG = ETH_HLEN + 6
_OFF_IP_TTL = ETH_HLEN + 8
_OFF_IP_PROTO = ETH_HLEN + 9
_OFF_IP_CSUM = ETH_HLEN + 10
_OFF_IP_SRC = ETH_HLEN + 12
_OFF_IP_DST = ETH_HLEN + 16

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_ETH_TYPE = struct.Struct("!12xH")
# total length, id, flags/fragment, ttl, protocol, checksum, src, dst
_IP_FIXED = struct.Struct("!2xHHHBBHII")
# src port, dst port, length, checksum
_UDP_HDR = struct.Struct("!HHHH")
_IP_HDR_TEMPLATE = struct.Struct("!BBHHHBBHII")

_MULTICAST_MAC_PREFIX = b"\x01\x00\x5e"  # RFC 1112 section 6.4
_PROBE_TYPE = _U16.pack(ETH_P_CROSSCAST_PROBE)

_Buffer = bytes | bytearray | memoryview


class FrameError(ValueError):
    """A frame that cannot be relayed; `reason` is the drop counter's label.

    Reasons: "short", "not-ipv4", "bad-ip-header", "bad-ip-checksum", "not-udp", "fragment",
    "bad-length", "too-long"; and "not-probe" from `parse_probe_frame`.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class UdpFrame:
    """A parsed Ethernet/IPv4/UDP frame. Addresses are ints, MACs are 6-byte strings."""

    frame: bytes  # the Ethernet frame, trimmed to 14 + IP total length (padding removed)
    dst_mac: bytes
    src_mac: bytes
    src_ip: int
    dst_ip: int
    ttl: int
    ihl: int  # IP header length in bytes
    src_port: int
    dst_port: int
    udp_checksum: int

    @property
    def payload(self) -> bytes:
        """The UDP payload."""
        return self.frame[ETH_HLEN + self.ihl + UDP_HLEN :]


# --- checksums ------------------------------------------------------------------------------
#
# RFC 1071: the one's complement sum of 16-bit words is congruent to the data read as one
# big-endian integer modulo 0xFFFF (because 0x10000 == 1 mod 0xFFFF). So a single C-level
# int.from_bytes plus one modulo replaces the Python loop. The only ambiguity is 0 vs 0xFFFF
# ("negative zero"), resolved in the callers: any of our sums over real headers is non-zero.


def _sum16(data: _Buffer) -> int:
    """The data's 16-bit one's complement sum, modulo 0xFFFF (odd length padded with a zero)."""
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    return n % 0xFFFF


def ip_checksum(header: _Buffer) -> int:
    """The value for the IPv4 header checksum field (the field's current content is ignored).

    A header is valid when `ip_checksum(header)` equals its checksum field.
    """
    r = (_sum16(header) - _U16.unpack_from(header, 10)[0]) % 0xFFFF
    # Sum r != 0 complements to 0xFFFF - r; a sum of "negative zero" complements to 0.
    return 0xFFFF - r if r else 0


def _udp_checksum_sum(src_ip: int, dst_ip: int, seg: _Buffer) -> int:
    # Pseudo header (RFC 768): src, dst, zero, protocol, UDP length. A 32-bit address is
    # congruent to the sum of its two 16-bit halves modulo 0xFFFF, so add it as it is.
    field: int = _U16.unpack_from(seg, 6)[0]
    return _sum16(seg) - field + src_ip + dst_ip + IPPROTO_UDP + len(seg)


def udp_checksum(src_ip: int, dst_ip: int, udp_segment: _Buffer) -> int:
    """The value for the UDP checksum field of `udp_segment` (header + payload).

    The segment's current checksum field is ignored. RFC 768: a computed 0 is sent as 0xFFFF
    (0 on the wire means "no checksum"), so the result is never 0.
    """
    # r == 0 is a sum of "negative zero", whose complement 0 is sent as 0xFFFF: same formula.
    return 0xFFFF - _udp_checksum_sum(src_ip, dst_ip, udp_segment) % 0xFFFF


# --- parse ----------------------------------------------------------------------------------


def parse_udp_frame(frame: bytes) -> UdpFrame:
    """Validate an Ethernet/IPv4/UDP frame and return its fields; raise FrameError if invalid.

    The UDP checksum is not checked: a frame captured from a sender on this host may carry only
    the partial (pseudo header) checksum the NIC was meant to complete.
    """
    if not isinstance(frame, bytes):
        frame = bytes(frame)
    n = len(frame)
    if n < _MIN_FRAME_LEN:
        raise FrameError("short")
    if n > MAX_FRAME_LEN:
        raise FrameError("too-long")
    if _ETH_TYPE.unpack_from(frame)[0] != ETH_P_IP:
        raise FrameError("not-ipv4")
    vihl = frame[_OFF_IP]
    ihl = (vihl & 0x0F) << 2
    if vihl >> 4 != 4 or ihl < IP_MIN_HLEN:
        raise FrameError("bad-ip-header")
    total_len, _ident, frag, ttl, proto, _csum, src_ip, dst_ip = _IP_FIXED.unpack_from(
        frame, _OFF_IP
    )
    if total_len < ihl:
        raise FrameError("bad-ip-header")
    end = ETH_HLEN + total_len
    if end > n:
        # The IP header claims more bytes than the frame holds: truncated.
        raise FrameError("short")
    if end < n:
        frame = frame[:end]  # Ethernet pads short frames to 60 bytes; the padding is not ours
    # A valid header sums to "negative zero" (0xFFFF), i.e. 0 modulo 0xFFFF.
    if _sum16(frame[_OFF_IP : _OFF_IP + ihl]):
        raise FrameError("bad-ip-checksum")
    if proto != IPPROTO_UDP:
        raise FrameError("not-udp")
    if frag & (IP_MF | IP_OFFMASK):
        raise FrameError("fragment")
    udp_off = ETH_HLEN + ihl
    if total_len - ihl < UDP_HLEN:
        raise FrameError("bad-length")
    src_port, dst_port, udp_len, udp_csum = _UDP_HDR.unpack_from(frame, udp_off)
    if udp_len != total_len - ihl:
        raise FrameError("bad-length")
    # Positional: a frozen dataclass's keyword __init__ is measurably slower per packet.
    return UdpFrame(
        frame, frame[0:6], frame[6:12], src_ip, dst_ip, ttl, ihl, src_port, dst_port, udp_csum
    )


_FAST_HEAD = b"\x08\x00\x45"  # EtherType IPv4, then version 4 with a 20-byte header


def udp_offset(frame: bytes) -> tuple[bytes, int]:
    """Validate exactly as `parse_udp_frame` does; return (frame, offset of the UDP header).

    The returned frame is trimmed of Ethernet padding. The common case (no IP options, no
    padding) is checked by fixed offsets with no object built; anything else goes through
    `parse_udp_frame`, so the edge cases and their FrameError reasons are that function's.
    """
    n = len(frame)
    if (
        _MIN_FRAME_LEN <= n <= MAX_FRAME_LEN
        and frame[12:15] == _FAST_HEAD
        and frame[23] == IPPROTO_UDP
        and not (frame[20] & 0x3F or frame[21])  # MF clear, offset 0: not a fragment
        and (frame[16] << 8 | frame[17]) + ETH_HLEN == n
        and (frame[38] << 8 | frame[39]) + ETH_HLEN + IP_MIN_HLEN == n
        and not int.from_bytes(frame[14:34], "big") % 0xFFFF  # header sums to "negative zero"
    ):
        return frame, ETH_HLEN + IP_MIN_HLEN
    f = parse_udp_frame(frame)
    return f.frame, ETH_HLEN + f.ihl


def _fold(x: int) -> int:
    # End-around carry, twice: enough for a sum of up to three 16-bit words.
    x = (x & 0xFFFF) + (x >> 16)
    return (x & 0xFFFF) + (x >> 16)


def checksum_delta(old: int, new: int) -> int:
    """What changing a 32-bit field from `old` to `new` adds to a one's complement sum
    (RFC 1624: ~m + m', per 16-bit half); 0 when nothing changes."""
    if old == new:
        return 0
    return _fold((~old >> 16 & 0xFFFF) + (~old & 0xFFFF) + (new >> 16) + (new & 0xFFFF))


_TTL_DELTA = 0xFEFF  # ~0x0100: the TTL is the high byte of its 16-bit word; one less is -0x0100


def rewrite_incremental(
    frame: bytes,
    udp_off: int,
    macs: bytes,
    new_dst: bytes | None,
    delta: int,
    complete: bool = False,
) -> bytearray:
    """A copy of a validated frame for an egress: Ethernet dst+src `macs` (12 bytes), TTL one
    less (never below 1), IP destination `new_dst` (None: kept) and both checksums updated.

    `delta` is `checksum_delta(old destination, new one)`. Checksums are updated, not
    recomputed (RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m')), so a wrong one stays wrong: the relay
    never "repairs" garbage. A UDP checksum of 0 ("none", RFC 768) stays 0 and a computed 0 is
    sent as 0xFFFF. `complete`: the UDP checksum field holds only a local sender's partial sum
    (TP_STATUS_CSUMNOTREADY), so it is computed in full over the rewritten frame. (Positional
    parameters and the folds written out: this runs once per relayed frame and egress.)
    """
    b = bytearray(frame)
    b[0:12] = macs
    ttl = frame[22]
    s = (~(frame[24] << 8 | frame[25]) & 0xFFFF) + delta
    if ttl > 1:
        b[22] = ttl - 1
        s += _TTL_DELTA
    s = (s & 0xFFFF) + (s >> 16)
    h = ~((s & 0xFFFF) + (s >> 16)) & 0xFFFF
    b[24] = h >> 8
    b[25] = h & 0xFF
    if new_dst is not None:
        b[30:34] = new_dst
    c = udp_off + 6
    u = frame[c] << 8 | frame[c + 1]
    if u:
        if complete:
            src = int.from_bytes(b[26:30], "big")
            dst = int.from_bytes(b[30:34], "big")
            u = 0xFFFF - _udp_checksum_sum(src, dst, b[udp_off:]) % 0xFFFF
        elif delta:
            u = (~u & 0xFFFF) + delta
            u = (u & 0xFFFF) + (u >> 16)
            u = ~((u & 0xFFFF) + (u >> 16)) & 0xFFFF or 0xFFFF
        b[c] = u >> 8
        b[c + 1] = u & 0xFF
    return b


def complete_udp_checksum(frame: bytes, udp_off: int) -> bytes:
    """`frame` with its partial UDP checksum (a local sender's) computed in full; a checksum
    of 0 ("none") is left alone."""
    c = udp_off + 6
    if not (frame[c] or frame[c + 1]):
        return frame
    src = int.from_bytes(frame[26:30], "big")
    dst = int.from_bytes(frame[30:34], "big")
    u = 0xFFFF - _udp_checksum_sum(src, dst, frame[udp_off:]) % 0xFFFF
    return frame[:c] + _U16.pack(u) + frame[c + 2 :]


# --- classify -------------------------------------------------------------------------------


def is_multicast(ip: int) -> bool:
    """True for 224.0.0.0/4 (RFC 5771)."""
    return (ip & 0xF0000000) == 0xE0000000


def multicast_mac(group: int) -> bytes:
    """The Ethernet address of an IPv4 multicast group: 01:00:5e + its low 23 bits (RFC 1112)."""
    return _MULTICAST_MAC_PREFIX + (group & 0x7FFFFF).to_bytes(3, "big")


def broadcast_address(ip: int, prefix_len: int) -> int:
    """The directed broadcast address of `ip`'s subnet, derived from the prefix length.

    Never take the broadcast address that getifaddrs/psutil report: it can be wrong. A /31
    (RFC 3021) or /32 has no directed broadcast; the result for them is just arithmetic, and
    callers should not relay to it.
    """
    if not 0 <= prefix_len <= 32:
        raise ValueError(f"prefix length out of range: {prefix_len}")
    return (ip | (0xFFFFFFFF >> prefix_len)) & 0xFFFFFFFF


def looks_like_directed_broadcast(ip: int) -> bool:
    """True if `ip` could be the directed broadcast of some subnet of prefix length <= /30.

    That is: its two lowest bits are set, and it is not in 0.0.0.0/8, 127.0.0.0/8 or
    224.0.0.0/3 (multicast, reserved class E, and 255.255.255.255, the limited broadcast,
    which is not a directed one).
    """
    first = ip >> 24
    return (ip & 3) == 3 and first != 0 and first != 127 and first < 224


# --- rewrite --------------------------------------------------------------------------------


def rewrite_for_egress(
    f: UdpFrame,
    *,
    src_mac: bytes,
    dst_mac: bytes | None = None,
    dst_ip: int | None = None,
    ttl: int | None = None,
    fix_udp_checksum: bool = False,
) -> bytes:
    """A new frame for the egress segment, with valid IP and (if present) UDP checksums.

    The Ethernet source becomes `src_mac` (never re-emit the sender's MAC: it poisons bridge
    tables). The IP source address, IP id, ports and payload are kept, because discovery
    protocols reply to the packet's source. A UDP checksum of 0 ("none", RFC 768) stays 0;
    otherwise it is recomputed over the pseudo header when the destination changes or when
    `fix_udp_checksum` is set (the kernel marked the frame TP_STATUS_CSUMNOTREADY: it holds only
    the partial checksum of a local sender).
    """
    # Slice assignment would silently resize the frame if a MAC were not 6 bytes.
    if len(src_mac) != 6 or (dst_mac is not None and len(dst_mac) != 6):
        raise ValueError("MAC addresses are 6 bytes")
    buf = bytearray(f.frame)
    buf[6:12] = src_mac
    if dst_mac is not None:
        buf[0:6] = dst_mac
    ihl = f.ihl
    header_changed = False
    dst_changed = dst_ip is not None and dst_ip != f.dst_ip
    if dst_changed:
        _U32.pack_into(buf, _OFF_IP_DST, dst_ip)
        header_changed = True
    if ttl is not None and ttl != f.ttl:
        buf[_OFF_IP_TTL] = ttl
        header_changed = True
    if header_changed:
        # Full recompute: the header is at most 60 bytes, and parse checked the original.
        buf[_OFF_IP_CSUM : _OFF_IP_CSUM + 2] = b"\x00\x00"
        r = _sum16(buf[_OFF_IP : _OFF_IP + ihl])
        _U16.pack_into(buf, _OFF_IP_CSUM, 0xFFFF - r if r else 0)
    if f.udp_checksum and (dst_changed or fix_udp_checksum):
        udp_off = ETH_HLEN + ihl
        new_dst = f.dst_ip if dst_ip is None else dst_ip
        # A slice copy is cheaper than a memoryview at frame sizes (measured).
        csum = 0xFFFF - _udp_checksum_sum(f.src_ip, new_dst, buf[udp_off:]) % 0xFFFF
        _U16.pack_into(buf, udp_off + 6, csum)
    return bytes(buf)


# --- segment probes -----------------------------------------------------------------------------
#
# Relays on one segment find each other with probe frames of their own EtherType, broadcast:
#   dst MAC ff:ff:ff:ff:ff:ff, src MAC (the sending interface's), EtherType 0x88B5, body.
# The body is a crosscast envelope (relay/envelope.py); this layer only frames it.


@dataclass(frozen=True, slots=True)
class ProbeFrame:
    """A parsed segment probe: who sent it and the envelope it carries."""

    src_mac: bytes
    body: bytes


def is_probe_frame(frame: _Buffer) -> bool:
    """True if `frame`'s EtherType is ETH_P_CROSSCAST_PROBE (a short frame is not a probe)."""
    return frame[_OFF_ETHERTYPE : _OFF_ETHERTYPE + 2] == _PROBE_TYPE


def build_probe_frame(src_mac: bytes, body: bytes) -> bytes:
    """A segment probe from `src_mac`, broadcast, carrying `body`."""
    if len(src_mac) != 6:
        raise ValueError("MAC addresses are 6 bytes")
    if ETH_HLEN + len(body) > MAX_FRAME_LEN:
        raise ValueError(f"probe body too long: {len(body)} bytes")
    return b"".join((BROADCAST_MAC, src_mac, _PROBE_TYPE, body))


def parse_probe_frame(frame: bytes) -> ProbeFrame:
    """The sender and body of a segment probe; FrameError if `frame` is not one."""
    if len(frame) < ETH_HLEN:
        raise FrameError("short")
    if len(frame) > MAX_FRAME_LEN:
        raise FrameError("too-long")
    if not is_probe_frame(frame):
        raise FrameError("not-probe")
    return ProbeFrame(bytes(frame[6:12]), bytes(frame[ETH_HLEN:]))


# --- build and text forms (tests, probes, DHCP client, CLI) ------------------------------------


def build_udp_frame(
    *,
    src_mac: bytes,
    dst_mac: bytes,
    src_ip: int,
    dst_ip: int,
    src_port: int,
    dst_port: int,
    payload: bytes,
    ttl: int = 64,
    ident: int = 0,
    tos: int = 0,
) -> bytes:
    """An Ethernet/IPv4/UDP frame with a 20-byte IP header (DF clear) and valid checksums."""
    udp_len = UDP_HLEN + len(payload)
    total_len = IP_MIN_HLEN + udp_len
    if total_len > 0xFFFF or ETH_HLEN + total_len > MAX_FRAME_LEN:
        raise ValueError(f"payload too long: {len(payload)} bytes")
    if len(src_mac) != 6 or len(dst_mac) != 6:
        raise ValueError("MAC addresses are 6 bytes")
    header = bytearray(
        _IP_HDR_TEMPLATE.pack(0x45, tos, total_len, ident, 0, ttl, IPPROTO_UDP, 0, src_ip, dst_ip)
    )
    _U16.pack_into(header, 10, ip_checksum(header))
    segment = bytearray(_UDP_HDR.pack(src_port, dst_port, udp_len, 0))
    segment += payload
    _U16.pack_into(segment, 6, udp_checksum(src_ip, dst_ip, segment))
    return b"".join((dst_mac, src_mac, _U16.pack(ETH_P_IP), header, segment))


def mac_from_str(text: str) -> bytes:
    """Parse "aa:bb:cc:dd:ee:ff" (or with "-") into 6 bytes."""
    parts = text.strip().replace("-", ":").split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not a MAC address: {text!r}") from None


def mac_to_str(mac: bytes) -> str:
    """Format 6 bytes as "aa:bb:cc:dd:ee:ff"."""
    return mac.hex(":")


def ip_from_str(text: str) -> int:
    """Parse dotted-quad IPv4 text ("10.0.1.255") into an int; strict: exactly four decimals."""
    parts = text.strip().split(".")
    if len(parts) != 4 or not all(p.isdigit() and p.isascii() and len(p) <= 3 for p in parts):
        raise ValueError(f"not an IPv4 address: {text!r}")
    octets = [int(p) for p in parts]
    if any(o > 255 for o in octets):
        raise ValueError(f"not an IPv4 address: {text!r}")
    return (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]


def ip_to_str(ip: int) -> str:
    """Format an int IPv4 address as dotted-quad text."""
    return f"{(ip >> 24) & 0xFF}.{(ip >> 16) & 0xFF}.{(ip >> 8) & 0xFF}.{ip & 0xFF}"
