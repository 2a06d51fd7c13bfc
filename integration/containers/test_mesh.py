"""Two relay containers meshing the way the Swarm stack's global service does, as far as one
engine can show it: two "nodes" (two podman networks) joined only by a router container, so
unicast crosses between them and broadcast does not; the relays find each other as
tasks.<service> in DNS and carry a broadcast on one node to the other.

The relays run with deploy/swarm-stack.yaml's environment, the mesh secret mounted where the
stack's Docker secret would be (uid 10001, mode 0400). Swarm's embedded DNS is played by
dnsmasq (the host's binary) in the router container's network namespace: podman's own DNS
(aardvark) answers only for containers on the same network, and a Swarm task name spans nodes.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from integration.containers.conftest import Images
from integration.containers.engine import ROOT, Podman, poll
from integration.containers.probes import Listener, send

pytestmark = pytest.mark.root

PVA = 5076  # BDCAST_PORT in the stack
OTHER = 5075  # a port no relay forwards
NODES = {1: "10.203.11", 2: "10.203.12"}  # node n: network NODES[n].0/24
ROUTER, RELAY, APP = 254, 10, 20  # host numbers on each node's network
SERVICE = "crosscast_relay"  # what Swarm makes of {{.Service.Name}} in stack "crosscast"


@dataclass(frozen=True)
class Nodes:
    pm: Podman
    router: str
    relays: dict[int, str]
    apps: dict[int, str]


def stack_environment() -> dict[str, str]:
    stack = yaml.safe_load((ROOT / "deploy" / "swarm-stack.yaml").read_text())
    env = {str(k): str(v) for k, v in stack["services"]["relay"]["environment"].items()}
    env["SERVICENAME"] = env["SERVICENAME"].replace("{{.Service.Name}}", SERVICE)
    env["DISCOVERY_INTERVAL"] = "1"  # the stack's 10 s, shortened for the test
    return env


@pytest.fixture
def dns(pm: Podman, images: Images, prefix: str, tmp_path: Path) -> Iterator[list[str]]:
    """The router container, and the DNS it serves: tasks.SERVICE -> both relays."""
    for n, net in NODES.items():
        pm.network(f"{prefix}-node{n}", f"{net}.0/24")
    router = pm.run(
        f"{prefix}-router", images.base,
        "--network", f"{prefix}-node1:ip={NODES[1]}.{ROUTER},interface_name=eth0",
        "--network", f"{prefix}-node2:ip={NODES[2]}.{ROUTER},interface_name=eth1",
        "--sysctl=net.ipv4.ip_forward=1",
        command=("sleep", "infinity"),
    )  # fmt: skip
    hosts = tmp_path / "tasks.hosts"
    hosts.write_text("".join(f"{net}.{RELAY} tasks.{SERVICE}\n" for net in NODES.values()))
    dnsmasq = subprocess.Popen(
        ["nsenter", f"--net=/proc/{pm.pid(router)}/ns/net", "dnsmasq", "--no-daemon",
         "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}", "--bind-interfaces",
         *(f"--listen-address={net}.{ROUTER}" for net in NODES.values()),
         "--user=root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield [router]
    finally:
        os.kill(dnsmasq.pid, signal.SIGTERM)
        _, err = dnsmasq.communicate(timeout=10)
        if dnsmasq.returncode not in (0, -signal.SIGTERM):
            print(f"dnsmasq: {err}")


@pytest.fixture
def nodes(pm: Podman, images: Images, prefix: str, dns: list[str], tmp_path: Path) -> Nodes:
    (router,) = dns
    apps = {}
    for n, net in NODES.items():
        apps[n] = pm.run(
            f"{prefix}-app{n}", images.base,
            "--network", f"{prefix}-node{n}:ip={net}.{APP}",
            command=("sleep", "infinity"),
        )  # fmt: skip
        other = NODES[3 - n]
        pm.netns(apps[n], "ip", "route", "add", f"{other}.0/24", "via", f"{net}.{ROUTER}")
    return Nodes(pm, router, {}, apps)


def start_relays(nodes: Nodes, images: Images, prefix: str, secret: Path) -> None:
    pm = nodes.pm
    env = stack_environment()
    for n, net in NODES.items():
        nodes.relays[n] = pm.run(
            f"{prefix}-relay{n}", images.relay,
            "--network", f"{prefix}-node{n}:ip={net}.{RELAY}",
            f"--dns={net}.{ROUTER}",
            "--cap-add=NET_RAW,NET_ADMIN",
            f"--volume={secret}:{env['MESH_SECRET_FILE']}:ro",
            *(f"--env={k}={v}" for k, v in env.items()),
        )  # fmt: skip
        pm.netns(nodes.relays[n], "ip", "route", "add", f"{NODES[3 - n]}.0/24", "via",
                 f"{net}.{ROUTER}")  # fmt: skip


def mesh_secret(tmp_path: Path) -> Path:
    """The stack's Docker secret as a file: readable by uid/gid 10001 only (mode 0400)."""
    secret = tmp_path / "crosscast_mesh"
    secret.write_text("a shared secret of at least thirty-two bytes, for the test\n")
    os.chown(secret, 10001, 10001)
    secret.chmod(0o400)
    return secret


