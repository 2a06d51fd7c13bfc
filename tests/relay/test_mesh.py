"""The mesh socket on loopback: what it sends and receives, and what it counts when it cannot."""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from crosscast.relay.capture import StartupError
from crosscast.relay.mesh import (
    DRAIN_LIMIT,
    GSO_MAX_BYTES,
    GSO_MAX_SEGMENTS,
    SO_MEMINFO,
    SO_TIMESTAMPNS,
    SOL_UDP,
    UDP_GRO,
    MeshSocket,
    gso_runs,
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def queued_bytes(m: MeshSocket) -> int:
    """sk_rmem_alloc: the truesize of every datagram in the receive queue (SO_MEMINFO[0])."""
    return int(struct.unpack("=9I", m.sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 36))[0])


def wait_queued(m: MeshSocket, n: int, first: int) -> None:
    """Until `n` datagrams of `first` bytes of truesize each are queued (5 s at most): on a
    loaded VM the kernel can hand loopback datagrams over (softirq, ksoftirqd) 100 ms late."""
    deadline = time.monotonic() + 5
    while queued_bytes(m) < n * first and time.monotonic() < deadline:
        time.sleep(0.005)


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
    mesh.send([b"CX hello"], ["127.0.0.1"])
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
        mesh.send([b"CX %d" % n], ["127.0.0.1"])
    assert [d for d, _ in drain(mesh, 3)] == [b"CX 0", b"CX 1", b"CX 2"]


def test_datagrams_that_queued_too_long_are_dropped_and_counted_when_behind() -> None:
    mesh = MeshSocket(free_port(), 1 << 16, max_wait=0.05)  # long enough for a loaded machine
    try:
        old = DRAIN_LIMIT + 3  # more than one wake-up takes
        mesh.send([b"CX old 0"], ["127.0.0.1"])
        select.select([mesh.sock], [], [], 5)
        first = queued_bytes(mesh)
        for n in range(1, old):
            mesh.send([b"CX old %d" % n], ["127.0.0.1"])
        wait_queued(mesh, old, first)  # every one of them queued before the wait starts
        time.sleep(0.1)
        mesh.send([b"CX new"], ["127.0.0.1"])
        # The first (late) wake-up relays what it finds, a whole drain, although a wake-up long
        # after the previous one would read one datagram; the next ones, still behind, drop.
        got = drain(mesh, DRAIN_LIMIT + 1)
        assert got == [(b"CX old %d" % n, "127.0.0.1") for n in range(DRAIN_LIMIT)] + [
            (b"CX new", "127.0.0.1")
        ]
        assert mesh.counters["mesh_late",] == 3
    finally:
        mesh.close()


def test_late_wake_ups_that_leave_nothing_queued_lose_nothing() -> None:
    # A busy machine that wakes the relay late, again and again, at a low rate: no backlog, so
    # every datagram is relayed however late (what the CI soak and a loaded fire-truck PC see).
    mesh = MeshSocket(free_port(), 1 << 16, max_wait=0.05)
    try:
        for n in range(3):
            mesh.send([b"CX %d" % n], ["127.0.0.1"])
            select.select([mesh.sock], [], [], 5)
            time.sleep(0.1)
            assert mesh.receive() == [(b"CX %d" % n, "127.0.0.1")]
        assert mesh.counters["mesh_late",] == 0
    finally:
        mesh.close()


def test_datagrams_the_kernel_dropped_for_a_full_buffer_are_counted() -> None:
    small = MeshSocket(free_port(), 4096)  # the kernel's minimum, a couple of datagrams
    try:
        for _ in range(64):
            small.send([bytes(1400)], ["127.0.0.1"])
        small.count_socket_drops()
        dropped = small.counters["mesh_socket_drops",]
        small.count_socket_drops()  # nothing twice
        assert dropped > 0
        assert small.counters["mesh_socket_drops",] == dropped
    finally:
        small.close()


def test_a_peer_that_cannot_be_sent_to_is_counted_by_peer(mesh: MeshSocket) -> None:
    # A broadcast address without SO_BROADCAST: sendto fails with EACCES, nothing leaves.
    mesh.send([b"CX"], ["255.255.255.255", "127.0.0.1"])
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


