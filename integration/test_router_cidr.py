"""Router mode: a rule's source CIDRs (allow / deny) decide which hosts of a VLAN it relays.

VLAN 1 has hosts .11, .12 and .13; every rule goes from VLAN 1 to VLAN 2, on its own port:
6001 allows only 10.223.1.11/32, 6002 denies 10.223.1.12/32, 6003 allows VLAN 1's subnet only.
Each negative check also proves, on VLAN 1 itself, that the datagram was really sent.
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

BASE = 223  # VLAN n is 10.223.n.0/24
ALLOW_PORT = 6001
DENY_PORT = 6002
SUBNET_PORT = 6003
RULES = (
    f"only11 from br1 to br2 port {ALLOW_PORT} allow 10.{BASE}.1.11/32",
    f"not12 from br1 to br2 port {DENY_PORT} deny 10.{BASE}.1.12/32",
    f"vlan1-only from br1 to br2 port {SUBNET_PORT} allow 10.{BASE}.1.0/24",
)


@dataclass
class Router:
    vlans: lab.RoutedVlans
    relay: routerlab.RelayProcess

    def v1(self, octet: int) -> lab.Host:
        return next(h for h in self.vlans.hosts[1] if h.ip.endswith(f".{octet}"))

    @property
    def v2(self) -> lab.Host:
        return self.vlans.hosts[2][0]


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    prefix = lab.unique_prefix("ccc")
    logs: Path = tmp_path_factory.mktemp("router_cidr")
    with routerlab.torn_down(prefix):
        vlans = lab.RoutedVlans.build(prefix, n_vlans=2, hosts_per_vlan=3, relay_hosts=False,
                                      base=BASE)  # fmt: skip
        routerlab.isolate_vlans(vlans.router, ("br1", "br2"))
        relay = routerlab.start_relay(vlans.router, routerlab.rule_args(*RULES), logs / "relay.log")
        yield Router(vlans, relay)
        assert relay.alive(), relay.tail()


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    with Sockets() as s:
        yield s


def token(what: str) -> bytes:
    return f"{what}-{secrets.token_hex(4)}".encode()


def crosses(router: Router, sockets: Sockets, sender: lab.Host, port: int, tag: bytes) -> None:
    listener = sockets.udp(router.v2.ns, port)
    bcast = router.vlans.vlans[1].broadcast
    got = routerlab.send_until_received(
        lambda p: lab.send_broadcast(sender.ns, bcast, port, p), listener, tag
    )
    assert got is not None, (
        f"{sender.ip} -> port {port} never reached VLAN 2\n" + router.relay.tail()
    )
    assert got[1] == sender.ip


def stays(router: Router, sockets: Sockets, sender: lab.Host, port: int, tag: bytes) -> None:
    control = next(h for h in router.vlans.hosts[1] if h is not sender)
    listeners = {"vlan1": sockets.udp(control.ns, port), "vlan2": sockets.udp(router.v2.ns, port)}
    bcast = router.vlans.vlans[1].broadcast
    routerlab.assert_stays_put(
        lambda p: lab.send_broadcast(sender.ns, bcast, port, p),
        listeners,
        "vlan1",
        tag,
        router.relay,
    )


def test_allow_of_one_host_passes_that_host(router: Router, sockets: Sockets) -> None:
    crosses(router, sockets, router.v1(11), ALLOW_PORT, token("allow-11"))


def test_allow_of_one_host_blocks_its_neighbour(router: Router, sockets: Sockets) -> None:
    stays(router, sockets, router.v1(12), ALLOW_PORT, token("allow-12"))


def test_deny_of_one_host_blocks_it(router: Router, sockets: Sockets) -> None:
    stays(router, sockets, router.v1(12), DENY_PORT, token("deny-12"))


@pytest.mark.parametrize("octet", [11, 13])
def test_deny_of_one_host_lets_the_rest_of_the_subnet_pass(
    router: Router, sockets: Sockets, octet: int
) -> None:
    crosses(router, sockets, router.v1(octet), DENY_PORT, token(f"deny-{octet}"))


def test_allow_of_the_subnet_passes_its_hosts(router: Router, sockets: Sockets) -> None:
    crosses(router, sockets, router.v1(13), SUBNET_PORT, token("subnet-13"))


def test_allow_of_the_subnet_blocks_a_spoofed_foreign_source(
    router: Router, sockets: Sockets
) -> None:
    # A frame on VLAN 1 claiming a source outside 10.223.1.0/24 (a misconfigured or hostile
    # device): the rule's source check, not the wire it came in on, must keep it out.
    sender = router.v1(12)
    listeners = {
        "vlan1": sockets.udp(router.v1(11).ns, SUBNET_PORT),
        "vlan2": sockets.udp(router.v2.ns, SUBNET_PORT),
    }
    bcast = router.vlans.vlans[1].broadcast

    def send(payload: bytes) -> None:
        frame = lab.build_udp_frame(
            sender.mac, "ff:ff:ff:ff:ff:ff", f"10.{BASE}.9.99", bcast, 40000, SUBNET_PORT, payload
        )
        lab.send_frame(sender.ns, "eth0", frame)

    routerlab.assert_stays_put(send, listeners, "vlan1", token("spoofed"), router.relay)
