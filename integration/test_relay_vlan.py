"""crosscast across routed VLANs: a relay host on each VLAN, static peers. Broadcasts to the
relayed port cross with the destination rewritten for the egress segment; nothing else crosses."""

from __future__ import annotations

import pytest

from crosscast import lab
from integration.helpers.relays import Procs

pytestmark = pytest.mark.root

PORT = 5076
OTHER_PORT = 5077
ARRIVAL = 3.0
QUIET = 1.0


@pytest.fixture
def relayed(vlans: lab.RoutedVlans, procs: Procs) -> lab.RoutedVlans:
    """The two relay hosts run crosscast with each other as --other-relays."""
    r1, r2 = vlans.relays[1], vlans.relays[2]
    procs.wait_ready(
        procs.crosscast(r1, "--other-relays", r2.ip),
        procs.crosscast(r2, "--other-relays", r1.ip),
    )
    return vlans


def test_directed_broadcast_crosses_with_destination_rewritten(relayed: lab.RoutedVlans) -> None:
    sender, receiver = relayed.hosts[1][0], relayed.hosts[2][0]
    listener = lab.udp_listener(receiver.ns, PORT)
    with lab.sniff(receiver.ns) as sniffer:
        lab.send_broadcast(sender.ns, relayed.vlans[1].broadcast, PORT, b"directed")
        assert lab.receive(listener, ARRIVAL) == (b"directed", sender.ip)
        frame = sniffer.wait_for(lambda f: f.payload == b"directed", 1.0)
    assert frame is not None
    assert frame.ip_dst == relayed.vlans[2].broadcast, "directed broadcast rewritten for VLAN 2"
    assert frame.ip_src == sender.ip
    assert frame.src_mac == relayed.relays[2].mac
    assert frame.dst_mac == "ff:ff:ff:ff:ff:ff"
    assert frame.ip_checksum_ok
    assert frame.udp_checksum_ok, "UDP checksum recomputed after the destination rewrite"


def test_limited_broadcast_keeps_its_address(relayed: lab.RoutedVlans) -> None:
    sender, receiver = relayed.hosts[1][0], relayed.hosts[2][0]
    listener = lab.udp_listener(receiver.ns, PORT)
    with lab.sniff(receiver.ns) as sniffer:
        lab.send_broadcast(sender.ns, "255.255.255.255", PORT, b"limited")
        assert lab.receive(listener, ARRIVAL) == (b"limited", sender.ip)
        frame = sniffer.wait_for(lambda f: f.payload == b"limited", 1.0)
    assert frame is not None
    assert frame.ip_dst == "255.255.255.255"
    assert frame.src_mac == relayed.relays[2].mac


def test_broadcast_to_another_port_does_not_cross(relayed: lab.RoutedVlans) -> None:
    sender, receiver = relayed.hosts[1][0], relayed.hosts[2][0]
    other = lab.udp_listener(receiver.ns, OTHER_PORT)
    relayed_port = lab.udp_listener(receiver.ns, PORT)
    with lab.sniff(receiver.ns) as sniffer:
        lab.send_broadcast(sender.ns, relayed.vlans[1].broadcast, OTHER_PORT, b"port-5077")
        lab.send_broadcast(sender.ns, "255.255.255.255", OTHER_PORT, b"port-5077")
        assert lab.collect(other, QUIET) == []
        assert sniffer.collect(0.0, lambda f: f.payload == b"port-5077") == []
    # control: the relays were working all along
    lab.send_broadcast(sender.ns, relayed.vlans[1].broadcast, PORT, b"control")
    assert lab.receive(relayed_port, ARRIVAL) == (b"control", sender.ip)


def test_unicast_to_the_relayed_port_does_not_cross(relayed: lab.RoutedVlans) -> None:
    sender, receiver = relayed.hosts[1][0], relayed.hosts[2][0]
    listener = lab.udp_listener(receiver.ns, PORT)
    with lab.sniff(receiver.ns) as sniffer:
        # to the relay host itself (its capture certainly sees it) and to another host
        lab.send_udp(sender.ns, relayed.relays[1].ip, PORT, b"unicast")
        lab.send_udp(sender.ns, relayed.hosts[1][1].ip, PORT, b"unicast")
        assert lab.collect(listener, QUIET) == []
        assert sniffer.collect(0.0, lambda f: f.payload == b"unicast") == []
    lab.send_broadcast(sender.ns, relayed.vlans[1].broadcast, PORT, b"control")
    assert lab.receive(listener, ARRIVAL) == (b"control", sender.ip)


def test_broadcast_crosses_in_the_other_direction(relayed: lab.RoutedVlans) -> None:
    sender, receiver = relayed.hosts[2][1], relayed.hosts[1][1]
    listener = lab.udp_listener(receiver.ns, PORT)
    with lab.sniff(receiver.ns) as sniffer:
        lab.send_broadcast(sender.ns, relayed.vlans[2].broadcast, PORT, b"reverse")
        assert lab.receive(listener, ARRIVAL) == (b"reverse", sender.ip)
        frame = sniffer.wait_for(lambda f: f.payload == b"reverse", 1.0)
    assert frame is not None
    assert frame.ip_dst == relayed.vlans[1].broadcast
    assert frame.src_mac == relayed.relays[1].mac


def test_broadcast_does_not_cross_without_relays(vlans: lab.RoutedVlans) -> None:
    sender, receiver = vlans.hosts[1][0], vlans.hosts[2][0]
    listener = lab.udp_listener(receiver.ns, PORT)
    lab.send_broadcast(sender.ns, vlans.vlans[1].broadcast, PORT, b"baseline")
    lab.send_broadcast(sender.ns, "255.255.255.255", PORT, b"baseline")
    assert lab.collect(listener, QUIET) == []
