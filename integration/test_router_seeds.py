"""The seed article's own UDP tests, run across isolated VLANs through a router-mode relay.

Broadcast: `nc -ulp 5000` listens on one VLAN, `echo -n foo | nc -u -b -w1 <bcast> 5000` sends
on another. Multicast: `socat -u UDP4-RECV:22001,ip-add-membership=233.54.12.234:eth0 -` gets
what `socat -u - UDP4-DATAGRAM:233.54.12.234:22001` sends on another VLAN, with the route for
the group via eth0 that the seeds add on every device. The router drops FORWARD between VLANs;
the relay has exactly two rules: 5000 from VLAN 3 to VLAN 1, and the group from VLAN 1 to 2.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from crosscast import lab
from crosscast.net import netns
from integration import routerlab

pytestmark = pytest.mark.root

BASE = 222  # VLAN n is 10.222.n.0/24
NC_PORT = 5000
GROUP = "233.54.12.234"
GROUP_PORT = 22001
RULES = (
    f"seed-udp from br3 to br1 port {NC_PORT}",
    f"seed-video from br1 to br2 group {GROUP} port {GROUP_PORT}",
)


@dataclass
class Router:
    vlans: lab.RoutedVlans
    relay: routerlab.RelayProcess

    def host(self, vlan: int, index: int = 0) -> lab.Host:
        return self.vlans.hosts[vlan][index]

    def broadcast(self, vlan: int) -> str:
        return self.vlans.vlans[vlan].broadcast


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    prefix = lab.unique_prefix("ccs")
    logs = tmp_path_factory.mktemp("router_seeds")
    with routerlab.torn_down(prefix):
        vlans = lab.RoutedVlans.build(prefix, n_vlans=3, hosts_per_vlan=2, relay_hosts=False,
                                      base=BASE)  # fmt: skip
        routerlab.isolate_vlans(vlans.router, ("br1", "br2", "br3"))
        for hosts in vlans.hosts.values():
            for host in hosts:
                # As the seeds do on every device: the group goes out of eth0, not to the router.
                netns.run(["ip", "route", "add", f"{GROUP}/32", "dev", "eth0"], ns=host.ns)
        relay = routerlab.start_relay(vlans.router, routerlab.rule_args(*RULES), logs / "relay.log")
        yield Router(vlans, relay)
        assert relay.alive(), relay.tail()


@dataclass
class Tools:
    """Command-line tools a test runs in host namespaces; stopped when the test ends."""

    directory: Path
    running: list[routerlab.Background] = field(default_factory=list)

    def start(self, name: str, host: lab.Host, argv: list[str]) -> routerlab.Background:
        tool = routerlab.run_in_background(host.ns, argv, self.directory / f"{name}.out")
        self.running.append(tool)
        return tool

    def listening(
        self, name: str, host: lab.Host, argv: list[str], port: int
    ) -> routerlab.Background:
        """Start a receiver and return once its UDP port is bound."""
        tool = self.start(name, host, argv)
        lab.wait_until(
            lambda: routerlab.udp_port_bound(host.ns, port) or tool.proc.poll() is not None,
            timeout=5.0,
            what=f"{argv[0]} bound to UDP {port} in {host.ns}",
        )
        assert tool.proc.poll() is None, f"{name} exited: {tool.output()!r}"
        return tool

    def stop_all(self) -> None:
        for tool in self.running:
            tool.stop()


@pytest.fixture
def tools(tmp_path: Path) -> Iterator[Tools]:
    t = Tools(tmp_path)
    try:
        yield t
    finally:
        t.stop_all()


def nc_listen(tools: Tools, name: str, host: lab.Host) -> routerlab.Background:
    return tools.listening(name, host, ["nc", "-ulp", str(NC_PORT)], NC_PORT)


def nc_broadcast(tools: Tools, name: str, host: lab.Host, bcast: str, text: str) -> None:
    """The seeds' sender: `echo -n TEXT | nc -u -b -w1 BCAST 5000` (runs on in the background)."""
    tools.start(name, host, ["sh", "-c", f"echo -n {text} | nc -u -b -w1 {bcast} {NC_PORT}"])


