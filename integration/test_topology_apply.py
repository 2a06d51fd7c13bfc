"""`crosscast topology apply/destroy --netns-prefix` on the seeds' two-VLAN prototype.

One module-wide apply under a unique prefix (other runs may share this machine), checked from
several sides, always destroyed at the end. Traffic only goes to addresses inside the
namespaces made here.
"""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from crosscast.net import netns
from crosscast.topology.apply import apply_topology, destroy_topology
from crosscast.topology.load import load_topology
from crosscast.topology.model import Topology, mac_for_name

pytestmark = pytest.mark.root

SEEDS = Path(__file__).resolve().parent.parent / "examples" / "topology-seeds.yaml"
LEASES = {"Container1": IPv4Address("10.0.1.150"), "Container2": IPv4Address("10.0.2.150")}


def _unique_prefix() -> str:
    return f"cct{secrets.token_hex(2)}-"


def _apply(topology: Topology, prefix: str) -> tuple[int, str]:
    out = io.StringIO()
    rc = apply_topology(topology, netns_prefix=prefix, leases=LEASES, out=out)
    return rc, out.getvalue()


def _destroy(topology: Topology, prefix: str) -> tuple[int, str]:
    out = io.StringIO()
    rc = destroy_topology(topology, netns_prefix=prefix, out=out)
    return rc, out.getvalue()


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(proc.name))
    return pids


def _pings(ns: str, address: str) -> bool:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, "ping", "-c1", "-W1", address],
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def _link(ns: str, ifname: str) -> dict[str, object]:
    out = netns.run(["ip", "-4", "-d", "-j", "address", "show", "dev", ifname], ns).stdout
    links = json.loads(out)
    assert isinstance(links, list)
    link = links[0]
    assert isinstance(link, dict)
    return link


@pytest.fixture(scope="module")
def seeds() -> Topology:
    return load_topology(SEEDS)


@pytest.fixture(scope="module")
def applied(seeds: Topology) -> Iterator[str]:
    prefix = _unique_prefix()
    try:
        rc, output = _apply(seeds, prefix)
        assert rc == 0, output
        yield prefix
    finally:
        _destroy(seeds, prefix)


def test_apply_makes_one_namespace_per_host_router_container_and_device(applied: str) -> None:
    expected = ["Container1", "Container2", "Device1", "Device2", "host", "router"]
    assert netns.names(applied) == sorted(applied + name for name in expected)


def test_host_has_one_bridge_per_vlan_and_the_uplink_bridge(applied: str) -> None:
    for bridge, address in (("br0", "10.0.1.1"), ("br1", "10.0.2.1"), ("brup", "192.168.1.1")):
        link = _link(applied + "host", bridge)
        assert link["linkinfo"]["info_kind"] == "bridge"  # type: ignore[index]
        assert "UP" in link["flags"]  # type: ignore[operator]
        assert any(a["local"] == address for a in link["addr_info"])  # type: ignore[attr-defined]


def test_bridges_snoop_multicast_with_a_querier(applied: str) -> None:
    out = netns.run(["ip", "-d", "-j", "link", "show", "dev", "br0"], applied + "host").stdout
    data = json.loads(out)[0]["linkinfo"]["info_data"]
    assert data["mcast_snooping"] == 1
    assert data["mcast_querier"] == 1


def test_router_has_an_interface_per_vlan_and_the_uplink(applied: str) -> None:
    router = applied + "router"
    for ifname, address in (("eth0", "10.0.1.3"), ("eth1", "192.168.1.3"), ("eth2", "10.0.2.3")):
        link = _link(router, ifname)
        assert [a["local"] for a in link["addr_info"]] == [address]  # type: ignore[attr-defined]
    out = netns.run(["ip", "-j", "link", "show", "dev", "router-eth0"], applied + "host").stdout
    assert json.loads(out)[0]["master"] == "br0"


