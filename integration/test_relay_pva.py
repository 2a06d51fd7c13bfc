"""The end-to-end proof: a real PVAccess (p4p) get whose search must cross a relay, because the
client only searches its own segment's broadcast address."""

from __future__ import annotations

import pytest

from crosscast import lab
from integration.helpers.relays import Procs, pva_get

pytestmark = [pytest.mark.root, pytest.mark.slow]

NEGATIVE_TIMEOUT = 2.0
POSITIVE_TIMEOUT = 5.0


def _serve(procs: Procs, host: lab.Host, pv: str) -> None:
    procs.wait_ready(procs.script(host.ns, f"pva-server-{host.ns}", "pva_server.py", pv,
                                  ready=f"serving {pv}"))  # fmt: skip


def test_pva_get_crosses_routed_vlans_only_with_relays(
    vlans: lab.RoutedVlans, procs: Procs
) -> None:
    server, client = vlans.hosts[1][0], vlans.hosts[2][0]
    _serve(procs, server, "cc:vlan")
    before = pva_get(client.ns, "cc:vlan", vlans.vlans[2].broadcast, NEGATIVE_TIMEOUT)
    assert before.returncode == 1, f"found without relays: {before.stdout}{before.stderr}"
    assert "GET TIMEOUT" in before.stdout

    r1, r2 = vlans.relays[1], vlans.relays[2]
    procs.wait_ready(
        procs.crosscast(r1, "--other-relays", r2.ip),
        procs.crosscast(r2, "--other-relays", r1.ip),
    )
    after = pva_get(client.ns, "cc:vlan", vlans.vlans[2].broadcast, POSITIVE_TIMEOUT)
    assert after.returncode == 0, f"{after.stdout}{after.stderr}"
    assert "GET OK cc:vlan=42.5" in after.stdout


def test_pva_get_crosses_the_overlay_only_with_relays(
    overlay: lab.SwarmOverlay, procs: Procs
) -> None:
    server, client = overlay.nodes[0].apps[0], overlay.nodes[1].apps[0]
    _serve(procs, server, "cc:swarm")
    before = pva_get(client.ns, "cc:swarm", overlay.overlay.broadcast, NEGATIVE_TIMEOUT)
    assert before.returncode == 1, f"found without relays: {before.stdout}{before.stderr}"

    dns = lab.FakeSwarmDns({"tasks.crosscast": [r.ip for r in overlay.relays]})
    for relay in overlay.relays:
        dns.serve_in(relay.ns)
        procs.crosscast(relay, env={"SERVICENAME": "crosscast"})
    procs.wait_ready(*procs.started[1:])
    after = pva_get(client.ns, "cc:swarm", overlay.overlay.broadcast, POSITIVE_TIMEOUT)
    assert after.returncode == 0, f"{after.stdout}{after.stderr}"
    assert "GET OK cc:swarm=42.5" in after.stdout
