"""crosscast across Swarm-like nodes: the overlay carries unicast between nodes but no broadcast;
relays found through Docker's `tasks.<service>` DNS carry the broadcast across."""

from __future__ import annotations

import socket
import time

import pytest

from crosscast import lab
from integration.helpers.relays import Procs

pytestmark = pytest.mark.root

PORT = 5076
SERVICE = "crosscast"
ARRIVAL = 5.0  # deadline for a relayed broadcast (discovery included)
QUIET = 1.0  # window for "nothing arrives"


def _start_dns(overlay: lab.SwarmOverlay) -> lab.FakeSwarmDns:
    dns = lab.FakeSwarmDns({f"tasks.{SERVICE}": [r.ip for r in overlay.relays]})
    for relay in overlay.relays:
        dns.serve_in(relay.ns)
    return dns


def _swarm_relay(procs: Procs, host: lab.Host) -> None:
    procs.crosscast(host, "--discovery-interval", "1", env={"SERVICENAME": SERVICE})


def _send_until_received(
    sender: lab.Host, dst: str, listener: socket.socket, payload: bytes, timeout: float
) -> tuple[bytes, str] | None:
    """Broadcast `payload` every 0.5 s until it arrives (discovery may finish after "ready")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lab.send_broadcast(sender.ns, dst, PORT, payload)
        got = lab.receive(listener, 0.5, lambda d, _s: d == payload)
        if got is not None:
            return got
    return None


def test_broadcast_does_not_cross_nodes_without_relays(overlay: lab.SwarmOverlay) -> None:
    sender, receiver = overlay.nodes[0].apps[0], overlay.nodes[1].apps[0]
    local = lab.udp_listener(overlay.nodes[0].relay.ns, PORT)
    remote = lab.udp_listener(receiver.ns, PORT)
    lab.send_broadcast(sender.ns, overlay.overlay.broadcast, PORT, b"baseline")
    assert lab.receive(local, 2.0) == (b"baseline", sender.ip), "same-node broadcast must work"
    assert lab.collect(remote, QUIET) == []


def test_unicast_crosses_nodes_without_relays(overlay: lab.SwarmOverlay) -> None:
    sender, receiver = overlay.nodes[0].apps[0], overlay.nodes[1].apps[0]
    listener = lab.udp_listener(receiver.ns, 6000)
    lab.send_udp(sender.ns, receiver.ip, 6000, b"unicast")
    assert lab.receive(listener, 2.0) == (b"unicast", sender.ip)


def test_broadcast_crosses_nodes_with_sender_ip_and_relay_mac(
    overlay: lab.SwarmOverlay, procs: Procs
) -> None:
    _start_dns(overlay)
    for relay in overlay.relays:
        _swarm_relay(procs, relay)
    procs.wait_ready(*procs.started)
    sender, receiver = overlay.nodes[0].apps[0], overlay.nodes[1].apps[0]
    relay2 = overlay.nodes[1].relay
    listener = lab.udp_listener(receiver.ns, PORT)
    with lab.sniff(receiver.ns) as sniffer:
        got = _send_until_received(
            sender, overlay.overlay.broadcast, listener, b"swarm-hello", ARRIVAL
        )
        assert got == (b"swarm-hello", sender.ip)
        frame = sniffer.wait_for(lambda f: f.payload == b"swarm-hello", 1.0)
    assert frame is not None
    assert frame.ip_src == sender.ip
    assert frame.ip_dst == overlay.overlay.broadcast
    assert frame.dport == PORT
    assert frame.src_mac == relay2.mac, "re-emitted with the egress relay's own MAC"
    assert frame.src_mac != sender.mac
    assert frame.ip_checksum_ok
    assert frame.udp_checksum_ok


def test_relay_that_joins_later_is_reached_within_one_refresh(
    overlay: lab.SwarmOverlay, procs: Procs
) -> None:
    dns = _start_dns(overlay)
    for relay in overlay.relays:
        _swarm_relay(procs, relay)
    procs.wait_ready(*procs.started)
    sender = overlay.nodes[0].apps[0]
    on_node2 = lab.udp_listener(overlay.nodes[1].apps[0].ns, PORT)
    assert _send_until_received(sender, overlay.overlay.broadcast, on_node2, b"before", ARRIVAL)

    node3 = overlay.add_node()
    dns.serve_in(node3.relay.ns)
    dns.set(f"tasks.{SERVICE}", [r.ip for r in overlay.relays])
    dns_changed = time.monotonic()
    procs.wait_ready(procs.crosscast(node3.relay, "--discovery-interval", "1",
                                     env={"SERVICENAME": SERVICE}))  # fmt: skip
    # The existing relays re-resolve every second: after one interval (plus scheduling slack)
    # node 1's relay must know node 3's; one broadcast, sent once, must then reach node 3.
    on_node3 = lab.udp_listener(node3.apps[0].ns, PORT)
    time.sleep(max(0.0, dns_changed + 1.5 - time.monotonic()))
    lab.send_broadcast(sender.ns, overlay.overlay.broadcast, PORT, b"after-refresh")
    assert lab.receive(on_node3, 2.0, lambda d, _s: d == b"after-refresh") == (
        b"after-refresh",
        sender.ip,
    )
    assert lab.receive(on_node2, 2.0, lambda d, _s: d == b"after-refresh") is not None
