"""AF_PACKET sockets: the kernel constants, the filter attach, and the one race-free opener.

This module owns how crosscast opens a packet socket on an interface, for the relay's capture
(relay/capture.py) and for the lease client (topology/leases/link.py). It decides nothing about
what a socket should let through: the filter comes in as a classic BPF program built by
crosscast.net.bpf. Errors are the kernel's OSError (PermissionError without CAP_NET_RAW); the
callers turn them into their own one-line start-up errors.
"""

from __future__ import annotations

import array
import contextlib
import socket
import struct
from collections.abc import Sequence

from crosscast.net.bpf import DROP_ALL, Instruction, assemble

__all__ = [
    "AUXDATA_FORMAT",
    "AUXDATA_SPACE",
    "ETH_P_ALL",
    "MAX_FRAME",
    "PACKET_ADD_MEMBERSHIP",
    "PACKET_AUXDATA",
    "PACKET_IGNORE_OUTGOING",
    "PACKET_MR_MULTICAST",
    "PACKET_MR_UNICAST",
    "PACKET_OUTGOING",
    "SOL_PACKET",
    "SO_ATTACH_FILTER",
    "SO_RCVBUFFORCE",
    "SO_SNDBUFFORCE",
    "TP_STATUS_CSUMNOTREADY",
    "add_membership",
    "attach_filter",
    "open_packet_socket",
    "set_buffer",
]

ETH_P_ALL = 0x0003  # linux/if_ether.h
SOL_PACKET = 263  # linux/socket.h
PACKET_ADD_MEMBERSHIP = 1  # linux/if_packet.h
PACKET_OUTGOING = 4  # linux/if_packet.h: sll_pkttype of frames this host sent
PACKET_AUXDATA = 8  # linux/if_packet.h
PACKET_IGNORE_OUTGOING = 23  # linux/if_packet.h (Linux >= 4.20)
PACKET_MR_MULTICAST = 0  # linux/if_packet.h
PACKET_MR_UNICAST = 3  # linux/if_packet.h: an extra unicast address the interface accepts
TP_STATUS_CSUMNOTREADY = 1 << 3  # linux/if_packet.h: checksum left to the NIC (local sender)
SO_ATTACH_FILTER = 26  # asm-generic/socket.h
SO_RCVBUFFORCE = 33  # asm-generic/socket.h (CAP_NET_ADMIN: beyond net.core.rmem_max)
SO_SNDBUFFORCE = 32  # asm-generic/socket.h
AUXDATA_FORMAT = "IIIHHHH"  # linux/if_packet.h: struct tpacket_auxdata
AUXDATA_SPACE = socket.CMSG_SPACE(struct.calcsize(AUXDATA_FORMAT))
MAX_FRAME = 65535  # bytes asked of one recv: more than any frame the kernel hands up


def attach_filter(sock: socket.socket, program: Sequence[Instruction]) -> None:
    """Attach a classic BPF program (SO_ATTACH_FILTER), replacing the socket's filter."""
    # An array, not ctypes, for the program's address: ctypes costs 0.4 MB of RSS in the relay.
    code = array.array("B", assemble(program))
    # struct sock_fprog (linux/filter.h): unsigned short len, struct sock_filter *filter.
    fprog = struct.pack("HL", len(program), code.buffer_info()[0])
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def set_buffer(sock: socket.socket, force: int, plain: int, size: int) -> None:
    """Set a socket buffer to `size`: the FORCE option if we may, else the capped one."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, plain, size)  # capped at net.core.[rw]mem_max


def open_packet_socket(
    interface: str,
    program: Sequence[Instruction],
    *,
    protocol: int = ETH_P_ALL,
    ignore_outgoing: bool | None = True,
    auxdata: bool = False,
    buffer_size: int | None = None,
) -> socket.socket:
    """A packet socket bound to `interface`, that queues only what `program` accepts.

    Race-free: a socket made with protocol 0 receives nothing until bind(), so the drop-all
    filter goes on first, then the bind, then a drain of anything queued before the filter
    took hold, and only then the real filter (the attach race pyroute2's rawsocket documents).
    An ETH_P_IP socket sees nothing on a bridge port, hence ETH_P_ALL by default.

    `ignore_outgoing`: True sets PACKET_IGNORE_OUTGOING (not to see our own transmissions) and
    fails without it; None sets it where the kernel has it (Linux >= 4.20) and goes on
    without; False leaves it off. `auxdata`: PACKET_AUXDATA, the per-frame checksum status.
    `buffer_size`: receive and send buffers (forced beyond the sysctl caps if we may).

    The socket is returned non-blocking. On any error it is closed and the OSError raised.
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        attach_filter(sock, DROP_ALL)
        sock.bind((interface, protocol))
        if ignore_outgoing is None:
            with contextlib.suppress(OSError):  # kernels before 4.20 lack it
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        elif ignore_outgoing:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        if auxdata:
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        if buffer_size is not None:
            set_buffer(sock, SO_RCVBUFFORCE, socket.SO_RCVBUF, buffer_size)
            set_buffer(sock, SO_SNDBUFFORCE, socket.SO_SNDBUF, buffer_size)
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:  # ends: with drop-all attached, nothing new is queued
                sock.recv(MAX_FRAME)
        attach_filter(sock, program)
    except BaseException:
        sock.close()
        raise
    return sock


def add_membership(sock: socket.socket, index: int, kind: int, mac: bytes) -> None:
    """Make interface `index` accept frames to `mac` (a group's MAC with PACKET_MR_MULTICAST, an
    extra unicast address with PACKET_MR_UNICAST) for as long as `sock` is open: the kernel
    drops the membership when the socket closes."""
    mreq = struct.pack("iHH8s", index, kind, len(mac), mac)  # struct packet_mreq
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
