"""The topology file's schema: YAML nodes -> model objects, each value checked on its own.

Owns what each section of a topology file may hold (see examples/topology-seeds.yaml) and the
message for each value that is wrong, at the FILE:LINE:COLUMN of that value. Relay rules are
read by the relay's own rule reader (crosscast.relay.rules), with VLAN names as their ends.
Checks that need several sections at once are crosscast.topology.crosscheck's; reading the
file and putting the two together is crosscast.topology.load's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from typing import TypeVar

import yaml

from crosscast import yamlfile
from crosscast.relay.rules import Rule, rule_from_node
from crosscast.topology.model import (
    DEFAULT_CAPABILITIES,
    DEFAULT_SYSCTLS,
    DRIVERS,
    MESH,
    PROTOCOLS,
    Container,
    Device,
    Dhcp,
    DockerNetwork,
    FirewallException,
    Router,
    Topology,
    Uplink,
    Vlan,
)
from crosscast.yamlfile import Position

T = TypeVar("T")

IFNAMSIZ = 16  # linux/if.h: names are at most 15 characters plus the NUL
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a Docker container/network name
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_DEFAULT_LEASE_TIME = 3600
_MAX_LEASE_TIME = 7200

_pos = yamlfile.position


@dataclass(frozen=True)
class Where:
    """Positions of the values that cross-checks talk about."""

    position: Position
    fields: dict[str, Position] = field(default_factory=dict)

    def at(self, key: str) -> Position:
        return self.fields.get(key, self.position)


@dataclass(frozen=True)
class Sections:
    """Every section that passed its own checks, with where its values are, before the
    cross-checks; `topology()` assembles the model once those found nothing."""

    name: str | None
    trunk: str | None
    uplink: tuple[Uplink, Where] | None
    vlans: list[tuple[Vlan, Where]]
    declared: set[str]  # VLAN names, including those of VLANs that failed their own checks
    router: tuple[Router, Where] | None
    containers: list[tuple[Container, Where]]
    devices: list[tuple[Device, Where]]
    exceptions: list[tuple[FirewallException, Where]]
    rules: list[tuple[Rule, Where]]

    def topology(self, source: str) -> Topology | None:
        if self.name is None or self.trunk is None or self.uplink is None or self.router is None:
            return None
        return Topology(
            name=self.name,
            trunk=self.trunk,
            uplink=self.uplink[0],
            vlans=tuple(sorted((v for v, _ in self.vlans), key=lambda v: v.id)),
            router=self.router[0],
            containers=tuple(sorted((c for c, _ in self.containers), key=lambda c: c.name)),
            devices=tuple(sorted((d for d, _ in self.devices), key=lambda d: d.name)),
            firewall=tuple(e for e, _ in self.exceptions),
            relay_rules=tuple(r for r, _ in self.rules),
            source=source,
        )


def _rule_end(value: object) -> str:
    """A relay rule's `from`/`to` in a topology file: a VLAN name, or the mesh."""
    if not isinstance(value, str) or not (value == MESH or _NAME.match(value)):
        raise ValueError(f"{value!r} is not a VLAN name (or {MESH})")
    return value