# -- segmentation offload (UDP GSO out, UDP GRO in) ---------------------------------------------


def sizes(runs: list[list[bytes]]) -> list[list[int]]:
    return [[len(d) for d in run] for run in runs]


def test_runs_are_equal_sizes_closed_by_at_most_one_shorter_datagram() -> None:
    d = [bytes(n) for n in (100, 100, 100, 40, 100, 120, 120, 7, 7)]
    assert sizes([list(r) for r in gso_runs(d)]) == [[100, 100, 100, 40], [100], [120, 120, 7], [7]]
    assert gso_runs([]) == []


def test_datagrams_longer_than_the_offload_limit_are_runs_of_their_own() -> None:
    d = [bytes(n) for n in (500, 500, 300, 300, 300)]
    assert sizes([list(r) for r in gso_runs(d, largest=400)]) == [[500], [500], [300, 300, 300]]
    assert sizes([list(r) for r in gso_runs(d, largest=0)]) == [[500], [500], [300], [300], [300]]


def test_a_run_never_exceeds_the_kernels_segment_or_byte_limit() -> None:
    small = [bytes(10)] * (GSO_MAX_SEGMENTS + 5)
    assert [len(r) for r in gso_runs(small)] == [GSO_MAX_SEGMENTS, 5]
    big = [bytes(1422)] * 100
    runs = gso_runs(big)
    assert all(sum(map(len, r)) <= GSO_MAX_BYTES for r in runs)
    assert sum(len(r) for r in runs) == 100
    assert len(runs[0]) == GSO_MAX_BYTES // 1422


