"""The Kea renderer: golden kea-dhcp4.conf per example, and the same facts as dhcpd.conf.

Golden files live beside the other renderers' in tests/golden/topology/<example>/. After a
deliberate change, regenerate with `CROSSCAST_REGEN_GOLDEN=1 pytest tests/topology/test_kea.py`
and review the diff. (Once the renderer is registered in render.RENDERERS, the render tests
cover the golden files too and this module keeps only the facts below.)
"""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from crosscast.topology.kea import render_kea_dhcp4_conf
from crosscast.topology.load import load_topology
from crosscast.topology.model import Topology
from crosscast.topology.render import render_dhcpd_conf

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "topology"
EXAMPLES = ("seeds", "macvlan")
REGENERATE = os.environ.get("CROSSCAST_REGEN_GOLDEN") == "1"


def example(name: str) -> Topology:
    return load_topology(ROOT / "examples" / f"topology-{name}.yaml")


def rendered(name: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(render_kea_dhcp4_conf(example(name)))["Dhcp4"]
    return config


def test_every_example_with_a_golden_directory_has_a_kea_golden_file() -> None:
    assert sorted(p.parent.name for p in GOLDEN.glob("*/kea-dhcp4.conf")) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_one_subnet_per_vlan_on_the_router_interface_with_its_pool(name: str) -> None:
    topology = example(name)
    subnets = rendered(name)["subnet4"]
    assert [s["id"] for s in subnets] == [v.id for v in topology.vlans]
    for subnet, vlan in zip(subnets, topology.vlans, strict=True):
        assert IPv4Network(subnet["subnet"]) == vlan.subnet
        assert subnet["interface"] == vlan.router_interface
        assert vlan.dhcp.pool is not None
        assert subnet["pools"] == [{"pool": f"{vlan.dhcp.pool[0]} - {vlan.dhcp.pool[1]}"}]
        assert subnet["valid-lifetime"] == vlan.dhcp.default_lease_time
        assert subnet["max-valid-lifetime"] == vlan.dhcp.max_lease_time


@pytest.mark.parametrize("name", EXAMPLES)
def test_options_are_the_router_dns_and_broadcast_of_the_vlan(name: str) -> None:
    for subnet, vlan in zip(rendered(name)["subnet4"], example(name).vlans, strict=True):
        options = {o["name"]: o["data"] for o in subnet["option-data"]}
        assert options["routers"] == str(vlan.router_address)
        assert options["broadcast-address"] == str(vlan.subnet.broadcast_address)
        dns = [
            IPv4Address(a.strip()) for a in options.get("domain-name-servers", "").split(",") if a
        ]
        assert tuple(dns) == vlan.dhcp.dns


def test_interfaces_are_the_routers_vlan_interfaces_not_the_uplink() -> None:
    topology = example("seeds")
    interfaces = rendered("seeds")["interfaces-config"]["interfaces"]
    assert interfaces == ["eth0", "eth2"]
    assert topology.uplink.router_interface not in interfaces


def test_fixed_addresses_are_reservations_in_their_vlans_subnet() -> None:
    subnets = {s["id"]: s for s in rendered("seeds")["subnet4"]}
    assert subnets[1]["reservations"] == [
        {"hostname": "Device1", "hw-address": "02:00:0a:00:01:0b", "ip-address": "10.0.1.11"}
    ]
    assert subnets[2]["reservations"] == [
        {"hostname": "Device2", "hw-address": "02:00:0a:00:02:0b", "ip-address": "10.0.2.11"}
    ]


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_reservation_is_a_dhcpd_host_with_the_same_mac_and_address(name: str) -> None:
    dhcpd = render_dhcpd_conf(example(name))
    reservations = [r for s in rendered(name)["subnet4"] for r in s.get("reservations", [])]
    hosts = dhcpd.count("host ")
    assert len(reservations) == hosts
    for r in reservations:
        assert (
            f"host {r['hostname']} {{\n  hardware ethernet {r['hw-address']};\n"
            f"  fixed-address {r['ip-address']};\n}}"
        ) in dhcpd
