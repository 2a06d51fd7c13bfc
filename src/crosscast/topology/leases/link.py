"""The lease client's link: an AF_PACKET socket on one interface (a VLAN's bridge).

Owns the socket's life and its receive timeout. The socket comes from crosscast.net.packet (the
one opener, race-free) with a kernel filter from crosscast.net.bpf that keeps ARP and
unfragmented IPv4 UDP to the client port, so the client wakes only for what may answer it.
`Link` is the interface the client needs; tests pass a fake.
"""

from __future__ import annotations

import socket
import time
from typing import Protocol

from crosscast.net import netns
from crosscast.net.bpf import udp_port_program
from crosscast.net.frames import mac_from_str, mac_to_str
from crosscast.net.packet import (
    MAX_FRAME,
    PACKET_MR_UNICAST,
    PACKET_OUTGOING,
    add_membership,
    open_packet_socket,
)
from crosscast.topology.leases import dhcp
from crosscast.topology.leases.binding import Target, UsageError

FILTER = udp_port_program(dhcp.CLIENT_PORT, ethertypes=[dhcp.ETH_P_ARP])


class Link(Protocol):
    """Where the client's frames go and come from: an AF_PACKET socket, or a fake in tests."""

    mac: str  # the interface's own MAC: ARP probes are sent from it

    def send(self, frame: bytes) -> None: ...

    def recv(self, timeout: float) -> bytes | None:
        """The next frame within `timeout` seconds, or None."""
        ...


class PacketLink:
    """An AF_PACKET socket on one interface (a VLAN's bridge), filtered in the kernel.

    DHCP replies come back broadcast (we set the BOOTP broadcast flag) and ARP replies to our
    probes come to the interface's own MAC (`self.mac`), so no promiscuous mode is needed.
    """

    def __init__(
        self, interface: str, ns: str | None = None, accept_mac: str | None = None
    ) -> None:
        self.interface = interface
        try:
            with netns.inside(ns):
                # PACKET_IGNORE_OUTGOING where the kernel has it; recv() skips our own frames
                # by their packet type where it does not.
                sock = open_packet_socket(interface, FILTER, ignore_outgoing=None)
                if accept_mac is not None:
                    # Kea, unlike dhcpd, answers at layer 2 to the client hardware address even
                    # when the broadcast flag asks for a broadcast; that MAC is the container's,
                    # not this interface's, so the interface accepts it while the socket is open.
                    index = socket.if_nametoindex(interface)
                    add_membership(sock, index, PACKET_MR_UNICAST, mac_from_str(accept_mac))
        except FileNotFoundError:
            raise UsageError(f"network namespace {ns} does not exist") from None
        except PermissionError:
            raise UsageError("a raw (AF_PACKET) socket needs root or CAP_NET_RAW") from None
        except OSError as exc:
            where = f" in namespace {ns}" if ns else ""
            raise UsageError(f"cannot open interface {interface}{where}: {exc.strerror}") from None
        self._sock = sock
        # A bound packet socket's own address is the interface's (sockaddr_ll.sll_addr).
        self.mac = mac_to_str(sock.getsockname()[4][:6])

    def send(self, frame: bytes) -> None:
        self._sock.send(frame)

    def recv(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                frame, address = self._sock.recvfrom(MAX_FRAME)
            except TimeoutError:
                return None
            if address[2] != PACKET_OUTGOING:  # our own frames, when IGNORE_OUTGOING is absent
                return frame

    def close(self) -> None:
        self._sock.close()


def open_packet_link(target: Target, accept_mac: str | None = None) -> Link:
    """The PacketLink for `target` that also accepts frames to `accept_mac` (the client's own
    hardware address); a UsageError when its namespace does not exist."""
    if target.netns is not None and not netns.exists(target.netns):
        raise UsageError(f"network namespace {target.netns} does not exist")
    return PacketLink(target.interface, target.netns, accept_mac)
