"""The mesh socket on loopback: what it sends and receives, and what it counts when it cannot."""

from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Iterator

import pytest

from crosscast.relay.capture import StartupError
from crosscast.relay.mesh import DRAIN_LIMIT, MeshSocket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def mesh() -> Iterator[MeshSocket]:
    m = MeshSocket(free_port(), 1 << 16)
    yield m
    m.close()


def drain(m: MeshSocket, want: int) -> list[tuple[bytes, str]]:
    """receive() until `want` datagrams came (loopback delivers at once; select() bounds it)."""
    got: list[tuple[bytes, str]] = []
    while len(got) < want and select.select([m.sock], [], [], 5)[0]:
        got += m.receive()
    return got


def test_a_datagram_sent_to_itself_is_received_with_its_sender(mesh: MeshSocket) -> None:
    mesh.send(b"CX hello", ["127.0.0.1"])
    assert drain(mesh, 1) == [(b"CX hello", "127.0.0.1")]
    assert mesh.counters == {("mesh_sent", "127.0.0.1"): 1}


def test_receive_returns_nothing_when_nothing_is_queued(mesh: MeshSocket) -> None:
    assert mesh.receive() == []


class _Endless:
    """A socket with more queued than one wake-up may take, each datagram just received."""

    def recvmsg(self, size: int, ancsize: int) -> tuple[bytes, list[object], int, tuple[str, int]]:
        return b"CX", [], 0, ("127.0.0.1", 7124)


def test_a_wake_up_reads_one_datagram_unless_the_previous_one_was_just_before(
    mesh: MeshSocket,
) -> None:
    # one receive per wake-up at low rates (no failing receive); a wake-up right after the
    # previous one drains, at most DRAIN_LIMIT so a mesh flood cannot starve the captures
    real = mesh.sock
    mesh.sock = _Endless()  # type: ignore[assignment]
    try:
        assert len(mesh.receive()) == 1
        assert len(mesh.receive()) == DRAIN_LIMIT
        mesh._woke -= 1.0  # the next wake-up comes a second later
        assert len(mesh.receive()) == 1
    finally:
        mesh.sock = real


def test_nothing_queued_is_left_behind_by_a_one_datagram_wake_up(mesh: MeshSocket) -> None:
    for n in range(3):
        mesh.send(b"CX %d" % n, ["127.0.0.1"])
    assert [d for d, _ in drain(mesh, 3)] == [b"CX 0", b"CX 1", b"CX 2"]


def test_datagrams_that_queued_too_long_are_dropped_and_counted_when_behind() -> None:
    mesh = MeshSocket(free_port(), 1 << 16, max_wait=0.05)  # long enough for a loaded machine
    try:
        for n in range(3):
            mesh.send(b"CX old %d" % n, ["127.0.0.1"])
        select.select([mesh.sock], [], [], 5)
        time.sleep(0.1)
        mesh.send(b"CX new", ["127.0.0.1"])
        # the first (late) wake-up relays what it finds; the next ones, still behind, drop
        assert drain(mesh, 2) == [(b"CX old 0", "127.0.0.1"), (b"CX new", "127.0.0.1")]
        assert mesh.counters["mesh_late",] == 2
    finally:
        mesh.close()


def test_datagrams_the_kernel_dropped_for_a_full_buffer_are_counted() -> None:
    small = MeshSocket(free_port(), 4096)  # the kernel's minimum, a couple of datagrams
    try:
        for _ in range(64):
            small.send(bytes(1400), ["127.0.0.1"])
        small.count_socket_drops()
        dropped = small.counters["mesh_socket_drops",]
        small.count_socket_drops()  # nothing twice
        assert dropped > 0
        assert small.counters["mesh_socket_drops",] == dropped
    finally:
        small.close()


def test_a_peer_that_cannot_be_sent_to_is_counted_by_peer(mesh: MeshSocket) -> None:
    # A broadcast address without SO_BROADCAST: sendto fails with EACCES, nothing leaves.
    mesh.send(b"CX", ["255.255.255.255", "127.0.0.1"])
    assert mesh.counters["mesh_send_errors", "255.255.255.255"] == 1
    assert mesh.counters["mesh_sent", "127.0.0.1"] == 1


class _ErrorThenNothing:
    """A socket whose next receive fails as an ICMP error for an earlier send would."""

    def __init__(self) -> None:
        self.calls = 0

    def recvmsg(self, size: int, ancsize: int) -> tuple[bytes, list[object], int, tuple[str, int]]:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        if self.calls == 2:
            return b"CX after", [], 0, ("127.0.0.1", 7124)
        raise BlockingIOError


def test_a_receive_error_is_a_receive_error_not_a_send_error(mesh: MeshSocket) -> None:
    real = mesh.sock
    mesh.sock = _ErrorThenNothing()  # type: ignore[assignment]
    mesh._woke = time.time()  # a busy socket: this wake-up drains
    try:
        assert mesh.receive() == [(b"CX after", "127.0.0.1")]  # and it goes on reading
    finally:
        mesh.sock = real
    assert mesh.counters == {("mesh_receive_errors",): 1}


def test_a_mesh_port_in_use_is_a_startup_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("0.0.0.0", 0))
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=f"cannot listen on mesh port {port}/udp"):
            MeshSocket(port, 1 << 16)
