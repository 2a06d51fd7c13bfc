"""Packet sockets: capture on an interface through a kernel filter, and inject frames into it.

Owns the relay's AF_PACKET sockets (opened by crosscast.net.packet, the one opener), their
receive rings (crosscast.net.ring), the multicast memberships of the ingress interfaces and the
ioctl look-ups of an interface's MAC, MTU and IPv4 address. It must not decide anything: frames
go to the engine, and what the engine returns comes back here as bytes to write.

Capture reads a TPACKET_V2 RX ring: a drain takes every frame ready (up to DRAIN_LIMIT) out of
shared memory with no system call, each with its tp_status (TP_STATUS_CSUMNOTREADY included),
where a `recvmsg` per frame cost a system call plus CPython's ioctl(SIOCGIFNAME) for a sender
address nobody reads, and every drain ended in a failing `recvmsg`. The ring also bounds the
queue (see ring_for): under overload the kernel drops and counts (PACKET_STATISTICS) instead of
queueing for hundreds of milliseconds. Egress is one `send` per frame on the bound socket.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from crosscast.net.bpf import Instruction
from crosscast.net.packet import (
    PACKET_MR_MULTICAST,
    SO_RCVBUFFORCE,
    add_membership,
    open_packet_socket,
    set_buffer,
)
from crosscast.net.ring import (
    DEFAULT_RX_GEOMETRY,
    RX_DATA_OFFSET,
    Geometry,
    RxFrame,
    RxRing,
    packet_statistics,
    ring_geometry,
)
from crosscast.relay.engine import Interface

# set_buffer and SO_RCVBUFFORCE live in crosscast.net.packet; mesh.py imports them from here.
__all__ = [
    "DRAIN_LIMIT",
    "SO_RCVBUFFORCE",
    "PacketPort",
    "StartupError",
    "own_addresses",
    "read_interface",
    "set_buffer",
]

SIOCGIFADDR = 0x8915  # linux/sockios.h
SIOCGIFNETMASK = 0x891B  # linux/sockios.h
SIOCGIFHWADDR = 0x8927  # linux/sockios.h
SIOCGIFMTU = 0x8921  # linux/sockios.h
DRAIN_LIMIT = 256  # frames per wake-up before yielding to the other sockets
# Seconds a frame may wait in a receive queue (the capture's ring, the mesh socket) before the
# relay drops it unread instead of relaying it late: when it cannot keep up, it drops (counted)
# rather than queueing. Only then: a frame that old is dropped when the reader is behind a
# backlog (the previous wake-up found one that old too and stopped at its limit), so a late
# wake-up on a busy machine, however often, loses nothing. 10 ms is the usable-rate bound of
# issue 8 (p99 <= 10 ms): a frame that old counts against the rate anyway. Mesh mode has two
# such queues in a row, but only one is the bottleneck at a time (the receiver for batched small
# frames, the sender for large ones).
MAX_WAIT = 0.010
RING_BYTES = DEFAULT_RX_GEOMETRY.size  # 1 MiB: 512 slots for a 1500-byte MTU
# An interface no rule captures on (egress only) still captures segment probes, a few frames a
# second; its ring is 16 slots, 32 KiB of RSS where a full ring would be 1 MiB.
PROBE_SLOTS = 16
PROBE_GEOMETRY = ring_geometry(PROBE_SLOTS)
_VLAN_TAG = 4  # an 802.1Q tag the kernel did not strip


class StartupError(RuntimeError):
    """A local problem that stops start-up: one line, exit status 2."""


def _ifreq(sock: socket.socket, request: int, name: str) -> bytes:
    return fcntl.ioctl(sock.fileno(), request, struct.pack("16s16x", name.encode()[:15]))


def read_interface(name: str) -> Interface:
    """MAC and primary IPv4 address of `name` (in this thread's namespace)."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        raise StartupError(f"interface {name} does not exist") from None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        mac = _ifreq(s, SIOCGIFHWADDR, name)[18:24]
        try:
            address = int.from_bytes(_ifreq(s, SIOCGIFADDR, name)[20:24], "big")
            mask = int.from_bytes(_ifreq(s, SIOCGIFNETMASK, name)[20:24], "big")
        except OSError as e:
            if e.errno != errno.EADDRNOTAVAIL:
                raise
            return Interface(name=name, mac=mac)
    return Interface(name=name, mac=mac, address=address, prefix_len=mask.bit_count())


def ring_for(mtu: int, probes_only: bool = False) -> Geometry:
    """The RX ring for an interface of this MTU: slots that hold a whole frame, in the same
    1 MiB as the default ring (512 slots at a 1500-byte MTU, a few ms of traffic at the
    relay's maximum: a burst, not a backlog). A jumbo MTU gets fewer, larger slots rather than
    frames the ring would have to cut (a cut frame is dropped and counted as too long).
    `probes_only` (no rule captures here): PROBE_SLOTS default slots at any MTU, since a segment
    probe is an envelope of under 100 bytes (a longer frame of its EtherType is cut and counted).
    """
    if probes_only:
        return PROBE_GEOMETRY
    need = RX_DATA_OFFSET + 14 + _VLAN_TAG + mtu
    if need <= DEFAULT_RX_GEOMETRY.frame_size:
        return DEFAULT_RX_GEOMETRY
    frame_size = 1 << (need - 1).bit_length()
    block = max(frame_size, DEFAULT_RX_GEOMETRY.block_size)
    return ring_geometry(max(64, RING_BYTES // frame_size), frame_size, block)


def interface_mtu(name: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        mtu: int = struct.unpack_from("i", _ifreq(s, SIOCGIFMTU, name), 16)[0]
    return mtu


def own_addresses() -> list[str]:
    """Every interface's primary IPv4 address in this namespace (to keep ourselves off the mesh)."""
    out = []
    for _, name in socket.if_nameindex():
        with contextlib.suppress(StartupError, OSError):
            iface = read_interface(name)
            if iface.address is not None:
                out.append(socket.inet_ntoa(iface.address.to_bytes(4, "big")))
    return out


@dataclass
class PacketPort:
    """One interface's packet socket: capture through a filter into an RX ring, inject frames,
    join groups."""

    name: str
    sock: socket.socket
    index: int
    ring: RxRing
    groups: list[socket.socket] = field(default_factory=list)
    sent_bytes: int = 0
    _reported: dict[str, int] = field(default_factory=dict)  # take_counts() totals so far

    @classmethod
    def open(
        cls,
        name: str,
        program: Sequence[Instruction],
        groups: Iterable[int],
        rcvbuf: int,
        probes_only: bool = False,
    ) -> PacketPort:
        try:
            index = socket.if_nametoindex(name)
        except OSError:
            raise StartupError(f"interface {name} does not exist") from None
        try:
            # SO_RCVBUF does not bound a ring; `rcvbuf` still sizes the send buffer.
            sock = open_packet_socket(name, program, buffer_size=rcvbuf)
        except PermissionError:
            raise StartupError(
                f"no permission to open a raw socket on {name}: needs root or CAP_NET_RAW"
            ) from None
        except OSError as e:
            raise StartupError(f"cannot capture on {name}: {e.strerror}") from None
        try:
            ring = RxRing.attach(sock, ring_for(interface_mtu(name), probes_only))
        except OSError as e:
            sock.close()
            raise StartupError(f"cannot map a receive ring on {name}: {e.strerror}") from None
        port = cls(name=name, sock=sock, index=index, ring=ring)
        try:
            for group in groups:
                port.join(group)
        except OSError as e:
            port.close()
            raise StartupError(f"cannot capture on {name}: {e.strerror}") from None
        return port

    def join(self, group: int) -> None:
        """Join `group` on this interface: IGMP, so snooping switches and bridges deliver it."""
        membership = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        mreqn = struct.pack("4s4si", group.to_bytes(4, "big"), bytes(4), self.index)
        membership.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        self.groups.append(membership)
        mac = bytes((0x01, 0x00, 0x5E, (group >> 16) & 0x7F, (group >> 8) & 0xFF, group & 0xFF))
        add_membership(self.sock, self.index, PACKET_MR_MULTICAST, mac)

    def receive(self) -> list[RxFrame]:
        """What the ring holds (up to DRAIN_LIMIT): (frame, tp_status, ...) tuples, no system
        call. A wake-up that finds nothing is a socket error (the link went down: ENETDOWN),
        which no receive call would otherwise clear: it is read here and raised."""
        frames = self.ring.drain(DRAIN_LIMIT, time.time() - MAX_WAIT)
        if not frames:
            err = self.take_error()
            if err:
                raise OSError(err, os.strerror(err))
        return frames

    def take_error(self) -> int:
        """The socket's pending error (an errno, 0 for none); reading it clears it."""
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def send(self, frame: bytes | bytearray) -> None:
        self.sent_bytes += self.sock.send(frame)  # send() says how many it took: a free count

    def take_counts(self) -> dict[str, int]:
        """What happened since the last call, by counter kind: frames the kernel dropped
        because the ring was full (PACKET_STATISTICS, which reading resets), frames too long
        for a slot, slots given up on (RxRing.skipped), frames that waited longer than
        MAX_WAIT (RxRing.late), and the bytes captured and sent."""
        _packets, dropped = packet_statistics(self.sock)
        ring = self.ring
        now = {
            "too_long": ring.truncated,
            "ring_skipped": ring.skipped,
            "capture_late": ring.late,
            "captured_bytes": ring.bytes,
            "emitted_bytes": self.sent_bytes,
        }
        out = {kind: n - self._reported.get(kind, 0) for kind, n in now.items()}
        self._reported = now
        out["kernel_drops"] = dropped
        return out

    def close(self) -> None:
        for membership in self.groups:
            membership.close()
        self.groups.clear()
        self.ring.close()
        self.sock.close()
