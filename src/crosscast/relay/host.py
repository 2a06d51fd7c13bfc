"""The relay's view of the machine it runs on: the seam between the service and the kernel.

Owns the protocols the service is written against (`Host`, `CapturePort`, `MeshPort`) and
`SystemHost`, their real implementation over capture.py, mesh.py and dnspython. The service
never opens a socket or lists interfaces itself; it asks a `Host`, so its unit tests pass a
fake one (tests/relay/fakes.py) and `--check` can be judged against a fixed set of interfaces.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol

from crosscast.net.bpf import Instruction
from crosscast.relay import capture, sched
from crosscast.relay.addrwatch import AddressWatch
from crosscast.relay.discovery import DnsResolver, Resolver
from crosscast.relay.engine import Captured, Interface
from crosscast.relay.mesh import MeshSocket


class HasFileno(Protocol):
    def fileno(self) -> int: ...


class CapturePort(Protocol):
    """One interface's capture-and-inject socket (capture.PacketPort)."""

    @property
    def name(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def sock(self) -> HasFileno: ...
    def receive(self) -> Sequence[Captured]: ...
    def send(self, frame: bytes | bytearray) -> None: ...
    def take_counts(self) -> dict[str, int]: ...
    def take_error(self) -> int: ...
    def close(self) -> None: ...


class MeshPort(Protocol):
    """The UDP socket to and from the other relays (mesh.MeshSocket)."""

    @property
    def port(self) -> int: ...
    @property
    def sock(self) -> HasFileno: ...
    @property
    def counters(self) -> Counter[tuple[str, ...]]: ...
    def receive(self) -> list[tuple[bytes, str]]: ...
    def count_socket_drops(self) -> None: ...
    def send(self, datagrams: Sequence[bytes], peers: Iterable[str]) -> None: ...
    def close(self) -> None: ...


class WatchPort(Protocol):
    """Readable when addresses or links change (addrwatch.AddressWatch)."""

    @property
    def sock(self) -> HasFileno: ...
    def drain(self) -> bool: ...
    def close(self) -> None: ...


class Host(Protocol):
    """Interfaces, sockets and name resolution, as the service needs them."""

    def interfaces(self) -> list[str]:
        """The names of the interfaces present (in this namespace)."""
        ...

    def interface_index(self, name: str) -> int | None:
        """`name`'s ifindex, or None when there is no such interface (any more)."""
        ...

    def read_interface(self, name: str) -> Interface:
        """MAC and IPv4 address of `name`; raises capture.StartupError when it does not exist."""
        ...

    def own_addresses(self) -> list[str]:
        """Every interface's IPv4 address here (never a mesh peer)."""
        ...

    def open_capture(
        self,
        name: str,
        program: Sequence[Instruction],
        groups: Iterable[int],
        rcvbuf: int,
        probes_only: bool,
    ) -> CapturePort:
        """Capture on `name` through `program`, joined to `groups`; raises StartupError.
        `probes_only`: no rule captures on `name`, so only segment probes arrive (a small
        ring)."""
        ...

    def open_mesh(self, port: int, rcvbuf: int) -> MeshPort:
        """Listen on the mesh port; raises StartupError."""
        ...

    def resolver(self) -> Resolver:
        """The DNS resolver for peer discovery."""
        ...

    def open_address_watch(self) -> WatchPort | None:
        """A socket that wakes on address and link changes; None where there is none (the
        service then notices them on its periodic interface check)."""
        ...

    def request_slice(self, ns: int) -> str:
        """Ask the CPU scheduler for a time slice of `ns` for this thread; what came of it."""
        ...


class SystemHost:
    """The real machine: ioctls and AF_PACKET sockets (capture.py), the mesh socket, DNS."""

    def interfaces(self) -> list[str]:
        return [name for _, name in socket.if_nameindex()]

    def interface_index(self, name: str) -> int | None:
        try:
            return socket.if_nametoindex(name)
        except OSError:
            return None

    def read_interface(self, name: str) -> Interface:
        return capture.read_interface(name)

    def own_addresses(self) -> list[str]:
        return capture.own_addresses()

    def open_capture(
        self,
        name: str,
        program: Sequence[Instruction],
        groups: Iterable[int],
        rcvbuf: int,
        probes_only: bool,
    ) -> CapturePort:
        return capture.PacketPort.open(name, program, groups, rcvbuf, probes_only)

    def open_mesh(self, port: int, rcvbuf: int) -> MeshPort:
        return MeshSocket(port, rcvbuf)

    def resolver(self) -> Resolver:
        return DnsResolver()

    def open_address_watch(self) -> WatchPort | None:
        try:
            return AddressWatch()
        except OSError:
            return None

    def request_slice(self, ns: int) -> str:
        return sched.request_slice(ns)