class SchemaReader:
    """Reads one file's node tree; every problem goes to `problems`, none stops the reading."""

    def __init__(self, problems: yamlfile.Problems, constructor: yamlfile.Constructor) -> None:
        self.problems = problems
        self.constructor = constructor

    def problem(self, where: yaml.Node | Position, message: str) -> None:
        self.problems.add(where, message)

    # -- shapes ---------------------------------------------------------------------------------

    def mapping(
        self, node: yaml.Node | None, what: str, required: Iterable[str], optional: Iterable[str]
    ) -> dict[str, yaml.Node] | None:
        if node is None:
            return None
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{what} must be a mapping")
            return None
        required = tuple(required)
        known = set(required) | set(optional)
        out: dict[str, yaml.Node] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            if name not in known:
                self.problem(key, f"unknown key {name!r} in {what}")
            elif name in out:
                self.problem(key, f"duplicate key {name!r} in {what}")
            else:
                out[name] = value
        for name in required:
            if name not in out:
                self.problem(node, f"{what} lacks {name!r}")
        return out

    def sequence(self, node: yaml.Node | None, what: str) -> list[yaml.Node]:
        if node is None:
            return []
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, f"{what} must be a list")
            return []
        return list(node.value)

    def scalar(self, node: yaml.Node | None, what: str) -> str | None:
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            self.problem(node, f"{what} must be a value")
            return None
        return str(node.value)

    def name(self, node: yaml.Node | None, what: str) -> str | None:
        value = self.scalar(node, what)
        if value is not None and node is not None and not _NAME.match(value):
            self.problem(node, f"{what} {value!r} is not a name (letters, digits, _ . -)")
            return None
        return value

    def ifname(self, node: yaml.Node | None, what: str) -> str | None:
        value = self.name(node, what)
        if value is not None and node is not None and len(value) >= IFNAMSIZ:
            self.problem(node, f"{what} {value!r} is longer than {IFNAMSIZ - 1} characters")
            return None
        return value

    def integer(self, node: yaml.Node | None, what: str, low: int, high: int) -> int | None:
        value = self.scalar(node, what)
        if value is None or node is None:
            return None
        if node.tag != "tag:yaml.org,2002:int" or not value.isdigit():
            self.problem(node, f"{what} {value!r} is not a whole number")
            return None
        number = int(value)
        if not low <= number <= high:
            self.problem(node, f"{what} {number} is not in {low}..{high}")
            return None
        return number

    def boolean(self, node: yaml.Node | None, what: str) -> bool | None:
        value = self.scalar(node, what)
        if value is None or node is None:
            return None
        if node.tag != "tag:yaml.org,2002:bool":
            self.problem(node, f"{what} {value!r} is not true or false")
            return None
        return value.lower() in ("true", "yes", "on", "y")

    def address(self, node: yaml.Node | None, what: str) -> IPv4Address | None:
        value = self.scalar(node, what)
        if value is None or node is None:
            return None
        try:
            return IPv4Address(value)
        except AddressValueError:
            self.problem(node, f"{what} {value!r} is not an IPv4 address")
            return None

    def network(self, node: yaml.Node | None, what: str) -> IPv4Network | None:
        value = self.scalar(node, what)
        if value is None or node is None:
            return None
        try:
            return IPv4Network(value)
        except ValueError:
            pass
        try:
            loose = IPv4Network(value, strict=False)
        except (AddressValueError, NetmaskValueError, ValueError):
            self.problem(node, f"{what} {value!r} is not an IPv4 network (like 10.0.1.0/24)")
            return None
        self.problem(node, f"{what} {value!r} has host bits set (did you mean {loose}?)")
        return None

    def mac(self, node: yaml.Node | None, what: str) -> str | None:
        value = self.scalar(node, what)
        if value is None or node is None:
            return None
        mac = value.lower().replace("-", ":")
        if not _MAC.match(mac):
            self.problem(node, f"{what} {value!r} is not a MAC address (like 02:00:0a:00:01:0b)")
            return None
        if int(mac[:2], 16) & 1:
            self.problem(node, f"{what} {value!r} is a multicast MAC address")
            return None
        return mac

    def each(
        self, node: yaml.Node | None, what: str, parse: Callable[[yaml.Node | None, str], T | None]
    ) -> tuple[T, ...] | None:
        items = [parse(item, what) for item in self.sequence(node, f"{what}s")]
        good = [item for item in items if item is not None]
        return tuple(good) if len(good) == len(items) else None

    # -- sections -------------------------------------------------------------------------------

    def sections(self, root: yaml.Node | None) -> Sections | None:
        if root is None:
            self.problem((1, 1), "the file is empty")
            return None
        top = self.mapping(
            root,
            "the topology",
            required=("name", "trunk", "uplink", "vlans", "router"),
            optional=("dhcp", "containers", "devices", "firewall", "relay_rules"),
        )
        if top is None:
            return None
        name = self.name(top.get("name"), "name")
        trunk = self.ifname(top.get("trunk"), "trunk")
        defaults = self.dhcp_defaults(top.get("dhcp"))
        uplink = self.uplink(top.get("uplink"))
        vlans: list[tuple[Vlan, Where]] = []
        for node in self.sequence(top.get("vlans"), "vlans"):
            vlan = self.vlan(node, defaults)
            if vlan is not None:
                vlans.append(vlan)
        if top.get("vlans") is not None and not self.sequence(top.get("vlans"), "vlans"):
            self.problem(top["vlans"], "vlans is empty: a topology needs at least one VLAN")
        router = self.router(top.get("router"))
        containers = [
            c
            for n in self.sequence(top.get("containers"), "containers")
            if (c := self.container(n))
        ]
        devices = [d for n in self.sequence(top.get("devices"), "devices") if (d := self.device(n))]
        firewall_node = self.mapping(top.get("firewall"), "firewall", (), ("allow",))
        exceptions = [
            e
            for n in self.sequence((firewall_node or {}).get("allow"), "firewall allow")
            if (e := self.exception(n))
        ]
        rules = [
            r
            for n in self.sequence(top.get("relay_rules"), "relay_rules")
            if (r := self.relay_rule(n))
        ]
        # Names of VLANs that failed their own checks still count as declared: their problems
        # are reported once, not again at every container and rule that names them.
        declared = {
            str(v.value)
            for node in self.sequence(top.get("vlans"), "vlans")
            if isinstance(node, yaml.MappingNode)
            for k, v in node.value
            if isinstance(k, yaml.ScalarNode)
            and k.value == "name"
            and isinstance(v, yaml.ScalarNode)
        }
        return Sections(
            name, trunk, uplink, vlans, declared, router, containers, devices, exceptions, rules
        )

    def dhcp_defaults(self, node: yaml.Node | None) -> Dhcp:
        fields = (
            self.mapping(node, "dhcp", (), ("dns", "default_lease_time", "max_lease_time")) or {}
        )
        return Dhcp(
            pool=None,
            dns=self.each(fields.get("dns"), "dns server", self.address) or (),
            default_lease_time=self.integer(
                fields.get("default_lease_time"), "default_lease_time", 1, 2**31 - 1
            )
            or _DEFAULT_LEASE_TIME,
            max_lease_time=self.integer(
                fields.get("max_lease_time"), "max_lease_time", 1, 2**31 - 1
            )
            or _MAX_LEASE_TIME,
        )

    def docker_network(
        self, node: yaml.Node | None, what: str
    ) -> tuple[DockerNetwork, Where] | None:
        fields = self.mapping(node, what, ("name", "driver"), ("ip_range", "aux_addresses"))
        if fields is None or node is None:
            return None
        name = self.name(fields.get("name"), f"{what} name")
        driver = self.scalar(fields.get("driver"), f"{what} driver")
        if driver is not None and driver not in DRIVERS:
            self.problem(
                fields["driver"], f"{what} driver {driver!r} is not one of {', '.join(DRIVERS)}"
            )
            driver = None
        ip_range = self.network(fields.get("ip_range"), "ip_range")
        aux: list[tuple[str, IPv4Address]] = []
        where = {k: _pos(v) for k, v in fields.items()}
        aux_node = fields.get("aux_addresses")
        if aux_node is not None:
            if not isinstance(aux_node, yaml.MappingNode):
                self.problem(aux_node, "aux_addresses must be a mapping of name: address")
            else:
                for key, value in aux_node.value:
                    label = str(key.value)
                    address = self.address(value, f"aux address {label!r}")
                    if address is not None:
                        aux.append((label, address))
                        where[f"aux:{label}"] = _pos(value)
        if name is None or driver is None:
            return None
        network = DockerNetwork(name, driver, ip_range, tuple(sorted(aux)))
        return network, Where(_pos(node), where)

    def uplink(self, node: yaml.Node | None) -> tuple[Uplink, Where] | None:
        fields = self.mapping(
            node,
            "uplink",
            ("interface", "subnet", "gateway", "router_address", "router_interface", "network"),
            (),
        )
        if fields is None or node is None:
            return None
        interface = self.ifname(fields.get("interface"), "uplink interface")
        subnet = self.network(fields.get("subnet"), "uplink subnet")
        gateway = self.address(fields.get("gateway"), "uplink gateway")
        router_address = self.address(fields.get("router_address"), "uplink router_address")
        router_interface = self.ifname(fields.get("router_interface"), "uplink router_interface")
        network = self.docker_network(fields.get("network"), "uplink network")
        where = Where(_pos(node), {k: _pos(v) for k, v in fields.items()})
        if subnet is not None:
            for key, value in (("gateway", gateway), ("router_address", router_address)):
                if value is not None and value not in subnet:
                    self.problem(where.at(key), f"uplink {key} {value} is outside subnet {subnet}")
        if network is not None and subnet is not None:
            self.check_network_addresses(network, subnet, "uplink", None)
        if (
            interface is None
            or subnet is None
            or gateway is None
            or router_address is None
            or router_interface is None
            or network is None
        ):
            return None
        return Uplink(
            interface, subnet, gateway, router_address, router_interface, network[0]
        ), where

    def vlan(self, node: yaml.Node, defaults: Dhcp) -> tuple[Vlan, Where] | None:
        fields = self.mapping(
            node,
            "a VLAN",
            ("id", "name", "subnet", "gateway", "router_address", "bridge", "router_interface"),
            ("network", "dhcp"),
        )
        if fields is None:
            return None
        vid = self.integer(fields.get("id"), "VLAN id", 1, 4094)
        name = self.name(fields.get("name"), "VLAN name")
        label = f"VLAN {name or vid}"
        subnet = self.network(fields.get("subnet"), f"{label} subnet")
        gateway = self.address(fields.get("gateway"), f"{label} gateway")
        router_address = self.address(fields.get("router_address"), f"{label} router_address")
        bridge = self.ifname(fields.get("bridge"), f"{label} bridge")
        router_interface = self.ifname(fields.get("router_interface"), f"{label} router_interface")
        where = Where(_pos(node), {k: _pos(v) for k, v in fields.items()})
        network = self.docker_network(fields.get("network"), f"{label} network")
        dhcp = self.dhcp(fields.get("dhcp"), defaults, label, where)
        if subnet is not None:
            for key, value in (("gateway", gateway), ("router_address", router_address)):
                if value is not None and value not in subnet:
                    self.problem(where.at(key), f"{label} {key} {value} is outside subnet {subnet}")
            if gateway is not None and gateway == router_address:
                self.problem(
                    where.at("router_address"),
                    f"{label} router_address {gateway} is also its gateway (the host's address)",
                )
            if dhcp is not None and dhcp.pool is not None:
                start, end = dhcp.pool
                if start not in subnet or end not in subnet:
                    self.problem(
                        where.at("dhcp:range"),
                        f"{label} DHCP range {start} - {end} is outside subnet {subnet}",
                    )
                    dhcp = replace(dhcp, pool=None)  # reported; keep the VLAN for cross-checks
                elif start > end:
                    self.problem(
                        where.at("dhcp:range"), f"{label} DHCP range {start} - {end} is backwards"
                    )
                    dhcp = replace(dhcp, pool=None)
            if dhcp is not None and dhcp.pool is not None:
                start, end = dhcp.pool
                for key, value in (("gateway", gateway), ("router_address", router_address)):
                    if value is not None and dhcp.in_pool(value):
                        self.problem(
                            where.at(key),
                            f"{label} {key} {value} is inside the DHCP range {start} - {end}",
                        )
            if network is not None:
                self.check_network_addresses(network, subnet, label, dhcp)
        if (
            vid is None
            or name is None
            or subnet is None
            or gateway is None
            or router_address is None
            or bridge is None
            or router_interface is None
            or dhcp is None
        ):
            return None
        docker = network[0] if network is not None else DockerNetwork(f"{name}net", "bridge")
        if network is not None:
            where.fields.update({f"network:{k}": v for k, v in network[1].fields.items()})
        vlan = Vlan(
            vid, name, subnet, gateway, router_address, bridge, router_interface, docker, dhcp
        )
        return vlan, where

    def check_network_addresses(
        self,
        network: tuple[DockerNetwork, Where],
        subnet: IPv4Network,
        label: str,
        dhcp: Dhcp | None,
    ) -> None:
        net, where = network
        if net.ip_range is not None:
            line = where.at("ip_range")
            if not net.ip_range.subnet_of(subnet):
                self.problem(line, f"{label} ip_range {net.ip_range} is outside subnet {subnet}")
            elif dhcp is not None and dhcp.pool is not None:
                start, end = dhcp.pool
                if net.ip_range[0] <= end and start <= net.ip_range[-1]:
                    self.problem(
                        line,
                        f"{label} ip_range {net.ip_range} overlaps the DHCP range {start} - {end}"
                        " (Docker and dhcpd would hand out the same addresses)",
                    )
        for aux_name, address in net.aux_addresses:
            line = where.at(f"aux:{aux_name}")
            if address not in subnet:
                self.problem(
                    line, f"{label} aux address {aux_name!r} {address} is outside subnet {subnet}"
                )
            elif dhcp is not None and dhcp.in_pool(address):
                self.problem(
                    line, f"{label} aux address {aux_name!r} {address} is inside the DHCP range"
                )

    def dhcp(self, node: yaml.Node | None, defaults: Dhcp, label: str, where: Where) -> Dhcp | None:
        if node is None:
            return defaults
        fields = self.mapping(
            node, f"{label} dhcp", (), ("range", "dns", "default_lease_time", "max_lease_time")
        )
        if fields is None:
            return None
        pool: tuple[IPv4Address, IPv4Address] | None = None
        bad = False
        range_node = fields.get("range")
        if range_node is not None:
            where.fields["dhcp:range"] = _pos(range_node)
            ends = self.sequence(range_node, f"{label} DHCP range")
            if len(ends) != 2:
                self.problem(range_node, f"{label} DHCP range must be [first, last]")
                bad = True
            else:
                start = self.address(ends[0], f"{label} DHCP range start")
                end = self.address(ends[1], f"{label} DHCP range end")
                if start is None or end is None:
                    bad = True
                else:
                    pool = (start, end)  # checked against the subnet by the VLAN
        dns = defaults.dns
        if "dns" in fields:
            parsed = self.each(fields["dns"], "dns server", self.address)
            bad = bad or parsed is None
            dns = parsed or ()
        default_time = defaults.default_lease_time
        max_time = defaults.max_lease_time
        if "default_lease_time" in fields:
            got = self.integer(fields["default_lease_time"], "default_lease_time", 1, 2**31 - 1)
            bad = bad or got is None
            default_time = got or default_time
        if "max_lease_time" in fields:
            got = self.integer(fields["max_lease_time"], "max_lease_time", 1, 2**31 - 1)
            bad = bad or got is None
            max_time = got or max_time
        if default_time > max_time:
            self.problem(
                node,
                f"{label} default_lease_time {default_time} is longer than "
                f"max_lease_time {max_time}",
            )
            bad = True
        return None if bad else Dhcp(pool, dns, default_time, max_time)

    def router(self, node: yaml.Node | None) -> tuple[Router, Where] | None:
        fields = self.mapping(node, "router", ("name", "image"), ("capabilities", "sysctls"))
        if fields is None or node is None:
            return None
        name = self.name(fields.get("name"), "router name")
        image = self.scalar(fields.get("image"), "router image")
        caps: tuple[str, ...] = DEFAULT_CAPABILITIES
        if "capabilities" in fields:
            parsed = self.each(fields["capabilities"], "capability", self.name)
            caps = tuple(sorted(c.upper() for c in parsed)) if parsed is not None else ()
        sysctls = dict(DEFAULT_SYSCTLS)
        sysctl_node = fields.get("sysctls")
        if sysctl_node is not None:
            if not isinstance(sysctl_node, yaml.MappingNode):
                self.problem(sysctl_node, "router sysctls must be a mapping of key: value")
            else:
                for key, value in sysctl_node.value:
                    text = self.scalar(value, f"sysctl {key.value}")
                    if not str(key.value).startswith("net."):
                        self.problem(
                            key, f"sysctl {key.value!r} is not per network namespace (net.*)"
                        )
                    elif text is not None:
                        sysctls[str(key.value)] = text
        if name is None or image is None:
            return None
        router = Router(name, image, caps, tuple(sorted(sysctls.items())))
        return router, Where(_pos(node), {k: _pos(v) for k, v in fields.items()})

    def container(self, node: yaml.Node) -> tuple[Container, Where] | None:
        fields = self.mapping(node, "a container", ("name", "image", "vlan"), ("address", "mac"))
        if fields is None:
            return None
        name = self.name(fields.get("name"), "container name")
        image = self.scalar(fields.get("image"), "container image")
        vlan = self.scalar(fields.get("vlan"), "container vlan")
        address = self.address(fields.get("address"), "container address")
        mac = self.mac(fields.get("mac"), "container mac")
        if name is None or image is None or vlan is None:
            return None
        if ("address" in fields and address is None) or ("mac" in fields and mac is None):
            return None
        where = Where(_pos(node), {k: _pos(v) for k, v in fields.items()})
        return Container(name, image, vlan, address, mac), where

    def device(self, node: yaml.Node) -> tuple[Device, Where] | None:
        fields = self.mapping(node, "a device", ("name", "vlan"), ("mac", "address"))
        if fields is None:
            return None
        name = self.name(fields.get("name"), "device name")
        vlan = self.scalar(fields.get("vlan"), "device vlan")
        address = self.address(fields.get("address"), "device address")
        mac = self.mac(fields.get("mac"), "device mac")
        if name is None or vlan is None:
            return None
        if ("address" in fields and address is None) or ("mac" in fields and mac is None):
            return None
        if address is not None and mac is None:
            self.problem(
                node, f"device {name} has a fixed address but no mac (dhcpd fixes it by MAC)"
            )
            return None
        where = Where(_pos(node), {k: _pos(v) for k, v in fields.items()})
        return Device(name, vlan, mac, address), where

    def exception(self, node: yaml.Node) -> tuple[FirewallException, Where] | None:
        fields = self.mapping(
            node,
            "a firewall exception",
            ("from", "to"),
            ("protocol", "ports", "from_address", "to_address"),
        )
        if fields is None:
            return None
        source = self.scalar(fields.get("from"), "firewall from")
        destination = self.scalar(fields.get("to"), "firewall to")
        protocol = self.scalar(fields.get("protocol"), "firewall protocol") or "any"
        if protocol not in PROTOCOLS:
            self.problem(
                fields["protocol"],
                f"firewall protocol {protocol!r} is not one of " + ", ".join(PROTOCOLS),
            )
            return None
        ports: tuple[int, ...] = ()
        if "ports" in fields:
            parsed = self.each(fields["ports"], "port", lambda n, w: self.integer(n, w, 1, 65535))
            if parsed is None:
                return None
            ports = tuple(sorted(set(parsed)))
            if ports and protocol not in ("tcp", "udp"):
                self.problem(fields["ports"], "firewall ports need protocol tcp or udp")
                return None
        source_net = self.network_or_address(fields.get("from_address"), "from_address")
        destination_net = self.network_or_address(fields.get("to_address"), "to_address")
        if source is None or destination is None:
            return None
        where = Where(_pos(node), {k: _pos(v) for k, v in fields.items()})
        exc = FirewallException(source, destination, protocol, ports, source_net, destination_net)
        return exc, where

    def network_or_address(self, node: yaml.Node | None, what: str) -> IPv4Network | None:
        value = self.scalar(node, what)
        if value is None or node is None:
            return None
        return self.network(node, what) if "/" in value else _host(self.address(node, what))

    def relay_rule(self, node: yaml.Node) -> tuple[Rule, Where] | None:
        # The relay's own rule reader, with VLAN names (or "mesh") where it has interfaces.
        rule = rule_from_node(node, self.constructor, self.problems, endpoint=_rule_end)
        if rule is None or not isinstance(node, yaml.MappingNode):
            return None
        fields = {str(k.value): v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
        return rule, Where(_pos(node), {k: _pos(v) for k, v in fields.items()})


def _host(address: IPv4Address | None) -> IPv4Network | None:
    return None if address is None else IPv4Network(address)
