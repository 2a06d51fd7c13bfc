"""crosscast.net.ring on a real kernel: a veth pair between two throw-away namespaces; frames
written on one end arrive in the RX ring on the other, exactly and in order, with the kernel's
metadata; the kernel counts what an undrained ring drops; a TX ring's frames arrive intact."""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from crosscast.net import netns, ring
from crosscast.net.bpf import DEFAULT_SNAPLEN, DROP_ALL, RET_K
from crosscast.net.packet import open_packet_socket
from crosscast.net.ring import (
    PAGE_SIZE,
    TP_STATUS_CSUMNOTREADY,
    TP_STATUS_VLAN_VALID,
    RxFrame,
    RxRing,
    TxRing,
)

pytestmark = pytest.mark.root

ACCEPT_ALL = ((RET_K, 0, 0, DEFAULT_SNAPLEN),)
ETH_P_TEST = 0x88B5  # IEEE 802 local experimental ethertype
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST = 0, 1, 2, 3  # if_packet.h
MAC_A = bytes.fromhex("02000000000a")
MAC_B = bytes.fromhex("02000000000b")
BROADCAST = b"\xff" * 6
MULTICAST = bytes.fromhex("01005e0102ea")
STRANGER = bytes.fromhex("02000000000c")
SMALL = ring.ring_geometry(16, frame_size=2048, block_size=PAGE_SIZE)
ARRIVAL = 2.0


@pytest.fixture
def pair(prefix: str) -> tuple[str, str]:
    """Namespaces A and B, eth0 in each, joined by a veth pair; no IPv6, so no chatter."""
    a, b = f"{prefix}-a", f"{prefix}-b"
    for ns in (a, b):
        netns.add(ns)
    netns.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b],
              ns=a)  # fmt: skip
    for ns, mac, ip in ((a, MAC_A, "10.203.0.1/24"), (b, MAC_B, "10.203.0.2/24")):
        netns.run(["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"], ns=ns)
        netns.run(["ip", "link", "set", "eth0", "address", mac.hex(":"), "up"], ns=ns)
        netns.run(["ip", "addr", "add", ip, "brd", "+", "dev", "eth0"], ns=ns)
    return a, b


def packet_socket(ns: str, receive: bool) -> socket.socket:
    """A packet socket on eth0 of `ns` from the relay's one opener: all frames, or none."""
    with netns.inside(ns):
        if receive:
            s = open_packet_socket("eth0", ACCEPT_ALL)
        else:  # protocol 0: bound for sending, receives nothing
            s = open_packet_socket("eth0", DROP_ALL, protocol=0, ignore_outgoing=False)
    s.setblocking(True)
    return s


@pytest.fixture
def sender(pair: tuple[str, str]) -> Iterator[socket.socket]:
    s = packet_socket(pair[0], receive=False)
    yield s
    s.close()


@pytest.fixture
def receiver(pair: tuple[str, str]) -> Iterator[socket.socket]:
    s = packet_socket(pair[1], receive=True)
    yield s
    s.close()


def numbered(n: int, dst: bytes = BROADCAST, size: int = 60) -> bytes:
    return dst + MAC_A + ETH_P_TEST.to_bytes(2, "big") + n.to_bytes(4, "big") + bytes(size - 18)


def receive(rx: RxRing, count: int, timeout: float = ARRIVAL) -> list[RxFrame]:
    """Drain on every readiness of the fd until `count` frames came (or the deadline passed)."""
    got: list[RxFrame] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and (left := deadline - time.monotonic()) > 0:
        if select.select([rx], [], [], left)[0]:
            got += rx.drain()
    return got


def test_frames_arrive_exactly_and_in_order_with_their_packet_type(
    sender: socket.socket, receiver: socket.socket
) -> None:
    rx = RxRing.attach(receiver)
    sent = [numbered(0, BROADCAST), numbered(1, MAC_B), numbered(2, STRANGER),
            numbered(3, MULTICAST), numbered(4, BROADCAST, 1514)]  # fmt: skip
    for f in sent:
        sender.send(f)
    got = receive(rx, len(sent))
    assert [f[0] for f in got] == sent
    assert [f[3] for f in got] == [
        PACKET_BROADCAST, PACKET_HOST, PACKET_OTHERHOST, PACKET_MULTICAST, PACKET_BROADCAST,
    ]  # fmt: skip
    assert not any(f[1] & (TP_STATUS_CSUMNOTREADY | TP_STATUS_VLAN_VALID) for f in got)
    assert all(abs(f[4] - time.time()) < 60 for f in got), "tp_sec is the arrival time"
    rx.close()


