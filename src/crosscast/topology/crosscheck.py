"""The topology file's cross-checks: what no single section can see on its own.

Owns the checks across sections (duplicate ids, names, bridges, interfaces, MACs and addresses;
overlapping subnets; fixed addresses against subnets and DHCP ranges; every name that must be a
declared VLAN). Each problem is reported at the position of the value it is about.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

from crosscast import yamlfile
from crosscast.topology.model import MESH, Vlan
from crosscast.topology.schema import IFNAMSIZ, Sections
from crosscast.yamlfile import Position

UPLINK_BRIDGE = "brup"  # the uplink bridge of a namespace topology (see apply.py)


def cross_check(sections: Sections, problems: yamlfile.Problems) -> None:
    """Add every problem that takes two sections or more to see."""
    trunk, uplink, vlans, declared = (
        sections.trunk,
        sections.uplink,
        sections.vlans,
        sections.declared,
    )
    router, containers, devices = sections.router, sections.containers, sections.devices
    exceptions, rules = sections.exceptions, sections.rules
    by_name: dict[str, Vlan] = {}
    for v, _ in vlans:
        by_name.setdefault(v.name, v)  # a duplicate is reported below; the first counts

    def unique(items: Iterable[tuple[str, Position]], what: str) -> None:
        first: dict[str, Position] = {}
        for value, line in items:
            if value in first:
                problems.add(line, f"duplicate {what} {value} (also on line {first[value][0]})")
            else:
                first[value] = line

    unique(((str(v.id), w.at("id")) for v, w in vlans), "VLAN id")
    unique(((v.name, w.at("name")) for v, w in vlans), "VLAN name")
    bridges = [(v.bridge, w.at("bridge")) for v, w in vlans]
    unique(bridges, "bridge")
    for bridge, line in bridges:
        if bridge == UPLINK_BRIDGE:
            problems.add(line, f"bridge name {UPLINK_BRIDGE} is reserved for the uplink")
    router_ifs = [(v.router_interface, w.at("router_interface")) for v, w in vlans]
    networks = [(v.network.name, w.at("network:name")) for v, w in vlans]
    subnets = [(v.subnet, f"VLAN {v.name}", w.at("subnet")) for v, w in vlans]
    if uplink is not None:
        up, uw = uplink
        router_ifs.insert(0, (up.router_interface, uw.at("router_interface")))
        networks.insert(0, (up.network.name, uw.at("network")))
        subnets.insert(0, (up.subnet, "the uplink", uw.at("subnet")))
    unique(router_ifs, "router interface")
    unique(networks, "Docker network name")
    for i, (net, label, line) in enumerate(subnets):
        for other, other_label, _ in subnets[:i]:
            if net.overlaps(other):
                problems.add(line, f"subnet {net} of {label} overlaps {other} of {other_label}")
    if trunk is not None:
        for v, w in vlans:
            if len(v.vlan_device(trunk)) >= IFNAMSIZ:
                problems.add(
                    w.at("id"),
                    f"VLAN device name {v.vlan_device(trunk)} is longer than "
                    f"{IFNAMSIZ - 1} characters",
                )

    # Every name below becomes a network namespace, a Docker container and a DHCP host.
    hosts: list[tuple[str, Position]] = []
    if router is not None:
        hosts.append((router[0].name, router[1].at("name")))
    hosts += [(c.name, w.at("name")) for c, w in containers]
    hosts += [(d.name, w.at("name")) for d, w in devices]
    unique(hosts, "container, device or router name")
    for reserved in ("host",):
        for host, line in hosts:
            if host == reserved:
                problems.add(line, f"name {host!r} is reserved for the host's namespace")
    unique(
        [(c.effective_mac, w.at("mac") if c.mac else w.at("name")) for c, w in containers]
        + [(d.effective_mac, w.at("mac") if d.mac else w.at("name")) for d, w in devices],
        "MAC address",
    )

    taken: list[tuple[str, Position]] = []
    for v, w in vlans:
        taken += [
            (str(v.gateway), w.at("gateway")),
            (str(v.router_address), w.at("router_address")),
        ]
        taken += [(str(a), w.at(f"network:aux:{n}")) for n, a in v.network.aux_addresses]
    placed: list[tuple[str, str, IPv4Address | None, Position]] = [
        ("container", c.vlan, c.address, w.at("vlan")) for c, w in containers
    ] + [("device", d.vlan, d.address, w.at("vlan")) for d, w in devices]
    fixed_lines = [w.at("address") for _, w in containers] + [w.at("address") for _, w in devices]
    names = [c.name for c, _ in containers] + [d.name for d, _ in devices]
    for (kind, vlan_name, address, vlan_line), address_line, host in zip(
        placed, fixed_lines, names, strict=True
    ):
        vlan = by_name.get(vlan_name)
        if vlan is None:
            if vlan_name not in declared:
                problems.add(vlan_line, f"{kind} {host} is on unknown VLAN {vlan_name!r}")
            continue
        if address is None:
            continue
        if address not in vlan.subnet:
            problems.add(
                address_line,
                f"fixed address {address} of {host} is outside VLAN {vlan.name} "
                f"subnet {vlan.subnet}",
            )
        elif vlan.dhcp.pool is not None and vlan.dhcp.in_pool(address):
            start, end = vlan.dhcp.pool
            problems.add(
                address_line,
                f"fixed address {address} of {host} is inside the DHCP range "
                f"{start} - {end} of VLAN {vlan.name}",
            )
        # An aux address reserves a device's address from Docker: the device may hold it.
        if kind == "device" and address in {a for _, a in vlan.network.aux_addresses}:
            continue
        taken.append((str(address), address_line))
    unique(taken, "address")

    def known(name: str, line: Position, what: str, mesh: bool = False) -> None:
        if name in declared or (mesh and name == MESH):
            return
        problems.add(line, f"{what} names unknown VLAN {name!r}")

    for e, w in exceptions:
        known(e.source, w.at("from"), "firewall exception")
        known(e.destination, w.at("to"), "firewall exception")
        if e.source == e.destination:
            problems.add(w.at("to"), f"firewall exception from {e.source} to itself")
        ends: tuple[tuple[str, IPv4Network | None, str], ...] = (
            (e.source, e.source_net, "from_address"),
            (e.destination, e.destination_net, "to_address"),
        )
        for vlan_name, limit, key in ends:
            vlan = by_name.get(vlan_name)
            if vlan is not None and limit is not None and not limit.subnet_of(vlan.subnet):
                problems.add(
                    w.at(key),
                    f"firewall {key} {limit} is outside VLAN {vlan.name} subnet {vlan.subnet}",
                )
    unique(((r.name, w.at("name")) for r, w in rules), "relay rule name")
    # A rule back to its own ingress and the like: the relay's rule reader said so already.
    for r, w in rules:
        known(r.ingress, w.at("from"), f"rule '{r.name}':", mesh=True)
        for destination in r.egress:
            known(destination, w.at("to"), f"rule '{r.name}':", mesh=True)
