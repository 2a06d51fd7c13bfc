"""What a lease is (`Binding`), where one is asked for (`Target`), and how asking fails.

Plain values: no I/O. Shared by the store, the client, the output formats and the CLI.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPv4 = ipaddress.IPv4Address


class LeaseError(Exception):
    """The DHCP exchange failed (no offer, no server, a NAK): exit 1 with this one line."""


class UsageError(Exception):
    """A local mistake (arguments, missing interface or namespace, no privilege): exit 2."""


@dataclass(frozen=True)
class Binding:
    """One container's lease, as stored and as printed."""

    name: str
    mac: str
    ip: IPv4
    prefix: int
    gateway: IPv4 | None
    vlan: str
    server_id: IPv4
    server_mac: str
    lease_time: int
    obtained_at: float  # Unix time of the last ACK
    interface: str
    netns: str | None
    dns: tuple[IPv4, ...] = ()

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.ip}/{self.prefix}", strict=False)

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.lease_time


@dataclass(frozen=True)
class Target:
    """Where a lease is asked for: a VLAN label and the interface (in a namespace) reaching it."""

    vlan: str
    interface: str
    netns: str | None