def test_drained_ring_leaves_the_fd_quiet(sender: socket.socket, receiver: socket.socket) -> None:
    sender.send(numbered(0))  # queued on the socket before the ring exists (veth is synchronous)
    rx = RxRing.attach(receiver)
    assert not select.select([rx], [], [], 0)[0], "a frame from before the ring keeps it readable"
    sender.send(numbered(1))
    assert [f[0] for f in receive(rx, 1)] == [numbered(1)]
    assert not select.select([rx], [], [], 0)[0], "readable with nothing left to drain"
    rx.close()


def test_ring_wraps_around_many_times_without_losing_or_reordering(
    sender: socket.socket, receiver: socket.socket
) -> None:
    rx = RxRing.attach(receiver, SMALL)
    got: list[bytes] = []
    total = 6 * SMALL.frame_nr + 5
    for n in range(total):
        sender.send(numbered(n))
        if n % 10 == 9:  # never more than 10 in a 16-slot ring
            got += [f[0] for f in receive(rx, 10)]
    got += [f[0] for f in receive(rx, total - len(got))]
    assert got == [numbered(n) for n in range(total)]
    assert rx.skipped == 0
    rx.close()


def test_kernel_counts_the_drops_of_an_undrained_ring(
    sender: socket.socket, receiver: socket.socket
) -> None:
    rx = RxRing.attach(receiver, SMALL)
    ring.packet_statistics(receiver)  # reading resets the counters
    burst = SMALL.frame_nr + 24
    for n in range(burst):
        sender.send(numbered(n))
    assert ring.packet_statistics(receiver) == (burst, 24)  # seen includes the dropped
    assert [f[0] for f in receive(rx, SMALL.frame_nr)] == [
        numbered(n) for n in range(SMALL.frame_nr)
    ]
    assert ring.packet_statistics(receiver) == (0, 0)
    sender.send(numbered(999))
    assert [f[0] for f in receive(rx, 1)] == [numbered(999)], "drained, it receives again"
    rx.close()


def test_vlan_tag_is_stripped_into_the_slot_header(
    sender: socket.socket, receiver: socket.socket
) -> None:
    rx = RxRing.attach(receiver)
    untagged = numbered(7)
    tci = (5 << 13) | 42  # priority 5, VLAN 42
    sender.send(untagged[:12] + struct.pack("!HH", 0x8100, tci) + untagged[12:])
    (got,) = receive(rx, 1)
    assert got[1] & TP_STATUS_VLAN_VALID
    assert got[2] == tci
    assert got[0] == untagged
    rx.close()


def test_datagram_from_a_local_socket_is_flagged_checksum_not_ready(
    pair: tuple[str, str], receiver: socket.socket
) -> None:
    rx = RxRing.attach(receiver)
    with netns.inside(pair[0]):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with udp:
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        udp.sendto(b"partial checksum", ("10.203.0.255", 5076))
    (got,) = receive(rx, 1)
    assert got[0].endswith(b"partial checksum")
    assert got[1] & TP_STATUS_CSUMNOTREADY, "veth passes the partial checksum through"
    rx.close()


def test_frame_longer_than_a_slot_is_counted_not_delivered(
    sender: socket.socket, receiver: socket.socket
) -> None:
    tiny = ring.ring_geometry(16, frame_size=256, block_size=PAGE_SIZE)
    rx = RxRing.attach(receiver, tiny)
    sender.send(numbered(0, size=600))
    sender.send(numbered(1))
    assert [f[0] for f in receive(rx, 1)] == [numbered(1)]
    assert rx.truncated == 1
    rx.close()


def test_tx_ring_frames_arrive_intact_and_in_order(
    pair: tuple[str, str], receiver: socket.socket
) -> None:
    rx = RxRing.attach(receiver)
    tx_sock = packet_socket(pair[0], receive=False)
    tx = TxRing.attach(tx_sock)
    sent = [numbered(n, size=60 + (n * 97) % 1455) for n in range(100)]
    for f in sent[:50]:
        assert tx.queue(f)
    tx.flush()
    for f in sent[50:]:
        assert tx.queue(f)
    tx.flush()
    assert [f[0] for f in receive(rx, len(sent))] == sent
    assert (tx.full, tx.rejected) == (0, 0)
    tx.close()
    tx_sock.close()
    rx.close()


def test_closed_ring_returns_the_socket_to_plain_receives(
    sender: socket.socket, receiver: socket.socket
) -> None:
    rx = RxRing.attach(receiver)
    rx.close()
    sender.send(numbered(5))
    assert select.select([receiver], [], [], ARRIVAL)[0]
    assert receiver.recv(2048) == numbered(5)