def test_containers_get_leased_address_and_deterministic_mac(applied: str) -> None:
    link = _link(applied + "Container1", "eth0")
    assert link["address"] == mac_for_name("Container1")
    assert [a["local"] for a in link["addr_info"]] == ["10.0.1.150"]  # type: ignore[attr-defined]


def test_ping_within_a_vlan_works(applied: str) -> None:
    assert _pings(applied + "Container1", "10.0.1.11")
    assert _pings(applied + "Device2", "10.0.2.150")
    assert _pings(applied + "Container1", "10.0.1.3")


def test_ping_across_vlans_fails(applied: str) -> None:
    assert not _pings(applied + "Container1", "10.0.2.150")
    assert not _pings(applied + "Container1", "10.0.2.11")
    assert not _pings(applied + "Device2", "10.0.1.11")


def test_router_address_on_the_other_vlan_is_unreachable(applied: str) -> None:
    assert not _pings(applied + "Container1", "10.0.2.3")
    assert not _pings(applied + "Device2", "10.0.1.3")


def test_router_reaches_both_vlans(applied: str) -> None:
    assert _pings(applied + "router", "10.0.1.150")
    assert _pings(applied + "router", "10.0.2.11")


def test_vlan_reaches_the_internet_through_the_router(applied: str) -> None:
    assert _pings(applied + "Device1", "192.168.1.1")


def test_router_sysctls(applied: str) -> None:
    router = applied + "router"
    assert netns.run(["sysctl", "-n", "net.ipv4.ip_forward"], router).stdout.strip() == "1"
    value = netns.run(["sysctl", "-n", "net.ipv4.icmp_echo_ignore_broadcasts"], router).stdout
    assert value.strip() == "0"


def test_dhcpd_runs_in_the_router_namespace(applied: str) -> None:
    pid = int(Path(f"/run/crosscast/{applied}/dhcpd.pid").read_text())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "dhcpd"
    assert str(pid) in netns.run(["ip", "netns", "pids", applied + "router"]).stdout.split()


def _relay_pid(prefix: str) -> int:
    return int(Path(f"/run/crosscast/{prefix}/relay.pid").read_text())


def test_the_relay_runs_in_the_router_namespace_with_the_rendered_rules(
    applied: str, seeds: Topology
) -> None:
    from crosscast.topology.render import render_relay_rules

    rules = f"/run/crosscast/{applied}/relay-rules.yaml"
    assert Path(rules).read_text() == render_relay_rules(seeds)
    pid = _relay_pid(applied)
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert cmdline[1:8] == ["-m", "crosscast", "relay", "--rules-file", rules, "-ll", "info"]
    assert str(pid) in netns.run(["ip", "netns", "pids", applied + "router"]).stdout.split()
    log = Path(f"/run/crosscast/{applied}/relay.log").read_text()
    assert "ready: relay" in log
    assert "eth0 (10.0.1.3), eth2 (10.0.2.3)" in log


def test_changed_relay_rules_restart_the_relay(applied: str, seeds: Topology) -> None:
    rules = Path(f"/run/crosscast/{applied}/relay-rules.yaml")
    before = _relay_pid(applied)
    rules.write_text(rules.read_text() + "# edited by hand\n")
    rc, output = _apply(seeds, applied)
    assert rc == 0, output
    changed = [line for line in output.splitlines() if line.startswith("+")]
    assert changed == [f"+    {rules}", f"+    crosscast relay in {applied}router (2 rules)"]
    after = _relay_pid(applied)
    assert after != before
    assert _processes_mentioning(f"--rules-file {rules}") == [after]


def test_rendered_nft_rules_load_in_the_router(applied: str, seeds: Topology) -> None:
    from crosscast.topology.render import render_nft_rules

    netns.run(["nft", "-c", "-f", "-"], applied + "router", input=render_nft_rules(seeds))


