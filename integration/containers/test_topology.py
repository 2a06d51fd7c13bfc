"""The topology helper against a real engine: `crosscast topology render` for the seeds' example,
then the rendered docker-networks.sh and docker-containers.sh run as they are, with podman's
Docker-compatible CLI as `docker` (integration/containers/docker_shim.py says what it has to
translate: no ipvlan here, no bridge-name option, no alpine image), `crosscast lease` getting
the containers' addresses from isc-dhcp-server in the router container, and `topology verify`
passing on the containers; then the relay image in the router's namespace carries the rendered
relay rules' broadcast across, and nothing else.

What the rendered scripts leave to the operator, done here the way their comments say:
- docker-containers.sh creates the router but does not start it, while the leases it asks for
  next need the router's dhcpd: the test runs the script's router block first, starts the
  router, loads router-firewall.rules and runs dhcpd in it (the host's iptables-restore and
  dhcpd in the router's namespace: the stand-in alpine image has neither), then runs the whole
  script, whose router block is then skipped (it is idempotent);
- the containers' default route must be the router, not Docker's gateway.

`topology verify` knows namespaces by name (P+name); the containers' namespaces are given those
names with `ip netns attach`, and P+host (which verify only asks to exist: the uplink gateway,
"the Internet", is podman's bridge address on the host) is an empty namespace. The physical
devices of the topology are containers with their fixed MAC and address.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from integration.containers import engine
from integration.containers.conftest import Images
from integration.containers.engine import ROOT, Podman, poll
from integration.containers.probes import Listener, send

pytestmark = pytest.mark.root

SEEDS = ROOT / "examples" / "topology-seeds.yaml"
CROSSCAST = Path(sys.executable).with_name("crosscast")
NETWORKS = ("wlan", "br0net", "br1net")  # the names the rendered scripts use
CONTAINERS = ("router", "Container1", "Container2")
BRIDGES = ("br0", "br1")
SUBNETS = ("192.168.1.0/24", "10.0.1.0/24", "10.0.2.0/24")


def run(argv: list[str], env: dict[str, str], timeout: float = 120) -> str:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(argv)}: exit {proc.returncode}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def seeds() -> dict[str, object]:
    data = yaml.safe_load(SEEDS.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    out = tmp_path / "rendered"
    subprocess.run(
        [str(CROSSCAST), "topology", "render", str(SEEDS), "--output-dir", str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out


@pytest.fixture
def script_env(pm: Podman, images: Images, tmp_path: Path) -> dict[str, str]:
    """What the rendered scripts run with: `docker` is the shim, `crosscast` this checkout's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "docker"
    shim.write_text(
        f'#!/bin/sh\nexec {sys.executable} {ROOT / "integration/containers/docker_shim.py"} "$@"\n'
    )
    shim.chmod(0o755)
    (bin_dir / "crosscast").symlink_to(CROSSCAST)
    return {
        **pm.env,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CROSSCAST_SHIM_OWNER": pm.owner,
        "CROSSCAST_SHIM_BASE_IMAGE": images.base,
        "CROSSCAST_SHIM_NETWORKS": str(engine.STATE / "networks"),
        "CROSSCAST_LEASE_DB": str(tmp_path / "leases.sqlite3"),
    }


@pytest.fixture
def names_are_free(pm: Podman) -> None:
    """The rendered names are fixed: make sure they are ours to use, and removed afterwards."""
    for bridge in BRIDGES:
        assert not Path(f"/sys/class/net/{bridge}").exists(), f"{bridge} exists on this host"
    for subnet in SUBNETS:  # what docker-networks.sh creates
        engine.assert_subnet_free(subnet)
    for network in NETWORKS:
        assert pm("network", "exists", network, check=False).returncode != 0, network
        pm.created.append(("network", network))
    for container in CONTAINERS:
        assert pm("container", "exists", container, check=False).returncode != 0, container
        pm.created.append(("container", container))


@pytest.fixture
def named_netns(prefix: str) -> Iterator[list[str]]:
    made: list[str] = []
    try:
        yield made
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for proc in started:
            os.kill(proc.pid, signal.SIGTERM)
            proc.communicate(timeout=10)


def router_block(script: str) -> str:
    """The shebang, `set -eu` and the router's block of docker-containers.sh."""
    head, marker, _ = script.partition("\n# Container1 ")
    assert marker, "docker-containers.sh has no Container1 block"
    return head + "\n"


