"""Router mode: one relay in the router namespace serves three isolated VLANs by explicit rules.

The router drops FORWARD between VLANs (and, with br_netfilter, accepts it within each bridge),
so the only way across is a relay rule: GPS broadcasts (10110) from VLAN 1 to VLANs 2 and 3,
emergency broadcasts (5000) from VLAN 3 to VLANs 1 and 2, and the video group 233.54.12.234:22001
from VLAN 1 to VLAN 2. Every negative check also proves, on the sender's own VLAN, that the
datagram was really sent.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crosscast import lab
from integration import routerlab
from integration.routerlab import Sockets

pytestmark = pytest.mark.root

BASE = 221  # VLAN n is 10.221.n.0/24
GPS_PORT = 10110
EMERGENCY_PORT = 5000
VIDEO_GROUP = "233.54.12.234"
VIDEO_PORT = 22001
RULES = (
    f"gps from br1 to br2,br3 port {GPS_PORT}",
    f"emergency from br3 to br1,br2 port {EMERGENCY_PORT}",
    f"video from br1 to br2 group {VIDEO_GROUP} port {VIDEO_PORT}",
)


@dataclass
class Router:
    vlans: lab.RoutedVlans
    relay: routerlab.RelayProcess
    bridge_mac: dict[int, str]

    def host(self, vlan: int, index: int = 0) -> lab.Host:
        return self.vlans.hosts[vlan][index]

    def broadcast(self, vlan: int) -> str:
        return self.vlans.vlans[vlan].broadcast


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    prefix = lab.unique_prefix("ccr")
    logs: Path = tmp_path_factory.mktemp("router_rules")
    with routerlab.torn_down(prefix):
        vlans = lab.RoutedVlans.build(prefix, n_vlans=3, hosts_per_vlan=2, relay_hosts=False,
                                      base=BASE)  # fmt: skip
        routerlab.isolate_vlans(vlans.router, ("br1", "br2", "br3"))
        macs = routerlab.bridge_macs(vlans.router, 3)
        relay = routerlab.start_relay(vlans.router, routerlab.rule_args(*RULES), logs / "relay.log")
        yield Router(vlans, relay, macs)
        assert relay.alive(), relay.tail()


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    with Sockets() as s:
        yield s


def token(what: str) -> bytes:
    return f"{what}-{secrets.token_hex(4)}".encode()


# -- what crosses ---------------------------------------------------------------------------


def test_gps_broadcast_from_vlan1_reaches_sockets_on_vlans_2_and_3(
    router: Router, sockets: Sockets
) -> None:
    v2 = sockets.udp(router.host(2).ns, GPS_PORT)
    v3 = sockets.udp(router.host(3).ns, GPS_PORT)
    sender = router.host(1)
    tag = token("gps")

    first = routerlab.send_until_received(
        lambda p: lab.send_broadcast(sender.ns, router.broadcast(1), GPS_PORT, p), v2, tag
    )
    other = routerlab.wait_all({"vlan3": v3}, tag)["vlan3"]

    assert first is not None, "GPS broadcast never reached VLAN 2\n" + router.relay.tail()
    assert other is not None, "GPS broadcast never reached VLAN 3\n" + router.relay.tail()
    # The IP source is kept: receivers reply to the GPS receiver itself.
    assert first[1] == sender.ip
    assert other[1] == sender.ip


def test_gps_destination_is_rewritten_to_each_vlans_broadcast(
    router: Router, sockets: Sockets
) -> None:
    sniffers = {n: sockets.sniffer(router.host(n).ns) for n in (2, 3)}
    v2 = sockets.udp(router.host(2).ns, GPS_PORT)
    sender = router.host(1)
    tag = token("gps-dst")

    assert routerlab.send_until_received(
        lambda p: lab.send_broadcast(sender.ns, router.broadcast(1), GPS_PORT, p), v2, tag
    ), router.relay.tail()

    for n, sniffer in sniffers.items():
        frame = sniffer.wait_for(lambda f: f.payload.startswith(tag), routerlab.ARRIVAL_TIMEOUT)
        assert frame is not None, f"no GPS frame on VLAN {n}\n" + router.relay.tail()
        assert (frame.ip_src, frame.ip_dst, frame.dport) == (
            sender.ip,
            router.broadcast(n),
            GPS_PORT,
        )
        assert frame.dst_mac == "ff:ff:ff:ff:ff:ff"


def test_relayed_frames_carry_the_egress_bridge_mac(router: Router, sockets: Sockets) -> None:
    sniffers = {n: sockets.sniffer(router.host(n).ns) for n in (2, 3)}
    v2 = sockets.udp(router.host(2).ns, GPS_PORT)
    sender = router.host(1)
    tag = token("gps-mac")

    assert routerlab.send_until_received(
        lambda p: lab.send_broadcast(sender.ns, router.broadcast(1), GPS_PORT, p), v2, tag
    ), router.relay.tail()

    for n, sniffer in sniffers.items():
        frame = sniffer.wait_for(lambda f: f.payload.startswith(tag), routerlab.ARRIVAL_TIMEOUT)
        assert frame is not None, f"no GPS frame on VLAN {n}\n" + router.relay.tail()
        # Never the sender's MAC: that would teach the bridges that the sender sits here.
        assert frame.src_mac == router.bridge_mac[n] != sender.mac


def test_emergency_broadcast_from_vlan3_reaches_vlans_1_and_2(
    router: Router, sockets: Sockets
) -> None:
    v1 = sockets.udp(router.host(1).ns, EMERGENCY_PORT)
    v2 = sockets.udp(router.host(2).ns, EMERGENCY_PORT)
    sender = router.host(3)
    tag = token("emergency")

    first = routerlab.send_until_received(
        lambda p: lab.send_broadcast(sender.ns, router.broadcast(3), EMERGENCY_PORT, p), v1, tag
    )
    other = routerlab.wait_all({"vlan2": v2}, tag)["vlan2"]

    assert first is not None, "emergency broadcast never reached VLAN 1\n" + router.relay.tail()
    assert other is not None, "emergency broadcast never reached VLAN 2\n" + router.relay.tail()
    assert first[1] == other[1] == sender.ip


def test_video_multicast_from_vlan1_reaches_a_vlan2_member(
    router: Router, sockets: Sockets
) -> None:
    member = sockets.group(router.host(2).ns, VIDEO_GROUP, VIDEO_PORT)
    sender = router.host(1)
    tag = token("video")

    got = routerlab.send_until_received(
        lambda p: routerlab.send_multicast(sender.ns, VIDEO_GROUP, VIDEO_PORT, p, ttl=1),
        member,
        tag,
    )

    assert got is not None, "video multicast never reached VLAN 2\n" + router.relay.tail()
    assert got[1] == sender.ip


def test_video_multicast_on_vlan2_keeps_ttl_1_and_carries_the_bridge_mac(
    router: Router, sockets: Sockets
) -> None:
    receiver = router.host(2)
    wire = sockets.sniffer(receiver.ns)
    member = sockets.group(receiver.ns, VIDEO_GROUP, VIDEO_PORT)
    sender = router.host(1)
    tag = token("video-ttl")

    assert routerlab.send_until_received(
        lambda p: routerlab.send_multicast(sender.ns, VIDEO_GROUP, VIDEO_PORT, p, ttl=1),
        member,
        tag,
    ), router.relay.tail()
    frame = wire.wait_for(lambda f: f.payload.startswith(tag), routerlab.ARRIVAL_TIMEOUT)

    assert frame is not None, "socket got it but the sniffer did not\n" + router.relay.tail()
    ttl = frame.raw[14 + 8]  # IPv4 header byte 8
    # A TTL-1 sender's datagram must not arrive with TTL 0 (receivers would drop it).
    assert ttl == 1
    assert (frame.ip_dst, frame.dst_mac) == (VIDEO_GROUP, "01:00:5e:36:0c:ea")
    assert frame.src_mac == router.bridge_mac[2] != sender.mac


# -- what does not cross --------------------------------------------------------------------


def quiet(
    router: Router,
    send: Callable[[bytes], None],
    listeners: dict[str, socket.socket],
    control: str,
    tag: bytes,
) -> None:
    """Send once; the control listener (the sender's own VLAN) must get it, no other may."""
    routerlab.assert_stays_put(send, listeners, control, tag, router.relay)


def test_broadcast_on_an_unconfigured_port_does_not_cross(router: Router, sockets: Sockets) -> None:
    port = GPS_PORT + 1
    listeners = {f"vlan{n}": sockets.udp(router.host(n, 1).ns, port) for n in (1, 2, 3)}
    sender = router.host(1)
    quiet(
        router,
        lambda p: lab.send_broadcast(sender.ns, router.broadcast(1), port, p),
        listeners,
        "vlan1",
        token("other-port"),
    )


def test_unicast_to_the_gps_port_does_not_cross(router: Router, sockets: Sockets) -> None:
    listeners = {f"vlan{n}": sockets.udp(router.host(n, 1).ns, GPS_PORT) for n in (1, 2, 3)}
    sender = router.host(1)

    def send(payload: bytes) -> None:
        # One unicast to a host on each VLAN: the firewall stops the routed ones, the relay
        # must not pick any of them up.
        for n in (1, 2, 3):
            lab.send_udp(sender.ns, router.host(n, 1).ip, GPS_PORT, payload)

    quiet(router, send, listeners, "vlan1", token("unicast"))


def test_multicast_to_an_unconfigured_group_does_not_cross(
    router: Router, sockets: Sockets
) -> None:
    group = "239.1.2.3"
    listeners = {
        f"vlan{n}": sockets.group(router.host(n, 1).ns, group, VIDEO_PORT) for n in (1, 2, 3)
    }
    sender = router.host(1)
    quiet(
        router,
        lambda p: routerlab.send_multicast(sender.ns, group, VIDEO_PORT, p, ttl=1),
        listeners,
        "vlan1",
        token("other-group"),
    )


def test_gps_rule_is_one_way_vlan2_does_not_reach_1_or_3(router: Router, sockets: Sockets) -> None:
    listeners = {f"vlan{n}": sockets.udp(router.host(n, 1).ns, GPS_PORT) for n in (1, 2, 3)}
    sender = router.host(2)
    quiet(
        router,
        lambda p: lab.send_broadcast(sender.ns, router.broadcast(2), GPS_PORT, p),
        listeners,
        "vlan2",
        token("gps-reverse"),
    )


def test_emergency_rule_is_one_way_vlan1_does_not_reach_2_or_3(
    router: Router, sockets: Sockets
) -> None:
    listeners = {f"vlan{n}": sockets.udp(router.host(n, 1).ns, EMERGENCY_PORT) for n in (1, 2, 3)}
    sender = router.host(1)
    quiet(
        router,
        lambda p: lab.send_broadcast(sender.ns, router.broadcast(1), EMERGENCY_PORT, p),
        listeners,
        "vlan1",
        token("emergency-reverse"),
    )


def test_video_multicast_does_not_reach_vlan3(router: Router, sockets: Sockets) -> None:
    member2 = sockets.group(router.host(2).ns, VIDEO_GROUP, VIDEO_PORT)
    member3 = sockets.group(router.host(3).ns, VIDEO_GROUP, VIDEO_PORT)
    wire3 = sockets.sniffer(router.host(3).ns)
    sender = router.host(1)
    tag = token("video-v3")

    # VLAN 2 getting it proves the stream flows; VLAN 3 must see none of it, on a joined
    # socket or on the wire.
    assert routerlab.send_until_received(
        lambda p: routerlab.send_multicast(sender.ns, VIDEO_GROUP, VIDEO_PORT, p, ttl=1),
        member2,
        tag,
    ), router.relay.tail()
    leaked = routerlab.arrivals({"vlan3": member3}, tag)
    on_wire = wire3.collect(0.1, lambda f: f.ip_dst == VIDEO_GROUP)

    assert not leaked, f"video reached a VLAN 3 socket: {leaked}\n" + router.relay.tail()
    assert not on_wire, f"video frames on VLAN 3: {on_wire}"


def test_video_multicast_from_vlan2_does_not_reach_vlan1(router: Router, sockets: Sockets) -> None:
    listeners = {
        f"vlan{n}": sockets.group(router.host(n, 1).ns, VIDEO_GROUP, VIDEO_PORT) for n in (1, 2, 3)
    }
    sender = router.host(2)
    quiet(
        router,
        lambda p: routerlab.send_multicast(sender.ns, VIDEO_GROUP, VIDEO_PORT, p, ttl=1),
        listeners,
        "vlan2",
        token("video-reverse"),
    )


# -- memory ---------------------------------------------------------------------------------


def test_only_the_vlans_rules_capture_on_get_a_full_receive_ring(router: Router) -> None:
    # br1 and br3 are where rules capture; br2 only receives relayed frames, so its capture
    # (segment probes only) maps a small ring: the rings are the relay's socket mappings.
    sizes = []
    with open(f"/proc/{router.relay.proc.pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if len(fields) == 6 and fields[5].startswith("socket:"):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                sizes.append((end - start) // 1024)
    assert sorted(sizes) == [32, 1024, 1024], sizes
