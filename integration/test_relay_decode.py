"""--decode-pvaccess: real PVAccess and Channel Access searches relayed and named in the log.

The payloads are the golden datagrams of tests/relay/data (captured from p4p and caproto). They
are broadcast on VLAN 1 and relayed by a router-mode relay to VLAN 2; the relay must both
deliver them and log the PV each one searches for, and count them per protocol on /metrics.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from crosscast import lab
from crosscast.net import netns
from integration import routerlab

pytestmark = pytest.mark.root

BASE = 231  # VLAN n is 10.231.n.0/24
DATA = Path(__file__).resolve().parents[1] / "tests" / "relay" / "data"
PV = "crosscast:test:pv"  # the name the golden searches ask for
METRICS = 9131
PVA_PORT, CA_PORT = 5076, 5064


def metrics(ns: str) -> str:
    code = (
        "import urllib.request\n"
        f"print(urllib.request.urlopen('http://127.0.0.1:{METRICS}/metrics', timeout=3)"
        ".read().decode())"
    )
    return netns.run([sys.executable, "-c", code], ns=ns).stdout


def test_pva_and_ca_searches_are_relayed_and_logged_with_their_pv(tmp_path: Path) -> None:
    prefix = lab.unique_prefix("ccd")
    with routerlab.torn_down(prefix):
        vlans = lab.RoutedVlans.build(
            prefix, n_vlans=2, hosts_per_vlan=1, relay_hosts=False, base=BASE
        )
        routerlab.isolate_vlans(vlans.router, ("br1", "br2"))
        rules = routerlab.rule_args(
            f"pva from br1 to br2 port {PVA_PORT}", f"ca from br1 to br2 port {CA_PORT}"
        )
        extra = ["--decode-pvaccess", "--metrics-port", str(METRICS)]
        relay = routerlab.start_relay(
            vlans.router, [*rules, *extra], tmp_path / "relay.log", log_level="info"
        )
        sender, receiver = vlans.hosts[1][0], vlans.hosts[2][0]
        for port, name in ((PVA_PORT, "pva-search.bin"), (CA_PORT, "ca-search.bin")):
            payload = (DATA / name).read_bytes()
            with lab.udp_listener(receiver.ns, port) as listener:
                lab.send_broadcast(sender.ns, vlans.vlans[1].broadcast, port, payload)
                got = lab.receive(listener, routerlab.ARRIVAL_TIMEOUT, lambda d, _s: True)
            assert got is not None, f"{name} did not cross\n{relay.tail()}"
            assert got[0] == payload
        lab.wait_until(lambda: "ca search" in relay.text(), 5.0)
        log = relay.text()
        assert re.search(rf"pva search from \S+ on br1: {re.escape(PV)}", log), relay.tail()
        assert re.search(rf"ca search from \S+ on br1: {re.escape(PV)}", log), relay.tail()
        body = metrics(vlans.router)
        for protocol in ("pva", "ca"):
            counted = re.search(
                rf'crosscast_decoded_messages_total\{{[^}}]*protocol="{protocol}"[^}}]*\}} (\S+)',
                body,
            )
            assert counted, body
            assert float(counted.group(1)) >= 1, body
        assert relay.alive(), relay.tail()
