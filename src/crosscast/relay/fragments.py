"""IPv4 fragments of relayed UDP datagrams: parse them, and make the rest follow the first one.

A UDP broadcast larger than the link MTU leaves its sender as IPv4 fragments; only the first
(offset 0, MF set) carries the UDP header, so only it can be matched against the rules. This
module owns what the engine needs to relay the others the same way:

- `parse_fragment`: validate one fragment frame (the checks of net.frames.parse_udp_frame, minus
  the "not a fragment" one, plus the fragment's own lengths);
- `rewrite_fragment`: the egress rewrite (MACs, destination IP, TTL, IP header checksum) and,
  on the first fragment, the UDP checksum adjusted for the new destination incrementally
  (RFC 1624): the checksum covers the whole datagram, which no single fragment holds, but the
  destination is in the pseudo header, so its change is a known delta;
- `FragmentTracker`: the first fragment's decision (where the datagram goes), remembered for
  `FRAGMENT_HOLD` seconds under (source, destination, IP id, protocol), which every later
  fragment follows. Fragments that arrive before their first one (reordering, or a mesh peer
  whose datagrams overtook each other) are held, bounded in count and bytes, and released when
  the first one arrives; held too long they are dropped as `fragment-timeout`, beyond the bounds
  as `fragment-overflow`. Nothing is reassembled: the receivers' kernels do that, and the
  relay's memory stays bounded whatever arrives;

Pure: bytes in, values out, `now` passed in.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

# The frame layout is the codec's (net.frames): its offsets and structs, not a second copy.
from crosscast.net.frames import (
    _IP_FIXED,
    _OFF_IP,
    _OFF_IP_CSUM,
    _OFF_IP_DST,
    _OFF_IP_TTL,
    _U16,
    _U32,
    _UDP_HDR,
    ETH_HLEN,
    ETH_P_IP,
    IP_MF,
    IP_MIN_HLEN,
    IP_OFFMASK,
    IPPROTO_UDP,
    MAX_FRAME_LEN,
    UDP_HLEN,
    FrameError,
    ip_checksum,
)

FRAGMENT_HOLD = 2.0  # seconds a datagram's decision, and its early fragments, are kept
MAX_HELD_FRAGMENTS = 256  # early fragments held at once, all datagrams together
MAX_HELD_BYTES = 512 * 1024  # and their bytes: a full rcvbuf's worth would be 4 MiB
MAX_DATAGRAMS = 4096  # decisions remembered; a flood of distinct ids forgets the oldest


@dataclass(frozen=True, slots=True)
class Fragment:
    """One IPv4 fragment of a UDP datagram. `dst_port` and `udp_checksum` only on the first."""

    frame: bytes  # trimmed to 14 + IP total length
    key: bytes  # source, destination, IP id, protocol: what the receiver reassembles by
    dst_mac: bytes
    src_mac: bytes
    src_ip: int
    dst_ip: int
    ttl: int
    ihl: int
    offset: int  # in bytes
    more: bool  # MF: more fragments follow
    dst_port: int | None
    udp_checksum: int | None

    @property
    def first(self) -> bool:
        return self.offset == 0


def parse_fragment(frame: bytes) -> Fragment:
    """Validate an Ethernet/IPv4 fragment of a UDP datagram; raise FrameError if it is not one.

    Reasons as parse_udp_frame's ("short", "not-ipv4", "bad-ip-header", "bad-ip-checksum",
    "not-udp", "bad-length", "too-long"), and "not-fragment" for a whole datagram.
    """
    n = len(frame)
    if n < ETH_HLEN + IP_MIN_HLEN:
        raise FrameError("short")
    if n > MAX_FRAME_LEN:
        raise FrameError("too-long")
    if _U16.unpack_from(frame, 12)[0] != ETH_P_IP:
        raise FrameError("not-ipv4")
    vihl = frame[_OFF_IP]
    ihl = (vihl & 0x0F) << 2
    if vihl >> 4 != 4 or ihl < IP_MIN_HLEN:
        raise FrameError("bad-ip-header")
    total_len, ident, frag, ttl, proto, csum, src_ip, dst_ip = _IP_FIXED.unpack_from(frame, _OFF_IP)
    if total_len < ihl:
        raise FrameError("bad-ip-header")
    end = ETH_HLEN + total_len
    if end > n:
        raise FrameError("short")
    frame = bytes(frame[:end])
    if ip_checksum(frame[_OFF_IP : _OFF_IP + ihl]) != csum:
        raise FrameError("bad-ip-checksum")
    if proto != IPPROTO_UDP:
        raise FrameError("not-udp")
    offset = (frag & IP_OFFMASK) << 3
    more = bool(frag & IP_MF)
    if not more and not offset:
        raise FrameError("not-fragment")
    data_len = total_len - ihl
    # Every fragment but the last carries a multiple of 8 bytes (RFC 791), and the datagram
    # ends inside 65,535 bytes; the first carries the whole UDP header.
    if (more and (data_len == 0 or data_len & 7)) or offset + data_len > 0xFFFF:
        raise FrameError("bad-length")
    dst_port = udp_checksum = None
    if not offset:
        if data_len < UDP_HLEN:
            raise FrameError("bad-length")
        _src_port, dst_port, udp_len, udp_checksum = _UDP_HDR.unpack_from(frame, ETH_HLEN + ihl)
        if udp_len <= data_len:  # the UDP datagram must be longer than its first fragment
            raise FrameError("bad-length")
    key = frame[26:34] + _U16.pack(ident)
    return Fragment(
        frame, key, frame[0:6], frame[6:12], src_ip, dst_ip, ttl, ihl, offset, more, dst_port,
        udp_checksum,
    )  # fmt: skip


def _ones_add(a: int, b: int) -> int:
    s = a + b
    return (s & 0xFFFF) + (s >> 16)


def adjust_checksum(checksum: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), for a 32-bit field changed from old to new."""
    s = ~checksum & 0xFFFF
    for shift in (16, 0):
        s = _ones_add(s, ~(old >> shift) & 0xFFFF)
        s = _ones_add(s, (new >> shift) & 0xFFFF)
    return ~s & 0xFFFF