def peer_count(pm: Podman, relay: str) -> str:
    status = pm.exec(relay, "crosscast", "status", check=False).stdout
    lines = [line.split() for line in status.splitlines() if "crosscast_peers" in line]
    return lines[0][1] if lines else "-"


def test_broadcast_crosses_nodes_only_through_the_mesh(
    nodes: Nodes, images: Images, prefix: str, tmp_path: Path
) -> None:
    pm = nodes.pm
    listener = Listener(pm, nodes.apps[2], PVA, OTHER)
    try:
        # Without relays the nodes carry unicast, not broadcast: the unicast sent after the
        # broadcast arrives, the broadcast never does.
        send(pm, nodes.apps[1], f"{NODES[1]}.255", PVA, "search-before-relays")
        send(pm, nodes.apps[1], f"{NODES[2]}.{APP}", PVA, "unicast-marker")
        assert listener.wait_for("unicast-marker")
        assert "search-before-relays" not in listener.payloads()

        start_relays(nodes, images, prefix, mesh_secret(tmp_path))

        def meshed() -> bool:
            return all(peer_count(pm, relay) == "1" for relay in nodes.relays.values())

        assert poll(meshed, timeout=20), [pm.logs(r) for r in nodes.relays.values()]

        send(pm, nodes.apps[1], f"{NODES[1]}.255", OTHER, "not-relayed")
        send(pm, nodes.apps[1], f"{NODES[1]}.255", PVA, "search")
        assert listener.wait_for("search", timeout=10)
        # rebroadcast on node 2 with the searcher's own address, so the server can answer it
        assert (PVA, f"{NODES[1]}.{APP}", "search") in listener.arrivals
        assert "not-relayed" not in listener.payloads()
    finally:
        listener.stop()


def test_relays_find_each_other_as_tasks_of_the_service(
    nodes: Nodes, images: Images, prefix: str, tmp_path: Path
) -> None:
    pm = nodes.pm
    start_relays(nodes, images, prefix, mesh_secret(tmp_path))
    relay1 = nodes.relays[1]
    assert poll(lambda: peer_count(pm, relay1) == "1", timeout=20), pm.logs(relay1)
    logs = pm.logs(relay1)
    assert f"{NODES[2]}.{RELAY}" in logs  # the other node's relay, and not itself
    assert "mesh crosscast on port 7124" in logs
    check = pm.exec(relay1, "crosscast", "relay", "--check").stdout
    secret_line = next(line for line in check.splitlines() if "mesh secret" in line)
    assert "env MESH_SECRET_FILE" in secret_line  # authenticated, as the stack configures it