@pytest.mark.usefixtures("names_are_free")
def test_rendered_scripts_build_the_seeds_topology_and_verify_passes(
    pm: Podman,
    images: Images,
    prefix: str,
    rendered: Path,
    script_env: dict[str, str],
    seeds: dict[str, object],
    tmp_path: Path,
    named_netns: list[str],
    daemons: list[subprocess.Popen[str]],
) -> None:
    run(["sh", str(rendered / "docker-networks.sh")], script_env)
    for bridge, network in zip(BRIDGES, ("br0net", "br1net"), strict=True):
        inspect = pm("network", "inspect", "--format", "{{.NetworkInterface}}", network)
        assert inspect.stdout.strip() == bridge

    router_only = tmp_path / "router.sh"
    router_only.write_text(router_block((rendered / "docker-containers.sh").read_text()))
    run(["sh", str(router_only)], script_env)
    pm("start", "router")
    links = pm.netns("router", "ip", "-br", "-4", "addr").stdout
    addresses = {line.split()[0].split("@")[0]: line.split()[2] for line in links.splitlines()}
    assert addresses == {
        "lo": "127.0.0.1/8",
        "eth0": "10.0.1.3/24",
        "eth1": "192.168.1.3/24",
        "eth2": "10.0.2.3/24",
    }
    firewall = (rendered / "router-firewall.rules").read_text()
    router_ns = f"--net=/proc/{pm.pid('router')}/ns/net"
    subprocess.run(
        ["nsenter", router_ns, "iptables-restore"], input=firewall, text=True, check=True
    )
    leases = tmp_path / "dhcpd.leases"
    leases.touch()
    dhcpd = ["nsenter", router_ns, "dhcpd", "-4", "-f", "-q", "-cf", str(rendered / "dhcpd.conf"),
             "-lf", str(leases), "-pf", str(tmp_path / "dhcpd.pid"), "eth0", "eth2"]  # fmt: skip
    daemons.append(
        subprocess.Popen(dhcpd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    )

    run(["sh", str(rendered / "docker-containers.sh")], script_env, timeout=180)
    table = run([str(CROSSCAST), "lease", "--list", "--format", "json"], script_env)
    bindings = {b["name"]: b for b in json.loads(table)}
    assert set(bindings) == {"Container1", "Container2"}

    members: dict[str, str] = {}  # name -> its router address (default route)
    for name, vlan_router in (("Container1", "10.0.1.3"), ("Container2", "10.0.2.3")):
        pm("start", name)
        members[name] = vlan_router
        mac = pm.netns(name, "ip", "-br", "link", "show", "dev", "eth0").stdout.split()[2]
        assert mac == bindings[name]["mac"]
        eth0 = pm.netns(name, "ip", "-4", "-br", "addr", "show", "dev", "eth0").stdout.split()
        assert eth0[2].split("/")[0] == bindings[name]["ip"]
    for device in seeds["devices"]:  # type: ignore[attr-defined]
        network = "br0net" if device["vlan"] == "vlan1" else "br1net"
        pm.run(
            device["name"], images.base,
            f"--network={network}", f"--ip={device['address']}",
            f"--mac-address={device['mac']}", f"--hostname={device['name']}",
            command=("sleep", "infinity"),
        )  # fmt: skip
        members[device["name"]] = "10.0.1.3" if device["vlan"] == "vlan1" else "10.0.2.3"
    for name, gateway in members.items():
        pm.netns(name, "ip", "route", "replace", "default", "via", gateway)

    for name in ("router", *members):
        ns = f"{prefix}{name}"
        subprocess.run(["ip", "netns", "attach", ns, str(pm.pid(name))], check=True)
        named_netns.append(ns)
    subprocess.run(["ip", "netns", "add", f"{prefix}host"], check=True)
    named_netns.append(f"{prefix}host")

    verify = subprocess.run(
        [str(CROSSCAST), "topology", "verify", str(SEEDS), "--netns-prefix", prefix],
        env=script_env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    print(verify.stdout)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "checks as expected" in verify.stdout

    # The router-mode relay with the rendered rules, in the router's namespace.
    rules = rendered / "relay-rules.yaml"
    pm.run(
        "relay-in-router", images.relay,
        "--network=container:router", "--cap-add=NET_RAW,NET_ADMIN",
        f"--volume={rules}:/etc/crosscast/relay-rules.yaml:ro",
        "--env=RULES_FILE=/etc/crosscast/relay-rules.yaml",
    )  # fmt: skip
    assert poll(lambda: "ready:" in pm.logs("relay-in-router"), 20), pm.logs("relay-in-router")
    listener = Listener(pm, "Container2", 5000, 5001)
    try:
        send(pm, "Container1", "10.0.1.255", 5001, "quiet-port")
        send(pm, "Container1", "10.0.1.255", 5000, "foo")  # the seeds' `nc -u -b` test
        assert listener.wait_for("foo")
        assert listener.payloads(5001) == []
    finally:
        listener.stop()
