"""See frames on the wire: a packet-socket sniffer and the lab's own Ethernet/IPv4/UDP codec.

The codec here (`build_udp_frame`, `parse_udp_frame`, the checksums of `SniffedFrame`) is
deliberately NOT crosscast.net.frames: it is the independent test oracle that the relay's
frames are judged by. A bug in net.frames (a wrong checksum after a rewrite, a misread header)
must not be able to hide behind the same bug in the code that checks it, so keep the two apart
and keep this one small and obvious. It parses leniently (None for what is not IPv4/UDP) so a
malformed frame the relay emitted is still seen, not rejected.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from crosscast.lab import registry
from crosscast.lab.probes import DRAIN_LIMIT
from crosscast.net import netns

ETH_P_ALL = 0x0003  # linux/if_ether.h
PACKET_OUTGOING = 4  # linux/if_packet.h (sll_pkttype)


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total >> 16) + (total & 0xFFFF)
    return total


def build_udp_frame(
    src_mac: str,
    dst_mac: str,
    src_ip: str,
    dst_ip: str,
    sport: int,
    dport: int,
    payload: bytes,
    ttl: int = 64,
) -> bytes:
    """An Ethernet/IPv4/UDP frame with correct checksums (independent of frames.py)."""
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    length = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, length)
    udp0 = struct.pack("!HHHH", sport, dport, length, 0) + payload
    csum = ~_sum16(pseudo + udp0) & 0xFFFF or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, length, csum) + payload
    ip0 = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0x1234, 0, ttl, 17, 0, src, dst)
    ip = ip0[:10] + struct.pack("!H", ~_sum16(ip0) & 0xFFFF) + ip0[12:]
    mac = bytes.fromhex
    return mac(dst_mac.replace(":", "")) + mac(src_mac.replace(":", "")) + b"\x08\x00" + ip + udp


@dataclass(frozen=True)
class SniffedFrame:
    """An IPv4/UDP frame seen by a Sniffer (raw bytes kept for replays)."""

    src_mac: str
    dst_mac: str
    ip_src: str
    ip_dst: str
    sport: int
    dport: int
    payload: bytes
    pkttype: int
    raw: bytes

    @property
    def outgoing(self) -> bool:
        return self.pkttype == PACKET_OUTGOING

    @property
    def ip_checksum_ok(self) -> bool:
        ihl = (self.raw[14] & 0x0F) * 4
        return _sum16(self.raw[14 : 14 + ihl]) == 0xFFFF

    @property
    def udp_checksum_ok(self) -> bool:
        """True when the UDP checksum verifies (or is 0, "none"); as a receiver checks it.

        An outgoing frame sniffed on its sender's own interface may carry only a partial
        checksum (the NIC, here veth, is trusted to complete it): judge frames as received.
        """
        ihl = (self.raw[14] & 0x0F) * 4
        udp = self.raw[14 + ihl :]
        length = struct.unpack("!H", udp[4:6])[0]
        if udp[6:8] == b"\0\0":
            return True
        if length < 8 or length > len(udp):
            return False
        pseudo = self.raw[26:34] + struct.pack("!BBH", 0, 17, length)
        return _sum16(pseudo + udp[:length]) == 0xFFFF


def parse_udp_frame(frame: bytes, pkttype: int = 0) -> SniffedFrame | None:
    """Parse Ethernet/IPv4/UDP (first fragment or whole datagram); None for anything else."""
    if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14] >> 4 != 4 or ihl < 20 or frame[23] != 17 or len(frame) < 14 + ihl + 8:
        return None
    if struct.unpack("!H", frame[20:22])[0] & 0x1FFF:  # a later fragment: no UDP header
        return None
    total = struct.unpack("!H", frame[16:18])[0]
    sport, dport = struct.unpack("!HH", frame[14 + ihl : 18 + ihl])
    return SniffedFrame(
        src_mac=frame[6:12].hex(":"),
        dst_mac=frame[0:6].hex(":"),
        ip_src=socket.inet_ntoa(frame[26:30]),
        ip_dst=socket.inet_ntoa(frame[30:34]),
        sport=sport,
        dport=dport,
        payload=frame[14 + ihl + 8 : 14 + total],
        pkttype=pkttype,
        raw=frame,
    )


class Sniffer:
    """An AF_PACKET (ETH_P_ALL) socket on one interface of one namespace, parsing UDP frames.

    Create it before the traffic it must see; frames queue in the socket until read.
    """

    def __init__(self, ns: str, iface: str = "eth0", rcvbuf: int = 4 << 20) -> None:
        with netns.inside(ns):
            raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock = registry.keep_socket(ns, raw)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((iface, 0))
        self.sock.setblocking(False)
        self.ns, self.iface = ns, iface

    def drain(self) -> None:
        """Forget what has queued so far."""
        while True:
            try:
                self.sock.recvfrom(65536)
            except BlockingIOError:
                return

    def _read(self, timeout: float) -> SniffedFrame | bool | None:
        """One frame (parsed, or None when not UDP/IPv4), or False when nothing came in time."""
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return False
        try:
            data, addr = self.sock.recvfrom(65536)
        except BlockingIOError:
            return None
        return parse_udp_frame(data, addr[2])

    def collect(
        self,
        duration: float,
        match: Callable[[SniffedFrame], bool] = lambda _f: True,
    ) -> list[SniffedFrame]:
        """The UDP frames that `match` during `duration` seconds (and any already queued)."""
        out: list[SniffedFrame] = []
        deadline = time.monotonic() + duration
        while True:
            # After the deadline, still take what has already queued (duration 0: just that).
            left = deadline - time.monotonic()
            if left < -DRAIN_LIMIT:  # a storm: the queue never empties
                break
            got = self._read(left)
            if got is False:
                break
            if isinstance(got, SniffedFrame) and match(got):
                out.append(got)
        return out

    def wait_for(
        self, match: Callable[[SniffedFrame], bool], timeout: float
    ) -> SniffedFrame | None:
        """The first UDP frame that `match`es within `timeout` seconds, or None."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got = self._read(left)
            if got is False:
                return None
            if isinstance(got, SniffedFrame) and match(got):
                return got
        return None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Sniffer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def sniff(ns: str, iface: str = "eth0") -> Sniffer:
    """A Sniffer on `iface` in `ns`."""
    return Sniffer(ns, iface)
