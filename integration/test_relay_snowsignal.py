"""A mixed mesh: SnowSignal 0.1.4.2 on one Swarm node, crosscast `--mesh-format snowsignal` on
the other. Over the overlay (one subnet), where SnowSignal itself works.

SnowSignal binds its mesh receiver to its interface address and sends each datagram from a fresh
socket (ephemeral source port), so a peer is known by its address only.
"""

from __future__ import annotations

import socket
import time

import pytest

from crosscast import lab
from integration.helpers.relays import Procs

pytestmark = pytest.mark.root

PORT = 5076
ARRIVAL = 5.0


def _send_until_received(
    sender: lab.Host, dst: str, listener: socket.socket, payload: bytes, timeout: float
) -> tuple[bytes, str] | None:
    """Broadcast `payload` every 0.5 s until it arrives (SnowSignal logs nothing like "ready"
    after its sockets are open, so its start-up cannot be awaited exactly)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lab.send_broadcast(sender.ns, dst, PORT, payload)
        got = lab.receive(listener, 0.5, lambda d, _s: d == payload)
        if got is not None:
            return got
    return None


@pytest.fixture
def mixed(overlay: lab.SwarmOverlay, procs: Procs) -> lab.SwarmOverlay:
    """Node 1's relay runs SnowSignal, node 2's crosscast in SnowSignal mesh format."""
    ss, cc = overlay.nodes[0].relay, overlay.nodes[1].relay
    procs.wait_ready(
        procs.snowsignal(ss, "--other-relays", cc.ip),
        procs.crosscast(cc, "--mesh-format", "snowsignal", "--other-relays", ss.ip),
    )
    return overlay


def test_snowsignal_to_crosscast(mixed: lab.SwarmOverlay) -> None:
    sender, receiver = mixed.nodes[0].apps[0], mixed.nodes[1].apps[0]
    listener = lab.udp_listener(receiver.ns, PORT)
    with lab.sniff(receiver.ns) as sniffer:
        got = _send_until_received(sender, mixed.overlay.broadcast, listener, b"ss->cc", ARRIVAL)
        frame = sniffer.wait_for(lambda f: f.payload == b"ss->cc", 1.0)
    # SnowSignal forwards what it captured, and a frame captured on the sender's node carries
    # only a partial UDP checksum (TP_STATUS_CSUMNOTREADY): the receiving relay must complete it.
    assert frame is not None, "crosscast wrote nothing onto node 2's segment"
    assert frame.udp_checksum_ok, f"re-emitted with a bad UDP checksum (receivers drop it): {frame}"
    assert got == (b"ss->cc", sender.ip)
    assert frame.src_mac == mixed.nodes[1].relay.mac
    assert frame.ip_dst == mixed.overlay.broadcast


def test_crosscast_to_snowsignal(mixed: lab.SwarmOverlay) -> None:
    sender, receiver = mixed.nodes[1].apps[0], mixed.nodes[0].apps[0]
    listener = lab.udp_listener(receiver.ns, PORT)
    got = _send_until_received(sender, mixed.overlay.broadcast, listener, b"cc->ss", ARRIVAL)
    assert got == (b"cc->ss", sender.ip)


def test_lab_reference_snowsignal_pair_discovered_through_fake_swarm_dns(
    overlay: lab.SwarmOverlay, procs: Procs
) -> None:
    """Validates the lab itself with the reference relay: two SnowSignals, SERVICENAME discovery
    through the fake Docker DNS on 127.0.0.11, carry a broadcast across the overlay."""
    dns = lab.FakeSwarmDns({"tasks.snowsignal": [r.ip for r in overlay.relays]})
    for relay in overlay.relays:
        dns.serve_in(relay.ns)
        procs.snowsignal(relay, env={"SERVICENAME": "snowsignal"})
    procs.wait_ready(*procs.started)
    sender, receiver = overlay.nodes[0].apps[0], overlay.nodes[1].apps[0]
    listener = lab.udp_listener(receiver.ns, PORT)
    got = _send_until_received(sender, overlay.overlay.broadcast, listener, b"ss-ss", ARRIVAL)
    assert got == (b"ss-ss", sender.ip)
    assert any("Discovered relays" in s.text() for s in procs.started)