class _Recording:
    """A real socket that also records how it was called."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.calls: list[str] = []

    def recvmsg(self, size: int, ancsize: int) -> tuple[bytes, list[object], int, object]:
        self.calls.append("recvmsg")
        return self.real.recvmsg(size, ancsize)  # type: ignore[return-value]

    def sendmsg(self, *args: object) -> int:
        self.calls.append("sendmsg")
        return self.real.sendmsg(*args)  # type: ignore[arg-type]

    def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        self.calls.append("sendto")
        return self.real.sendto(data, address)

    def fileno(self) -> int:
        return self.real.fileno()


def test_a_run_leaves_in_one_send_and_arrives_as_the_same_datagrams_in_one_receive(
    mesh: MeshSocket,
) -> None:
    sent = [b"A" * 1000, b"B" * 1000, b"C" * 1000, b"tail"]
    real = mesh.sock
    spy = _Recording(real)
    mesh.sock = spy  # type: ignore[assignment]
    try:
        mesh.send(sent, ["127.0.0.1"])
        assert spy.calls == ["sendmsg"]
        assert drain(mesh, 4) == [(d, "127.0.0.1") for d in sent]
        assert spy.calls == ["sendmsg", "recvmsg"]  # coalesced by the kernel (UDP_GRO)
    finally:
        mesh.sock = real
    assert mesh.counters == {("mesh_sent", "127.0.0.1"): 4}


class _RefusesSegments(_Recording):
    def __init__(self, real: socket.socket, err: int) -> None:
        super().__init__(real)
        self.err = err

    def sendmsg(self, *args: object) -> int:
        self.calls.append("sendmsg")
        raise OSError(self.err, "refused")


def test_a_kernel_that_refuses_segmented_sends_gets_one_datagram_per_send_from_then_on(
    mesh: MeshSocket,
) -> None:
    real = mesh.sock
    spy = _RefusesSegments(real, errno.EIO)  # what a route without checksum offload says
    mesh.sock = spy  # type: ignore[assignment]
    try:
        mesh.send([b"one", b"two"], ["127.0.0.1"])
        mesh.send([b"six", b"ten"], ["127.0.0.1"])
        assert spy.calls == ["sendmsg", "sendto", "sendto", "sendto", "sendto"]
        assert [d for d, _ in drain(mesh, 4)] == [b"one", b"two", b"six", b"ten"]
    finally:
        mesh.sock = real
    assert mesh.gso_max == 0
    assert mesh.counters == {("mesh_sent", "127.0.0.1"): 4, ("mesh_gso_refused",): 1}


class _RefusesLongSegments(_Recording):
    """A path whose MTU carries segments of at most `mtu` bytes of UDP payload."""

    def __init__(self, real: socket.socket, mtu: int) -> None:
        super().__init__(real)
        self.mtu = mtu

    def sendmsg(self, *args: object) -> int:
        ancillary = args[1]
        if struct.unpack("=H", ancillary[0][2])[0] > self.mtu:  # type: ignore[index]
            self.calls.append("sendmsg refused")
            raise OSError(errno.EINVAL, "Invalid argument")
        return super().sendmsg(*args)


def test_segments_over_the_path_mtu_are_sent_alone_and_smaller_runs_still_segmented(
    mesh: MeshSocket,
) -> None:
    real = mesh.sock
    spy = _RefusesLongSegments(real, 1000)
    mesh.sock = spy  # type: ignore[assignment]
    try:
        for n in (1200, 1200, 1100, 900):  # each size over the path's is refused once
            mesh.send([b"x" * n, b"x" * n], ["127.0.0.1"])
        alone = ["sendto", "sendto"]
        assert spy.calls == [
            *["sendmsg refused", *alone],
            *alone,
            *["sendmsg refused", *alone],
            "sendmsg",
        ]
        assert len(drain(mesh, 8)) == 8
    finally:
        mesh.sock = real
    assert mesh.gso_max == 1099
    assert mesh.counters == {("mesh_sent", "127.0.0.1"): 8, ("mesh_gso_refused",): 2}


def test_a_run_to_a_peer_that_cannot_be_sent_to_counts_each_of_its_datagrams(
    mesh: MeshSocket,
) -> None:
    mesh.send([b"CX 1", b"CX 2", b"CX"], ["255.255.255.255", "127.0.0.1"])  # EACCES, then fine
    assert mesh.counters["mesh_send_errors", "255.255.255.255"] == 3
    assert mesh.counters["mesh_sent", "127.0.0.1"] == 3
    assert mesh.gso_max  # a refused peer is not a refused offload


class _Coalesced:
    """A socket holding `times` runs the kernel coalesced, each stamped `received`."""

    def __init__(self, data: bytes, segment: int, received: float, times: int = 1) -> None:
        self.times = times
        sec = int(received)
        stamp = struct.pack("=qq", sec, int((received - sec) * 1e9))
        self.answer = (
            data,
            [
                (SOL_UDP, UDP_GRO, struct.pack("=i", segment)),
                (socket.SOL_SOCKET, SO_TIMESTAMPNS, stamp),
            ],
            0,
            ("10.0.0.2", 7124),
        )

    def recvmsg(self, size: int, ancsize: int) -> tuple[bytes, list[object], int, tuple[str, int]]:
        if not self.times:
            raise BlockingIOError
        self.times -= 1
        return self.answer  # type: ignore[return-value]


def test_a_coalesced_run_is_cut_back_into_its_datagrams(mesh: MeshSocket) -> None:
    real = mesh.sock
    mesh.sock = _Coalesced(b"aaaabbbbcc", 4, time.time())  # type: ignore[assignment]
    try:
        assert mesh.receive() == [(b"aaaa", "10.0.0.2"), (b"bbbb", "10.0.0.2"), (b"cc", "10.0.0.2")]
    finally:
        mesh.sock = real


def test_a_coalesced_run_that_waited_too_long_counts_every_datagram_late(
    mesh: MeshSocket,
) -> None:
    real = mesh.sock
    # 12 runs of 3: a late wake-up relays 33 (a run is not split) and leaves 1 run queued.
    mesh.sock = _Coalesced(b"aaaabbbbcc", 4, time.time() - 1.0, 12)  # type: ignore[assignment]
    try:
        assert len(mesh.receive()) == 33
        mesh._woke -= 1.0  # a wake-up long after the previous one
        assert mesh.receive() == []  # the previous wake-up found one that old and more: behind
    finally:
        mesh.sock = real
    assert mesh.counters["mesh_late",] == 3