def test_apply_again_changes_nothing(applied: str, seeds: Topology) -> None:
    rc, output = _apply(seeds, applied)
    assert rc == 0, output
    assert output.splitlines()[-1].startswith("0 steps done")
    assert not any(line.startswith("+") for line in output.splitlines())


def test_destroy_leaves_nothing(seeds: Topology) -> None:
    prefix = _unique_prefix()
    try:
        rc, output = _apply(seeds, prefix)
        assert rc == 0, output
        assert _processes_mentioning(f"/run/crosscast/{prefix}/")
    finally:
        rc, output = _destroy(seeds, prefix)
    assert rc == 0, output
    assert netns.names(prefix) == []
    assert not any(p.name.startswith(prefix) for p in Path("/etc/netns").glob("*"))
    assert not Path(f"/run/crosscast/{prefix}").exists()
    deadline = time.monotonic() + 5
    while _processes_mentioning(f"/run/crosscast/{prefix}/") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_mentioning(f"/run/crosscast/{prefix}/") == []
    rc, output = _destroy(seeds, prefix)
    assert rc == 0
    assert output.splitlines()[-1].startswith("0 steps done")


HOST_MODE = """\
name: {t}
trunk: {t}tr
uplink:
  interface: {t}up
  subnet: 192.168.1.0/24
  gateway: 192.168.1.1
  router_address: 192.168.1.3
  router_interface: eth1
  network: {{name: {t}wlan, driver: ipvlan}}
vlans:
  - {{id: 1, name: vlan1, subnet: 10.0.1.0/24, gateway: 10.0.1.1, router_address: 10.0.1.3,
      bridge: {t}b0, router_interface: eth0, dhcp: {{range: [10.0.1.100, 10.0.1.200]}}}}
  - {{id: 2, name: vlan2, subnet: 10.0.2.0/24, gateway: 10.0.2.1, router_address: 10.0.2.3,
      bridge: {t}b1, router_interface: eth2, dhcp: {{range: [10.0.2.100, 10.0.2.200]}}}}
router: {{name: {t}router, image: alpine}}
containers:
  - {{name: {t}c1, image: alpine, vlan: vlan1, address: 10.0.1.20}}
  - {{name: {t}c2, image: alpine, vlan: vlan2, address: 10.0.2.20}}
"""


def test_apply_without_prefix_builds_on_the_host_it_runs_on(tmp_path: Path) -> None:
    # "This host" is a scratch namespace entered with nsenter (network only, so namespaces
    # that apply adds stay visible); every name carries a unique token.
    token = f"cct{secrets.token_hex(2)}"
    scratch = token + "scratch"
    topology_file = tmp_path / "host.yaml"
    topology_file.write_text(HOST_MODE.format(t=token))
    crosscast = [sys.executable, "-m", "crosscast", "topology"]
    enter = ["nsenter", f"--net=/run/netns/{scratch}"]
    netns.add(scratch)
    try:
        netns.run(
            ["ip", "link", "add", token + "tr", "type", "veth", "peer", "name", "trp"], scratch
        )
        netns.run(
            ["ip", "link", "add", token + "up", "type", "veth", "peer", "name", "upp"], scratch
        )
        netns.run(["ip", "address", "add", "192.168.1.1/24", "dev", "upp"], scratch)
        netns.run(["ip", "link", "set", "upp", "up"], scratch)
        for _ in range(2):
            proc = subprocess.run(
                [*enter, *crosscast, "apply", str(topology_file)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.splitlines()[-1].startswith("0 steps done")
        assert _pings(token + "c1", "192.168.1.1")  # out through the router's macvlan uplink
        assert not _pings(token + "c1", "10.0.2.20")
    finally:
        proc = subprocess.run(
            [*enter, *crosscast, "destroy", str(topology_file)],
            capture_output=True,
            text=True,
            check=False,
        )
        netns.delete(scratch)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert netns.names(token) == []
    assert not Path(f"/run/crosscast/{token}").exists()
