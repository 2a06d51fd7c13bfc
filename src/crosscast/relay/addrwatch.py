"""Address and link changes from the kernel: a raw NETLINK_ROUTE socket, for wake-ups only.

Owns `AddressWatch`, a socket subscribed to the IPv4 address and link multicast groups of
rtnetlink. The service wakes on it and then asks the interfaces again (the ioctls of
capture.read_interface), so this module parses nothing: a message of any kind, or an overflow
(ENOBUFS: events were lost), means "look again". A raw socket rather than pyroute2: the service
needs the wake-up, not the decoding, and this is twenty lines without a dependency.
"""

from __future__ import annotations

import socket

NETLINK_ROUTE = 0  # linux/netlink.h
RTMGRP_LINK = 0x1  # linux/rtnetlink.h: interfaces created, deleted, up, down
RTMGRP_IPV4_IFADDR = 0x10  # linux/rtnetlink.h: IPv4 addresses added and removed
_READ = 65536


class AddressWatch:
    """Readable when an IPv4 address or a link changed in this network namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_ROUTE
        )
        try:
            self.sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR))
        except OSError:
            self.sock.close()
            raise

    def drain(self) -> bool:
        """Read what is queued; True if anything changed (or events were lost)."""
        changed = False
        while True:
            try:
                if not self.sock.recv(_READ):
                    return changed
            except BlockingIOError:
                return changed
            except OSError:  # ENOBUFS: the kernel dropped events; assume everything changed
                return True
            changed = True

    def close(self) -> None:
        self.sock.close()