def socat_receive(tools: Tools, name: str, host: lab.Host) -> routerlab.Background:
    argv = ["socat", "-u", f"UDP4-RECV:{GROUP_PORT},ip-add-membership={GROUP}:eth0", "-"]
    return tools.listening(name, host, argv, GROUP_PORT)


def socat_send(host: lab.Host, text: str) -> None:
    """The seeds' sender: one datagram to the group (TTL 1, socat's default) via eth0."""
    netns.run(
        ["socat", "-u", "-", f"UDP4-DATAGRAM:{GROUP}:{GROUP_PORT}"], ns=host.ns, input=text + "\n"
    )


def output_contains(tool: routerlab.Background, text: bytes, timeout: float) -> bool:
    try:
        lab.wait_until(lambda: text in tool.output(), timeout)
    except TimeoutError:
        return False
    return True


def test_nc_broadcast_from_vlan3_reaches_nc_listener_on_vlan1(router: Router, tools: Tools) -> None:
    listener = nc_listen(tools, "listen-v1", router.host(1))

    nc_broadcast(tools, "send-v3", router.host(3), router.broadcast(3), "foo")

    assert output_contains(listener, b"foo", routerlab.ARRIVAL_TIMEOUT), (
        f"nc on VLAN 1 printed {listener.output()!r}\n" + router.relay.tail()
    )


def test_nc_broadcast_from_vlan3_does_not_reach_vlan2_without_a_rule(
    router: Router, tools: Tools
) -> None:
    control = nc_listen(tools, "listen-v3", router.host(3, 1))
    outsider = nc_listen(tools, "listen-v2", router.host(2))

    nc_broadcast(tools, "send-v3", router.host(3), router.broadcast(3), "foo")

    assert output_contains(control, b"foo", routerlab.ARRIVAL_TIMEOUT), "the probe never went out"
    assert routerlab.stays_false(outsider.output), (
        f"nc on VLAN 2 printed {outsider.output()!r}\n" + router.relay.tail()
    )


def test_nc_broadcast_from_vlan1_does_not_reach_vlan3_against_the_rule(
    router: Router, tools: Tools
) -> None:
    control = nc_listen(tools, "listen-v1", router.host(1, 1))
    outsider = nc_listen(tools, "listen-v3", router.host(3))

    nc_broadcast(tools, "send-v1", router.host(1), router.broadcast(1), "foo")

    assert output_contains(control, b"foo", routerlab.ARRIVAL_TIMEOUT), "the probe never went out"
    assert routerlab.stays_false(outsider.output), (
        f"nc on VLAN 3 printed {outsider.output()!r}\n" + router.relay.tail()
    )


def test_socat_multicast_from_vlan1_reaches_socat_receiver_on_vlan2(
    router: Router, tools: Tools
) -> None:
    receiver = socat_receive(tools, "recv-v2", router.host(2))

    # Re-send until it arrives: IGMP snooping may take a moment to learn the new member.
    deadline = time.monotonic() + routerlab.ARRIVAL_TIMEOUT
    n = 0
    while time.monotonic() < deadline and b"video" not in receiver.output():
        n += 1
        socat_send(router.host(1), f"video-{n}")
        output_contains(receiver, b"video", routerlab.RESEND_INTERVAL)

    assert b"video" in receiver.output(), (
        f"socat on VLAN 2 printed {receiver.output()!r} after {n} sends\n" + router.relay.tail()
    )


def test_socat_multicast_from_vlan1_does_not_reach_vlan3(router: Router, tools: Tools) -> None:
    member = socat_receive(tools, "recv-v2", router.host(2))
    outsider = socat_receive(tools, "recv-v3", router.host(3))

    deadline = time.monotonic() + routerlab.ARRIVAL_TIMEOUT
    n = 0
    while time.monotonic() < deadline and b"stream" not in member.output():
        n += 1
        socat_send(router.host(1), f"stream-{n}")
        output_contains(member, b"stream", routerlab.RESEND_INTERVAL)
    assert b"stream" in member.output(), "the stream never reached VLAN 2\n" + router.relay.tail()

    assert routerlab.stays_false(outsider.output), (
        f"socat on VLAN 3 printed {outsider.output()!r}\n" + router.relay.tail()
    )
