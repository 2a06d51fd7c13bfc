"""Packet sockets: capture on an interface through a kernel filter, and inject frames into it.

Owns the relay's AF_PACKET sockets (opened by crosscast.net.packet, the one opener), the
multicast memberships of the ingress interfaces and the ioctl look-ups of an interface's MAC and
IPv4 address. It must not decide anything: frames go to the
engine, and what the engine returns comes back here as bytes to write.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from crosscast.net.bpf import Instruction
from crosscast.net.packet import (
    AUXDATA_SPACE,
    MAX_FRAME,
    PACKET_AUXDATA,
    PACKET_MR_MULTICAST,
    SO_RCVBUFFORCE,
    SOL_PACKET,
    TP_STATUS_CSUMNOTREADY,
    add_membership,
    open_packet_socket,
    set_buffer,
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
DRAIN_LIMIT = 256  # frames per wake-up before yielding to the other sockets


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
    """One interface's packet socket: capture through a filter, inject frames, join groups."""

    name: str
    sock: socket.socket
    index: int
    groups: list[socket.socket] = field(default_factory=list)

    @classmethod
    def open(
        cls, name: str, program: Sequence[Instruction], groups: Iterable[int], rcvbuf: int
    ) -> PacketPort:
        try:
            index = socket.if_nametoindex(name)
        except OSError:
            raise StartupError(f"interface {name} does not exist") from None
        try:
            sock = open_packet_socket(name, program, auxdata=True, buffer_size=rcvbuf)
        except PermissionError:
            raise StartupError(
                f"no permission to open a raw socket on {name}: needs root or CAP_NET_RAW"
            ) from None
        except OSError as e:
            raise StartupError(f"cannot capture on {name}: {e.strerror}") from None
        port = cls(name=name, sock=sock, index=index)
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

    def receive(self) -> list[tuple[bytes, bool]]:
        """Drain what is queued (up to DRAIN_LIMIT): (frame, checksum-incomplete) pairs."""
        out = []
        recvmsg = self.sock.recvmsg
        for _ in range(DRAIN_LIMIT):
            try:
                frame, ancdata, _flags, _addr = recvmsg(MAX_FRAME, AUXDATA_SPACE)
            except BlockingIOError:
                break
            partial = False
            for level, kind, data in ancdata:
                if level == SOL_PACKET and kind == PACKET_AUXDATA:
                    partial = bool(struct.unpack_from("I", data)[0] & TP_STATUS_CSUMNOTREADY)
            out.append((frame, partial))
        return out

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def close(self) -> None:
        for membership in self.groups:
            membership.close()
        self.groups.clear()
        self.sock.close()