def rewrite_fragment(
    f: Fragment, *, src_mac: bytes, dst_mac: bytes, dst_ip: int | None, ttl: int
) -> bytes:
    """The fragment for an egress segment: MACs, destination (None: unchanged), TTL, checksums.

    The IP header checksum is recomputed in full (the header is at most 60 bytes and parse
    checked the original). On the first fragment a UDP checksum of 0 ("none") stays 0; any other
    gets the pseudo-header delta of the destination change, and a result of 0 is sent as 0xFFFF
    (RFC 768).
    """
    if len(src_mac) != 6 or len(dst_mac) != 6:
        raise ValueError("MAC addresses are 6 bytes")
    buf = bytearray(f.frame)
    buf[0:6] = dst_mac
    buf[6:12] = src_mac
    new_dst = f.dst_ip if dst_ip is None else dst_ip
    _U32.pack_into(buf, _OFF_IP_DST, new_dst)
    buf[_OFF_IP_TTL] = ttl
    _U16.pack_into(buf, _OFF_IP_CSUM, ip_checksum(buf[_OFF_IP : _OFF_IP + f.ihl]))
    if f.first and f.udp_checksum and new_dst != f.dst_ip:
        csum = adjust_checksum(f.udp_checksum, f.dst_ip, new_dst)
        _U16.pack_into(buf, ETH_HLEN + f.ihl + 6, csum or 0xFFFF)
    return bytes(buf)


class Pending(enum.Enum):
    """What `FragmentTracker.follow` says when it does not know the datagram's decision yet."""

    HELD = "held"  # kept until its first fragment arrives (or FRAGMENT_HOLD passes)
    OVERFLOW = "fragment-overflow"  # the hold is full: drop it


D = TypeVar("D")


class FragmentTracker(Generic[D]):
    """Decisions of first fragments, followed by the rest; early fragments held, bounded.

    Keys are `(where, Fragment.key)`, so one datagram captured on two segments is two entries.
    """

    def __init__(
        self,
        hold: float = FRAGMENT_HOLD,
        *,
        max_held: int = MAX_HELD_FRAGMENTS,
        max_held_bytes: int = MAX_HELD_BYTES,
        max_datagrams: int = MAX_DATAGRAMS,
    ) -> None:
        self._hold = hold
        self._max_held = max_held
        self._max_held_bytes = max_held_bytes
        self._max_datagrams = max_datagrams
        self._decisions: OrderedDict[tuple[str, bytes], tuple[D, float]] = OrderedDict()
        self._held: OrderedDict[tuple[str, bytes], list[tuple[Fragment, float]]] = OrderedDict()
        self._held_count = 0
        self._held_bytes = 0

    def __len__(self) -> int:
        """Datagrams with a remembered decision or held fragments."""
        return len(self._decisions) + len(self._held)

    @property
    def held(self) -> int:
        return self._held_count

    def first(self, where: str, f: Fragment, decision: D, now: float) -> list[Fragment]:
        """Remember `decision` for the datagram of first fragment `f`; returns the fragments of
        it that were held, oldest first, to be relayed the same way now."""
        key = (where, f.key)
        self._decisions[key] = (decision, now + self._hold)
        self._decisions.move_to_end(key)
        if len(self._decisions) > self._max_datagrams:
            self._decisions.popitem(last=False)
        held = self._held.pop(key, None)
        if not held:
            return []
        self._held_count -= len(held)
        self._held_bytes -= sum(len(h.frame) for h, _ in held)
        return [h for h, _ in held]

    def follow(self, where: str, f: Fragment, now: float) -> D | Pending:
        """The decision for a non-first fragment, or whether it was held or must be dropped."""
        key = (where, f.key)
        known = self._decisions.get(key)
        if known is not None and known[1] > now:
            return known[0]
        if (
            self._held_count >= self._max_held
            or self._held_bytes + len(f.frame) > self._max_held_bytes
        ):
            return Pending.OVERFLOW
        self._held.setdefault(key, []).append((f, now + self._hold))
        self._held_count += 1
        self._held_bytes += len(f.frame)
        return Pending.HELD

    def expire(self, now: float) -> int:
        """Forget expired decisions; drop held fragments older than the hold. Returns how many
        fragments were dropped (the engine counts them as `fragment-timeout`)."""
        while self._decisions:
            key, (_, until) = next(iter(self._decisions.items()))
            if until > now:
                break
            del self._decisions[key]
        dropped = 0
        for key in [k for k, frags in self._held.items() if frags[0][1] <= now]:
            for f, _ in self._held.pop(key):
                dropped += 1
                self._held_bytes -= len(f.frame)
        self._held_count -= dropped
        return dropped

    def clear(self) -> int:
        """Forget everything (the rules changed); returns the held fragments dropped."""
        dropped = self._held_count
        self._decisions.clear()
        self._held.clear()
        self._held_count = self._held_bytes = 0
        return dropped
