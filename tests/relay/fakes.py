"""Fakes of the relay's Host (relay/host.py): interfaces, sockets and DNS without a kernel.

Each fake socket is one end of a real socketpair, so an event loop can watch it; a test wakes
the reader by calling `wake()` and decides what `receive()` returns by queueing it.
"""

from __future__ import annotations

import contextlib
import socket
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from crosscast.net.bpf import Instruction
from crosscast.relay.capture import StartupError
from crosscast.relay.engine import Interface


class _Wakeable:
    def __init__(self) -> None:
        self.sock, self._peer = socket.socketpair()
        self.sock.setblocking(False)
        self.closed = False

    def wake(self) -> None:
        self._peer.send(b"x")

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self.sock.recv(4096)

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        self._peer.close()


class FakePort(_Wakeable):
    """A capture port: `queued` is what the next receive() returns; `sent` what was written."""

    def __init__(self, name: str, index: int, groups: Iterable[int]) -> None:
        super().__init__()
        self.name = name
        self.index = index
        self.groups = list(groups)
        self.queued: list[tuple[bytes, int]] = []  # (frame, tp_status)
        self.sent: list[bytes] = []
        self.error: OSError | None = None  # raised by the next receive()
        self.pending_error = 0  # what the next take_error() reports (an errno)
        self.kernel_dropped = 0  # what the next take_counts() reports
        self.too_long = 0
        self.skipped = 0
        self.late = 0

    def take_error(self) -> int:
        err, self.pending_error = self.pending_error, 0
        return err

    def take_counts(self) -> dict[str, int]:
        out = {
            "kernel_drops": self.kernel_dropped,
            "too_long": self.too_long,
            "ring_skipped": self.skipped,
            "capture_late": self.late,
        }
        self.kernel_dropped = self.too_long = self.skipped = self.late = 0
        return out

    def receive(self) -> list[tuple[bytes, int]]:
        self._drain()
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        out, self.queued = self.queued, []
        return out

    def send(self, frame: bytes | bytearray) -> None:
        self.sent.append(bytes(frame))


class FakeMesh(_Wakeable):
    """The mesh socket: `queued` (datagram, sender) pairs in, `sent` (datagram, peer) out."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.counters: Counter[tuple[str, ...]] = Counter()
        self.queued: list[tuple[bytes, str]] = []
        self.sent: list[tuple[bytes, str]] = []
        self.socket_dropped = 0  # what the next count_socket_drops() adds

    def receive(self) -> list[tuple[bytes, str]]:
        self._drain()
        out, self.queued = self.queued, []
        return out

    def count_socket_drops(self) -> None:
        self.counters["mesh_socket_drops",] += self.socket_dropped
        self.socket_dropped = 0

    def send(self, datagrams: Sequence[bytes], peers: Iterable[str]) -> None:
        self.sent.extend((datagram, peer) for datagram in datagrams for peer in sorted(peers))


class FakeWatch(_Wakeable):
    """The address watch: `wake()` it after changing the host's interfaces."""

    def drain(self) -> bool:
        self._drain()
        return True


class FakeResolver:
    def __init__(self, answers: dict[str, list[str]] | None = None) -> None:
        self.answers = answers or {}

    async def resolve(self, name: str) -> list[str]:
        return self.answers.get(name, [])


@dataclass
class FakeHost:
    """Interfaces by name; every socket the service opens is recorded in `ports` / `meshes`."""

    nics: dict[str, Interface] = field(default_factory=dict)
    names: Sequence[str] | None = None  # interfaces() when only names matter (--check)
    addresses: list[str] = field(default_factory=list)
    dns: FakeResolver = field(default_factory=FakeResolver)
    ports: list[FakePort] = field(default_factory=list)
    meshes: list[FakeMesh] = field(default_factory=list)
    programs: dict[str, Sequence[Instruction]] = field(default_factory=dict)
    probes_only: dict[str, bool] = field(default_factory=dict)  # open_capture's last say
    indexes: dict[str, int] = field(default_factory=dict)
    fail_mesh: bool = False
    watch: FakeWatch | None = None
    slices: list[int] = field(default_factory=list)  # request_slice's requests, in ns

    def interfaces(self) -> list[str]:
        return list(self.nics) if self.names is None else list(self.names)

    def interface_index(self, name: str) -> int | None:
        if name not in self.nics:
            return None
        return self.indexes.setdefault(name, len(self.indexes) + 1)

    def read_interface(self, name: str) -> Interface:
        if name not in self.nics:
            raise StartupError(f"interface {name} does not exist")
        return self.nics[name]

    def own_addresses(self) -> list[str]:
        return list(self.addresses)

    def open_capture(
        self,
        name: str,
        program: Sequence[Instruction],
        groups: Iterable[int],
        rcvbuf: int,
        probes_only: bool,
    ) -> FakePort:
        index = self.interface_index(name)
        if index is None:
            raise StartupError(f"interface {name} does not exist")
        port = FakePort(name, index, groups)
        self.programs[name] = program
        self.probes_only[name] = probes_only
        self.ports.append(port)
        return port

    def open_mesh(self, port: int, rcvbuf: int) -> FakeMesh:
        if self.fail_mesh:
            raise StartupError(f"cannot listen on mesh port {port}/udp: Address already in use")
        mesh = FakeMesh(port)
        self.meshes.append(mesh)
        return mesh

    def resolver(self) -> FakeResolver:
        return self.dns

    def open_address_watch(self) -> FakeWatch:
        self.watch = FakeWatch()
        return self.watch

    def request_slice(self, ns: int) -> str:
        self.slices.append(ns)
        return f"{ns / 1e6:g} ms"
