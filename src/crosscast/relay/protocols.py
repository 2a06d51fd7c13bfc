"""Protocol awareness: what a relayed UDP payload says, for log lines and per-protocol counters.

This module owns the decoding of the discovery messages an EPICS site relays: PVAccess search
requests and server beacons (UDP 5076) and Channel Access searches and beacons (UDP 5064/5065).
It is pure (bytes in, a small frozen record out) and total: anything it does not recognise,
truncated or hostile, is None, never an exception, because the payload comes from the network
and decoding is only ever informative. It must not decide what is relayed; rules do that.

`DecodeLog` is what `--decode-pvaccess` runs on each captured frame: it counts decoded
messages per protocol and kind, and says which log lines to write, rate-limited per protocol
(`now` is passed in; the caller does the logging).

Wire formats, from the protocol specifications (epics-base's "PVAccess protocol specification"
and pvxs's pvaproto.h; "Channel Access Protocol Specification" and caproto.h):

- PVA: an 8-byte header (magic 0xCA, version, flags, command, u32 payload size) per message;
  flags bit 7 says the byte order of everything after it (1 = big-endian), bit 6 that a server
  sent it, bit 0 that it is a control message. Sizes are PVA "size" fields: one byte below 254,
  0xFE then a u32, 0xFF for null.
- CA: 16-byte headers (u16 command, u16 payload size, u16 data type, u16 count, u32 cid,
  u32 available), always big-endian, a payload padded to a multiple of 8 bytes.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv6Address

from crosscast.net.frames import FrameError, parse_udp_frame

PVA = "pva"
CA = "ca"
SEARCH = "search"
BEACON = "beacon"

PVA_MAGIC = 0xCA  # the first byte of every PVA message header
PVA_HEADER = 8
PVA_FLAG_CONTROL = 0x01  # bit 0: control message (no payload of ours)
PVA_FLAG_BIG_ENDIAN = 0x80  # bit 7: byte order of the header's size and of the payload
PVA_CMD_BEACON = 0x00  # pvaproto.h CMD_BEACON
PVA_CMD_SEARCH = 0x03  # pvaproto.h CMD_SEARCH
PVA_NULL_SIZE = 0xFF
PVA_LONG_SIZE = 0xFE

CA_HEADER = 16
CA_PROTO_VERSION = 0  # caproto.h
CA_PROTO_SEARCH = 6
CA_PROTO_RSRV_IS_UP = 13  # the server beacon
CA_DO_REPLY = 10  # caproto.h: a search's data type field says whether to answer a miss
CA_DONT_REPLY = 5
CA_EXTENDED_SIZE = 0xFFFF  # payload size of a header extended by two u32 (not used by searches)

_CA_HEADER = struct.Struct(">HHHHII")


@dataclass(frozen=True)
class Decoded:
    """One recognised discovery datagram.

    `names` are the PV names a search asks for (empty for a beacon). `address` is where a PVA
    search wants its replies (all zeros: the datagram's own source) or the server a beacon
    announces, as (address, port); None where the message carries none.
    """

    protocol: str  # PVA or CA
    kind: str  # SEARCH or BEACON
    names: tuple[str, ...] = ()
    address: tuple[str, int] | None = None


def decode_payload(payload: bytes) -> Decoded | None:
    """What the UDP payload `payload` is, or None if it is not a PVA or CA discovery message."""
    if not payload:
        return None
    try:
        if payload[0] == PVA_MAGIC:
            return _decode_pva(payload)
        return _decode_ca(payload)
    except (struct.error, IndexError, ValueError):
        # Truncated or inconsistent: the network said something we cannot read. Not a fault.
        return None


# -- PVAccess ---------------------------------------------------------------------------------


class _Reader:
    """A cursor over one PVA message payload in its declared byte order; raises on overrun."""

    def __init__(self, data: bytes, big_endian: bool) -> None:
        self.data = data
        self.offset = 0
        self.order = ">" if big_endian else "<"

    def take(self, count: int) -> bytes:
        end = self.offset + count
        if count < 0 or end > len(self.data):
            raise ValueError("truncated")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def unpack(self, fmt: str) -> int:
        raw = self.take(struct.calcsize(fmt))
        value: int = struct.unpack(self.order + fmt, raw)[0]
        return value

    def size(self) -> int:
        first = self.unpack("B")
        if first == PVA_NULL_SIZE:
            return -1
        if first == PVA_LONG_SIZE:
            return self.unpack("I")
        return first

    def string(self) -> str:
        length = self.size()
        if length < 0:
            return ""
        return self.take(length).decode("utf-8", errors="replace")

    def address(self) -> str:
        raw = IPv6Address(self.take(16))
        mapped = raw.ipv4_mapped
        return str(mapped if mapped is not None else raw)


def _decode_pva(datagram: bytes) -> Decoded | None:
    # A datagram may hold several messages (pvxs puts an origin tag before forwarded searches):
    # the first search or beacon wins, anything else is skipped by its declared size.
    offset = 0
    while offset + PVA_HEADER <= len(datagram):
        magic, _version, flags, command = datagram[offset : offset + 4]
        if magic != PVA_MAGIC:
            return None
        order = ">" if flags & PVA_FLAG_BIG_ENDIAN else "<"
        (size,) = struct.unpack_from(order + "I", datagram, offset + 4)
        body_start = offset + PVA_HEADER
        if flags & PVA_FLAG_CONTROL:
            # Control messages carry their value in the size field and have no payload.
            offset = body_start
            continue
        body = datagram[body_start : body_start + size]
        if len(body) < size:
            return None
        big_endian = bool(flags & PVA_FLAG_BIG_ENDIAN)
        if command == PVA_CMD_SEARCH:
            return _pva_search(_Reader(body, big_endian))
        if command == PVA_CMD_BEACON:
            return _pva_beacon(_Reader(body, big_endian))
        offset = body_start + size
    return None


def _pva_search(body: _Reader) -> Decoded:
    body.take(4 + 1 + 3)  # search sequence id, flags (reply required, unicast), reserved
    address = body.address()
    port = body.unpack("H")
    for _ in range(max(body.size(), 0)):
        body.string()  # transport protocols the client accepts ("tcp", "tls")
    names = []
    for _ in range(body.unpack("H")):
        body.unpack("I")  # the client's channel instance id
        names.append(body.string())
    return Decoded(PVA, SEARCH, tuple(names), (address, port))


def _pva_beacon(body: _Reader) -> Decoded:
    body.take(12 + 1 + 1 + 2)  # server GUID, flags, beacon sequence id, change count
    address = body.address()
    port = body.unpack("H")
    body.string()  # protocol ("tcp"); the server status field after it is not needed
    return Decoded(PVA, BEACON, (), (address, port))


# -- Channel Access ---------------------------------------------------------------------------


def _decode_ca(datagram: bytes) -> Decoded | None:
    names: list[str] = []
    beacon: Decoded | None = None
    offset = 0
    while offset + CA_HEADER <= len(datagram):
        command, size, data_type, _count, _cid, available = _CA_HEADER.unpack_from(datagram, offset)
        if size == CA_EXTENDED_SIZE:
            return None  # a large-array header: never part of discovery
        payload = datagram[offset + CA_HEADER : offset + CA_HEADER + size]
        if len(payload) < size:
            return None
        if command == CA_PROTO_SEARCH:
            # A search reply reuses command 6 with the server's port as data type: only a
            # request says DO_REPLY / DONT_REPLY there, and carries a NUL-terminated name.
            if data_type not in (CA_DO_REPLY, CA_DONT_REPLY) or b"\0" not in payload:
                return None
            names.append(payload.split(b"\0", 1)[0].decode("ascii", errors="replace"))
        elif command == CA_PROTO_RSRV_IS_UP:
            # data type: the server's TCP port; available: its IPv4 address (0: the source).
            host = ".".join(str(b) for b in available.to_bytes(4, "big"))
            beacon = Decoded(CA, BEACON, (), (host, data_type))
        elif command != CA_PROTO_VERSION:
            return None  # anything else is not discovery (or not CA at all)
        offset += CA_HEADER + size
    if offset != len(datagram):
        return None  # trailing bytes: not a CA datagram
    if names:
        return Decoded(CA, SEARCH, tuple(names))
    return beacon


# -- the --decode-pvaccess log ----------------------------------------------------------------

DECODED = "decoded"  # counter key: ("decoded", protocol, kind), as the service's metrics want
UNKNOWN = "unknown"  # the protocol of relayed payloads that are neither PVA nor CA discovery
_UNSPECIFIED = frozenset({"::", "0.0.0.0"})  # "reply to the datagram's source"


def describe(decoded: Decoded, source: str, interface: str) -> str:
    """One log line for `decoded`, seen from `source` (ip:port) on `interface`."""
    where = f"{decoded.protocol} {decoded.kind} from {source} on {interface}"
    address = ""
    if decoded.address is not None:
        host, port = decoded.address
        host = source.rsplit(":", 1)[0] if host in _UNSPECIFIED else host
        address = f"{host}:{port}"
    if decoded.kind == SEARCH:
        reply = f" (replies to {address})" if address else ""
        return f"{where}: {' '.join(decoded.names)}{reply}"
    return f"{where}: server {address}" if address else where


class DecodeLog:
    """Counts and rate-limits the decoded messages of captured frames.

    At most `burst` lines per protocol in any `window` seconds; the next line after a quiet
    spell says how many were left out, so a search storm costs a few lines, not thousands.
    """

    def __init__(self, burst: int = 10, window: float = 10.0) -> None:
        self.burst = burst
        self.window = window
        self.counts: Counter[tuple[str, ...]] = Counter()  # (DECODED, protocol, kind) -> count
        self._window_start: dict[str, float] = {}
        self._in_window: Counter[str] = Counter()
        self._suppressed: Counter[str] = Counter()

    def observe(self, frame: bytes, interface: str, now: float) -> str | None:
        """Decode the UDP payload of Ethernet `frame`; the line to log at info, or None."""
        try:
            udp = parse_udp_frame(frame)
        except FrameError:
            return None  # the relay's own parser counts those; not ours to judge
        decoded = decode_payload(udp.payload)
        if decoded is None:
            self.counts[DECODED, UNKNOWN, UNKNOWN] += 1
            return None
        self.counts[DECODED, decoded.protocol, decoded.kind] += 1
        protocol = decoded.protocol
        if now - self._window_start.get(protocol, float("-inf")) >= self.window:
            self._window_start[protocol] = now
            self._in_window[protocol] = 0
        if self._in_window[protocol] >= self.burst:
            self._suppressed[protocol] += 1
            return None
        self._in_window[protocol] += 1
        source = f"{ipaddress.IPv4Address(udp.src_ip)}:{udp.src_port}"
        line = describe(decoded, source, interface)
        left_out = self._suppressed.pop(protocol, 0)
        if left_out:
            line += f" ({left_out} more {protocol} messages not logged)"
        return line
