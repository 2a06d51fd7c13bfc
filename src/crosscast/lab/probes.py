"""UDP probes inside lab namespaces: listen, send (broadcast, unicast, multicast, raw), and
wait for what must arrive or must not.

Sockets are created inside the namespace (netns.inside) and used from the calling thread; a
listener stays registered with its namespace, so the teardown of its prefix closes it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections.abc import Callable, Mapping

from crosscast.lab import registry
from crosscast.net import netns

DRAIN_LIMIT = 0.5  # seconds a collect() may go on past its window reading what had queued
ARRIVAL = 5.0  # seconds a datagram that should cross may take (IGMP snooping, ARP, discovery)
RESEND = 0.25  # seconds between re-sends while waiting for an arrival


def udp_listener(ns: str, port: int, bind: str = "") -> socket.socket:
    """A non-blocking UDP socket bound to (bind, port) inside `ns` (receives broadcasts).

    It stays open until you close it or teardown() of its prefix closes it.
    """
    with netns.inside(ns):
        s = registry.keep_socket(ns, socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.bind((bind, port))
    s.setblocking(False)
    return s


def collect(listener: socket.socket, duration: float) -> list[tuple[bytes, str]]:
    """What `listener` receives during `duration` seconds (and any already queued):
    (payload, source IP) pairs."""
    out: list[tuple[bytes, str]] = []
    deadline = time.monotonic() + duration
    while True:
        # After the deadline, still take what has already queued (duration 0: just that).
        left = deadline - time.monotonic()
        if left < -DRAIN_LIMIT:  # a storm: the queue never empties
            break
        ready, _, _ = select.select([listener], [], [], max(0.0, left))
        if not ready:
            break
        with contextlib.suppress(BlockingIOError):
            data, addr = listener.recvfrom(65536)
            out.append((data, addr[0]))
    return out


def receive(
    listener: socket.socket,
    timeout: float,
    match: Callable[[bytes, str], bool] = lambda _d, _s: True,
) -> tuple[bytes, str] | None:
    """The first datagram that `match`es within `timeout` seconds, or None."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([listener], [], [], left)
        if not ready:
            return None
        try:
            data, addr = listener.recvfrom(65536)
        except BlockingIOError:
            continue
        if match(data, addr[0]):
            return data, addr[0]


def send_broadcast(
    ns: str, dst: str, port: int, payload: bytes, src: str | None = None, sport: int = 0
) -> None:
    """Send one UDP datagram with SO_BROADCAST from `ns` (optionally bound to `src`)."""
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if src is not None or sport:
            s.bind((src or "", sport))
        s.sendto(payload, (dst, port))


def send_udp(ns: str, dst: str, port: int, payload: bytes, src: str | None = None) -> None:
    """Send one UDP datagram from `ns` (a unicast; SO_BROADCAST is not set)."""
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        if src is not None:
            s.bind((src, 0))
        s.sendto(payload, (dst, port))


def send_frame(ns: str, iface: str, frame: bytes) -> None:
    """Write a raw Ethernet frame onto `iface` in `ns`."""
    with netns.inside(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with s:
        s.bind((iface, 0))
        s.send(frame)


def multicast_listener(ns: str, group: str, port: int, iface: str = "eth0") -> socket.socket:
    """Bound to (group, port) so only that group's datagrams arrive; IGMP join on `iface`."""
    with netns.inside(ns):
        s = registry.keep_socket(ns, socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        index = socket.if_nametoindex(iface)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((group, port))
    mreqn = struct.pack("4s4si", socket.inet_aton(group), bytes(4), index)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
    s.setblocking(False)
    return s


def send_multicast(
    ns: str, group: str, port: int, payload: bytes, *, ttl: int = 1, iface: str = "eth0"
) -> None:
    """One datagram to group:port out of `iface` with TTL `ttl` (1, as senders default to)."""
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        index = socket.if_nametoindex(iface)
    with s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        s.setsockopt(
            socket.IPPROTO_IP,
            socket.IP_MULTICAST_IF,
            struct.pack("4s4si", bytes(4), bytes(4), index),
        )
        s.sendto(payload, (group, port))


def drain(sock: socket.socket) -> None:
    """Forget what a listener has queued so far."""
    while True:
        try:
            sock.recv(65536)
        except BlockingIOError:
            return


def tagged(tag: bytes) -> Callable[[bytes, str], bool]:
    """Match datagrams whose payload starts with `tag`."""
    return lambda data, _src: data.startswith(tag)


def send_until_received(
    send: Callable[[bytes], None],
    listener: socket.socket,
    tag: bytes,
    timeout: float = ARRIVAL,
    interval: float = RESEND,
) -> tuple[bytes, str] | None:
    """Send `tag + b'#<n>'` every `interval` seconds until `listener` gets one; None on timeout.

    Re-sending covers what is not yet settled when a check starts (IGMP snooping, ARP, peer
    discovery), and the counter keeps each copy distinct for the relays' duplicate window.
    """
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n += 1
        send(tag + b"#%d" % n)
        got = receive(listener, min(interval, deadline - time.monotonic()), tagged(tag))
        if got is not None:
            return got
    return None


def arrivals(
    listeners: Mapping[str, socket.socket], tag: bytes, window: float
) -> dict[str, list[tuple[bytes, str]]]:
    """What each named listener received starting with `tag` during one shared `window`
    (only the listeners that got something are in the result)."""
    got: dict[str, list[tuple[bytes, str]]] = {name: [] for name in listeners}
    by_sock = {sock: name for name, sock in listeners.items()}
    deadline = time.monotonic() + window
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(list(by_sock), [], [], left)
        for sock in ready:
            with contextlib.suppress(BlockingIOError):
                data, addr = sock.recvfrom(65536)
                if data.startswith(tag):
                    got[by_sock[sock]].append((data, addr[0]))
    return {name: found for name, found in got.items() if found}
