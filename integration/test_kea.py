"""The rendered kea-dhcp4.conf against the real Kea, in namespaces of our own.

- `kea-dhcp4 -t` accepts the configuration rendered from every example. Kea checks that the
  interfaces it is told to serve exist, so each check runs in a fresh namespace holding the
  router's VLAN interfaces (veth ends named like them), as the router container would.
- `crosscast lease` obtains an address from a running Kea exactly as it does from
  isc-dhcp-server: the lab is test_topology_leases.py's (a bridge in P+host, the router in P+rtr
  on eth0), with kea-dhcp4 in the router namespace serving the configuration rendered from a
  one-VLAN topology, its lease file, pid file and lock file in the test's temporary directory.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crosscast.net import netns
from crosscast.topology.kea import render_kea_dhcp4_conf
from crosscast.topology.load import load_topology
from crosscast.topology.model import mac_for_name
from integration.test_topology_leases import POOL_START, ROUTER, SUBNET, DhcpLab, env_of

pytestmark = [pytest.mark.root]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(
    p for p in (ROOT / "examples").glob("topology-*.yaml") if not p.name.startswith("topology-bad")
)
KEA = shutil.which("kea-dhcp4") or "/usr/sbin/kea-dhcp4"
FIXED = ipaddress.IPv4Address("10.199.1.50")  # a reservation outside the pool

needs_kea = pytest.mark.skipif(
    not Path(KEA).exists(), reason="kea-dhcp4 is not installed (scripts/install installs it)"
)

# The lab of test_topology_leases.py as a topology: VLAN 1 on the router's eth0, a pool of three
# addresses from .100, and one container with a fixed address.
LAB_TOPOLOGY = f"""
name: kea-lab
trunk: eth9
uplink:
  interface: eth8
  subnet: 192.168.77.0/24
  gateway: 192.168.77.1
  router_address: 192.168.77.3
  router_interface: eth1
  network: {{name: uplink, driver: ipvlan}}
dhcp:
  dns: [{ROUTER}]
  default_lease_time: 600
  max_lease_time: 7200
vlans:
  - id: 1
    name: vlan1
    subnet: {SUBNET}
    gateway: {SUBNET.network_address + 1}
    router_address: {ROUTER}
    bridge: br0
    router_interface: eth0
    network: {{name: br0net, driver: bridge}}
    dhcp:
      range: [{POOL_START}, {POOL_START + 2}]
router: {{name: router, image: alpine}}
containers:
  - {{name: fixed1, image: alpine, vlan: vlan1, address: {FIXED}}}
