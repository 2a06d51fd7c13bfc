"""Router mode and the mesh together: two nodes, each a router namespace with three VLANs.

The routers are joined by a veth (`ul0`, the underlay: 10.226.0.1 and .2). Relay A, in node A's
router, has "out from br1 to mesh port 5076"; relay B, in node B's router, "in from mesh to br2
port 5076"; each names the other with --other-relays. A broadcast on A's VLAN 1 must come out on
B's VLAN 2 only, with B's VLAN 2 broadcast address as destination and B's br2 as Ethernet source.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crosscast import lab
from integration import routerlab
from integration.routerlab import Sockets

pytestmark = pytest.mark.root

BASE_A = 224  # node A's VLAN n is 10.224.n.0/24
BASE_B = 225  # node B's VLAN n is 10.225.n.0/24
UNDERLAY_A = "10.226.0.1"
UNDERLAY_B = "10.226.0.2"
PORT = 5076
GROUP, GROUP_PORT = "233.54.12.234", 22001  # the seeds' multicast example
MESH_PORT = 7124
BRIDGES = ("br1", "br2", "br3")


@dataclass
class Nodes:
    a: lab.RoutedVlans
    b: lab.RoutedVlans
    relay_a: routerlab.RelayProcess
    relay_b: routerlab.RelayProcess
    b_bridge_mac: dict[int, str]

    def logs(self) -> str:
        return self.relay_a.tail() + "\n" + self.relay_b.tail()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    prefix_a, prefix_b = lab.unique_prefix("ccma"), lab.unique_prefix("ccmb")
    logs: Path = tmp_path_factory.mktemp("router_mesh")
    with routerlab.torn_down(prefix_a, prefix_b):
        a = lab.RoutedVlans.build(prefix_a, n_vlans=3, hosts_per_vlan=2, relay_hosts=False,
                                  base=BASE_A)  # fmt: skip
        b = lab.RoutedVlans.build(prefix_b, n_vlans=3, hosts_per_vlan=2, relay_hosts=False,
                                  base=BASE_B)  # fmt: skip
        for node in (a, b):
            routerlab.isolate_vlans(node.router, BRIDGES)
        routerlab.join_routers(a.router, b.router, UNDERLAY_A, UNDERLAY_B)
        b_macs = routerlab.bridge_macs(b.router, 3)
        mesh = ["-m", str(MESH_PORT)]
        relay_a = routerlab.start_relay(
            a.router,
            [*routerlab.rule_args(f"out from br1 to mesh port {PORT}",
                                  f"mout from br1 to mesh group {GROUP} port {GROUP_PORT}"),
             *mesh,
             "--other-relays", UNDERLAY_B],
            logs / "relay-a.log",
        )  # fmt: skip
        relay_b = routerlab.start_relay(
            b.router,
            [*routerlab.rule_args(f"in from mesh to br2 port {PORT}",
                                  f"min from mesh to br2 group {GROUP} port {GROUP_PORT}"),
             *mesh,
             "--other-relays", UNDERLAY_A],
            logs / "relay-b.log",
        )  # fmt: skip
        yield Nodes(a, b, relay_a, relay_b, b_macs)
        assert relay_a.alive(), relay_a.tail()
        assert relay_b.alive(), relay_b.tail()


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    with Sockets() as s:
        yield s


def token(what: str) -> bytes:
    return f"{what}-{secrets.token_hex(4)}".encode()


def test_broadcast_on_node_a_vlan1_comes_out_on_node_b_vlan2(
    nodes: Nodes, sockets: Sockets
) -> None:
    listener = sockets.udp(nodes.b.hosts[2][0].ns, PORT)
    sender = nodes.a.hosts[1][0]
    bcast = nodes.a.vlans[1].broadcast

    got = routerlab.send_until_received(
        lambda p: lab.send_broadcast(sender.ns, bcast, PORT, p), listener, token("mesh")
    )

    assert got is not None, "nothing reached node B's VLAN 2\n" + nodes.logs()
    assert got[1] == sender.ip  # the source is kept: PVAccess replies to it


def test_frame_on_node_b_vlan2_has_its_broadcast_and_its_bridge_mac(
    nodes: Nodes, sockets: Sockets
) -> None:
    receiver = nodes.b.hosts[2][0]
    sniffer = sockets.sniffer(receiver.ns)
    listener = sockets.udp(receiver.ns, PORT)
    sender = nodes.a.hosts[1][0]
    bcast = nodes.a.vlans[1].broadcast
    tag = token("mesh-rewrite")

    assert routerlab.send_until_received(
        lambda p: lab.send_broadcast(sender.ns, bcast, PORT, p), listener, tag
    ), nodes.logs()
    frame = sniffer.wait_for(lambda f: f.payload.startswith(tag), routerlab.ARRIVAL_TIMEOUT)

    assert frame is not None, "socket got it but the sniffer did not\n" + nodes.logs()
    assert (frame.ip_src, frame.ip_dst, frame.dport) == (
        sender.ip,
        nodes.b.vlans[2].broadcast,
        PORT,
    )
    assert (frame.dst_mac, frame.src_mac) == ("ff:ff:ff:ff:ff:ff", nodes.b_bridge_mac[2])


def test_broadcast_from_node_a_stays_off_node_b_other_vlans(nodes: Nodes, sockets: Sockets) -> None:
    target = sockets.udp(nodes.b.hosts[2][0].ns, PORT)
    others = {
        **{f"B-vlan{n}": sockets.udp(nodes.b.hosts[n][0].ns, PORT) for n in (1, 3)},
        **{f"A-vlan{n}": sockets.udp(nodes.a.hosts[n][0].ns, PORT) for n in (2, 3)},
    }
    sender = nodes.a.hosts[1][0]
    bcast = nodes.a.vlans[1].broadcast
    tag = token("mesh-only-b2")

    # It must have crossed (to B's VLAN 2) for its absence elsewhere to mean anything.
    assert routerlab.send_until_received(
        lambda p: lab.send_broadcast(sender.ns, bcast, PORT, p), target, tag
    ), nodes.logs()
    leaked = routerlab.arrivals(others, tag)

    assert not leaked, f"relayed where no rule sends it: {leaked}\n" + nodes.logs()


def test_other_ports_do_not_cross_the_mesh(nodes: Nodes, sockets: Sockets) -> None:
    port = PORT + 1
    listeners = {
        "A-vlan1": sockets.udp(nodes.a.hosts[1][1].ns, port),
        **{f"B-vlan{n}": sockets.udp(nodes.b.hosts[n][0].ns, port) for n in (1, 2, 3)},
    }
    sender = nodes.a.hosts[1][0]
    bcast = nodes.a.vlans[1].broadcast
    routerlab.assert_stays_put(
        lambda p: lab.send_broadcast(sender.ns, bcast, port, p),
        listeners,
        "A-vlan1",
        token("mesh-other-port"),
        nodes.relay_a,
    )


def test_node_b_vlan2_does_not_reach_node_a_against_the_rules(
    nodes: Nodes, sockets: Sockets
) -> None:
    listeners = {
        "B-vlan2": sockets.udp(nodes.b.hosts[2][1].ns, PORT),
        **{f"A-vlan{n}": sockets.udp(nodes.a.hosts[n][0].ns, PORT) for n in (1, 2, 3)},
    }
    sender = nodes.b.hosts[2][0]
    bcast = nodes.b.vlans[2].broadcast
    routerlab.assert_stays_put(
        lambda p: lab.send_broadcast(sender.ns, bcast, PORT, p),
        listeners,
        "B-vlan2",
        token("mesh-reverse"),
        nodes.relay_b,
    )


def test_multicast_crosses_the_mesh_to_node_b_vlan2_only(nodes: Nodes, sockets: Sockets) -> None:
    member = routerlab.multicast_listener(nodes.b.hosts[2][0].ns, GROUP, GROUP_PORT)
    elsewhere = routerlab.multicast_listener(nodes.b.hosts[3][0].ns, GROUP, GROUP_PORT)
    sniffer = sockets.sniffer(nodes.b.hosts[2][0].ns)
    sender = nodes.a.hosts[1][0]
    tag = token("mesh-multicast")
    try:
        got = routerlab.send_until_received(
            lambda p: routerlab.send_multicast(sender.ns, GROUP, GROUP_PORT, p), member, tag
        )
        assert got is not None, "the group did not reach node B's VLAN 2\n" + nodes.logs()
        assert got[1] == sender.ip
        frame = sniffer.wait_for(lambda f: f.payload.startswith(tag), routerlab.ARRIVAL_TIMEOUT)
        assert frame is not None
        assert (frame.ip_dst, frame.dst_mac, frame.src_mac) == (
            GROUP,
            "01:00:5e:36:0c:ea",
            nodes.b_bridge_mac[2],
        )
        assert routerlab.arrivals({"B-vlan3": elsewhere}, tag) == {}
    finally:
        member.close()
        elsewhere.close()
