"""The topology model: frozen dataclasses describing one edge device, and nothing else.

This module owns the shape of a topology (VLANs, bridges, Docker networks, router, containers,
devices, firewall exceptions) and the deterministic container MAC; its relay rules are the
relay's own `Rule` objects (crosscast.relay.rules), naming VLANs instead of interfaces. It does
no I/O and no validation of files: `crosscast.topology.load` turns YAML into these objects.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from crosscast.relay.rules import MESH, Rule

__all__ = [
    "MESH",
    "Container",
    "Device",
    "Dhcp",
    "DockerNetwork",
    "FirewallException",
    "Router",
    "Rule",
    "Topology",
    "Uplink",
    "Vlan",
    "mac_for_name",
]


def mac_for_name(name: str) -> str:
    """The stable MAC of container `name`: 02 (locally administered, unicast) + sha256(name)[:5].

    The same name gives the same MAC on every host and after every reboot, so the DHCP server
    hands the same lease back; `crosscast lease` and `topology apply` both use it.
    """
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


DRIVERS = ("bridge", "macvlan", "ipvlan")
PROTOCOLS = ("any", "tcp", "udp", "icmp")
DEFAULT_CAPABILITIES = ("NET_ADMIN", "NET_BROADCAST", "NET_RAW")
# The router answers broadcast pings (the seeds' `--sysctl`) and routes between its interfaces.
DEFAULT_SYSCTLS = (("net.ipv4.icmp_echo_ignore_broadcasts", "0"), ("net.ipv4.ip_forward", "1"))


@dataclass(frozen=True)
class DockerNetwork:
    """The Docker network laid on a VLAN's bridge (or, for the uplink, on the uplink interface)."""

    name: str
    driver: str  # one of DRIVERS
    ip_range: IPv4Network | None = None
    aux_addresses: tuple[tuple[str, IPv4Address], ...] = ()  # sorted by name


@dataclass(frozen=True)
class Dhcp:
    pool: tuple[IPv4Address, IPv4Address] | None
    dns: tuple[IPv4Address, ...]
    default_lease_time: int
    max_lease_time: int

    def in_pool(self, address: IPv4Address) -> bool:
        return self.pool is not None and self.pool[0] <= address <= self.pool[1]


@dataclass(frozen=True)
class Vlan:
    id: int
    name: str
    subnet: IPv4Network
    gateway: IPv4Address  # the host's address on the bridge, and the Docker network's gateway
    router_address: IPv4Address  # the router's address here; DHCP hands it out as the route
    bridge: str
    router_interface: str
    network: DockerNetwork
    dhcp: Dhcp

    def vlan_device(self, trunk: str) -> str:
        return f"{trunk}.{self.id}"


@dataclass(frozen=True)
class Uplink:
    interface: str  # the host's uplink (the parent of the uplink Docker network)
    subnet: IPv4Network
    gateway: IPv4Address  # "the Internet" as seen from the router
    router_address: IPv4Address
    router_interface: str
    network: DockerNetwork


@dataclass(frozen=True)
class Router:
    name: str
    image: str
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    sysctls: tuple[tuple[str, str], ...] = DEFAULT_SYSCTLS


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    vlan: str
    address: IPv4Address | None = None  # None: `crosscast lease` assigns one from the pool
    mac: str | None = None  # None: mac_for_name(name)

    @property
    def effective_mac(self) -> str:
        return self.mac or mac_for_name(self.name)


@dataclass(frozen=True)
class Device:
    """A physical device expected on a VLAN (in a namespace topology: a stand-in namespace)."""

    name: str
    vlan: str
    mac: str | None = None
    address: IPv4Address | None = None

    @property
    def effective_mac(self) -> str:
        return self.mac or mac_for_name(self.name)


@dataclass(frozen=True)
class FirewallException:
    """One flow the router forwards between two VLANs (new connections from `source` only)."""

    source: str  # VLAN name
    destination: str  # VLAN name
    protocol: str = "any"  # one of PROTOCOLS
    ports: tuple[int, ...] = ()  # destination ports (tcp/udp only)
    source_net: IPv4Network | None = None
    destination_net: IPv4Network | None = None


@dataclass(frozen=True)
class Topology:
    name: str
    trunk: str
    uplink: Uplink
    vlans: tuple[Vlan, ...]  # sorted by id
    router: Router
    containers: tuple[Container, ...] = ()  # sorted by name
    devices: tuple[Device, ...] = ()  # sorted by name
    firewall: tuple[FirewallException, ...] = ()  # in file order: order is policy
    # The relay's own rules, with VLAN names (or MESH) as ingress and egress; render maps the
    # names to the router's interfaces.
    relay_rules: tuple[Rule, ...] = ()  # in file order
    source: str = field(default="", compare=False)  # the file it came from, for messages

    def vlan(self, name: str) -> Vlan:
        for vlan in self.vlans:
            if vlan.name == name:
                return vlan
        raise KeyError(name)