"""


def kea_config(rendered: str, tmp_path: Path) -> str:
    """The rendered configuration with its lease file moved into `tmp_path`."""
    config = json.loads(rendered)
    config["Dhcp4"]["lease-database"]["name"] = str(tmp_path / "kea-leases4.csv")
    return json.dumps(config, indent=2)


def kea_env(tmp_path: Path) -> dict[str, str]:
    # Kea writes its pid file and log lock file under /run by default; keep them in the test's.
    return {**os.environ, "KEA_PIDFILE_DIR": str(tmp_path), "KEA_LOCKFILE_DIR": str(tmp_path)}


def kea_check(namespace: str, rendered: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`kea-dhcp4 -t` on `rendered` (its lease file moved to `tmp_path`) inside `namespace`."""
    conf = tmp_path / "kea-dhcp4.conf"
    conf.write_text(kea_config(rendered, tmp_path))
    return subprocess.run(
        netns.exec_argv(namespace, [KEA, "-t", str(conf)]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=kea_env(tmp_path),
    )


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"cck{secrets.token_hex(2)}-rtr"
    netns.add(name)
    try:
        yield name
    finally:
        netns.delete(name)
        assert not netns.exists(name)


@needs_kea
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_kea_accepts_the_configuration_rendered_from_every_example(
    example: Path, namespace: str, tmp_path: Path
) -> None:
    topology = load_topology(example)
    for i, vlan in enumerate(topology.vlans):
        netns.run(
            ["ip", "link", "add", vlan.router_interface, "type", "veth", "peer", f"p{i}"], namespace
        )
        netns.run(["ip", "link", "set", vlan.router_interface, "up"], namespace)
    proc = kea_check(namespace, render_kea_dhcp4_conf(topology), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for vlan in topology.vlans:
        assert f"a new subnet has been added to configuration: {vlan.subnet}" in proc.stdout


@needs_kea
def test_kea_refuses_a_configuration_naming_a_missing_interface(
    namespace: str, tmp_path: Path
) -> None:
    # The check above means something: without the router's interfaces, Kea says no.
    proc = kea_check(namespace, render_kea_dhcp4_conf(load_topology(EXAMPLES[0])), tmp_path)
    assert proc.returncode != 0
    assert "doesn't exist in the system" in proc.stdout + proc.stderr


class KeaLab(DhcpLab):
    """test_topology_leases's lab with kea-dhcp4 in the router namespace instead of dhcpd."""

    def start_kea(self) -> None:
        source = self.dir / "topology.yaml"
        source.write_text(LAB_TOPOLOGY)
        conf = self.dir / "kea-dhcp4.conf"
        conf.write_text(kea_config(render_kea_dhcp4_conf(load_topology(source)), self.dir))
        # DhcpLab's log reader, wait_log and stop_dhcpd work on whatever server is in .dhcpd.
        self.dhcpd = subprocess.Popen(
            netns.exec_argv(self.router, [KEA, "-c", str(conf)]),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=kea_env(self.dir),
        )
        self.reader = threading.Thread(target=self._read, args=(self.dhcpd,), daemon=True)
        self.reader.start()
        self.wait_log("DHCP4_STARTED")

    def allocations(self, address: str) -> list[str]:
        return [line for line in self.log if "DHCP4_LEASE_ALLOC" in line and address in line]


@pytest.fixture
def kea_lab(tmp_path: Path) -> Iterator[KeaLab]:
    lab = KeaLab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()
        assert netns.names(lab.prefix) == []


@needs_kea
def test_lease_from_kea_is_from_the_pool_with_the_derived_mac(kea_lab: KeaLab) -> None:
    kea_lab.start_kea()
    env = env_of(kea_lab.lease("container1", "--vlan", "1"))
    assert env["CROSSCAST_MAC"] == mac_for_name("container1")
    assert ipaddress.IPv4Address(env["CROSSCAST_IP"]) in [POOL_START + i for i in range(3)]
    assert env["CROSSCAST_GATEWAY"] == str(ROUTER)
    assert env["CROSSCAST_PREFIX"] == "24"
    line = kea_lab.wait_log("DHCP4_LEASE_ALLOC")
    assert env["CROSSCAST_IP"] in line
    assert mac_for_name("container1") in line


@needs_kea
def test_renewal_from_kea_returns_the_same_binding(kea_lab: KeaLab) -> None:
    kea_lab.start_kea()
    first = json.loads(kea_lab.lease("container1", "--vlan", "1", "--format", "json").stdout)
    again = kea_lab.lease("container1", "--vlan", "1", "--format", "json")
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert (second["ip"], second["mac"]) == (first["ip"], first["mac"])
    assert "renewed" in again.stderr
    # Kea answered both times (DORA, then the renewal's REQUEST): asked again, not read back.
    kea_lab.wait_log("DHCP4_LEASE_ALLOC")
    assert len(kea_lab.allocations(first["ip"])) == 2, "\n".join(kea_lab.log)


@needs_kea
def test_reservation_rendered_from_a_fixed_address_is_what_kea_hands_out(
    kea_lab: KeaLab,
) -> None:
    kea_lab.start_kea()
    env = env_of(kea_lab.lease("fixed1", "--vlan", "1"))
    assert env["CROSSCAST_IP"] == str(FIXED)
    assert env["CROSSCAST_MAC"] == mac_for_name("fixed1")
