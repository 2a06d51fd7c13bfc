"""Loop prevention: three relays, all peers of each other, two of them on one VLAN. SnowSignal
storms here (the two relays on VLAN 2 bounce each frame between them forever). One broadcast in
must give exactly one copy in every segment, and then silence."""

from __future__ import annotations

import time

import pytest

from crosscast import lab
from integration.helpers.relays import Procs

pytestmark = pytest.mark.root

PORT = 5076
WINDOW = 1.5  # count arrivals this long after the send
SETTLE = 1.0  # after this, a copy of the frame on the wire or mesh is part of a storm
AFTER = 1.5  # how long the quiet period is watched
MAX_AFTER = 2  # frames carrying the payload tolerated after SETTLE (there should be none)


@pytest.fixture
def three_relays(vlans: lab.RoutedVlans, procs: Procs) -> list[lab.Host]:
    """Relay hosts 10.201.1.21 (VLAN 1), 10.201.2.21 and 10.201.2.22 (both VLAN 2)."""
    relays = [vlans.relays[1], vlans.relays[2], vlans.add_host(2, 22, role="r")]
    for relay in relays:
        others = [r.ip for r in relays if r is not relay]
        procs.crosscast(relay, "--other-relays", *others)
    procs.wait_ready(*procs.started)
    return relays


def _one_broadcast_gives_one_copy_per_segment(
    vlans: lab.RoutedVlans, relays: list[lab.Host], sender: lab.Host, witnesses: list[lab.Host]
) -> None:
    payload = b"loop-" + sender.ns.encode()
    listeners = {w.ns: lab.udp_listener(w.ns, PORT) for w in witnesses}
    # everything carrying the payload: re-emitted broadcasts and mesh datagrams (whose frame
    # contains it), on both VLAN 2 relays
    sniffers = [lab.sniff(r.ns) for r in relays if r.segment == vlans.vlans[2]]
    lab.send_broadcast(sender.ns, sender.segment.broadcast, PORT, payload)
    sent = time.monotonic()
    # Sockets queue what arrives: wait out the window, then count (WINDOW >= SETTLE).
    time.sleep(WINDOW)
    counts = {
        ns: sum(d == payload for d, _ in lab.collect(listener, 0.0))
        for ns, listener in listeners.items()
    }
    assert counts == dict.fromkeys(listeners, 1), "exactly one copy in every segment"

    assert time.monotonic() >= sent + SETTLE
    for s in sniffers:
        s.drain()  # the legitimate copies, and anything before SETTLE

    def carries(f: lab.SniffedFrame) -> bool:
        return payload in f.raw

    # the sniffers queue in parallel: watch AFTER seconds on one, then read the others' queues
    later = sniffers[0].collect(AFTER, carries)
    later += [f for s in sniffers[1:] for f in s.collect(0.0, carries)]
    assert len(later) <= MAX_AFTER, f"storm: {len(later)} frames after {SETTLE} s: {later[:5]}"
    for listener in listeners.values():
        assert [d for d, _ in lab.collect(listener, 0.0) if d == payload] == []


def test_broadcast_from_the_single_relay_vlan_gives_one_copy_each_and_no_storm(
    vlans: lab.RoutedVlans, three_relays: list[lab.Host], procs: Procs
) -> None:
    sender = vlans.hosts[1][0]
    witnesses = [vlans.hosts[1][1], vlans.hosts[2][0], vlans.hosts[2][1]]
    _one_broadcast_gives_one_copy_per_segment(vlans, three_relays, sender, witnesses)
    assert all(s.alive() for s in procs.started)


def test_broadcast_from_the_two_relay_vlan_gives_one_copy_each_and_no_storm(
    vlans: lab.RoutedVlans, three_relays: list[lab.Host], procs: Procs
) -> None:
    sender = vlans.hosts[2][0]
    witnesses = [vlans.hosts[2][1], vlans.hosts[1][0], vlans.hosts[1][1]]
    _one_broadcast_gives_one_copy_per_segment(vlans, three_relays, sender, witnesses)
    assert all(s.alive() for s in procs.started)
