"""The router sidecar of compose.yaml, for real: the router container on two VLAN networks and an
uplink, the relay image in the router's network namespace, one app container per VLAN.

The compose file is translated into podman commands (integration/containers/compose.py), with
the local base image standing in for alpine (its python3 runs the probes). Negative checks are
ordered against a frame that does cross on the same path, so they need no sleep: when the marker
has arrived, a frame sent before it on that path would have arrived too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from integration.containers import compose
from integration.containers.conftest import Images
from integration.containers.engine import Podman, poll
from integration.containers.probes import Listener, send

pytestmark = pytest.mark.root

GPS = 10110  # rule "gps from eth0 to eth2 port 10110"
EMERGENCY = 5000  # rule "emergency from eth2 to eth0 port 5000"


@dataclass(frozen=True)
class Sidecar:
    pm: Podman
    router: str
    relay: str
    app1: str  # VLAN 1, 10.0.1.10
    app2: str  # VLAN 2, 10.0.2.10


def bring_up(pm: Podman, images: Images, prefix: str) -> Sidecar:
    project = compose.translate(
        compose.load(), prefix, {"alpine:3.20": images.base, "crosscast:0.1.0": images.relay}
    )
    names = compose.up(pm, project, prefix, "router", "relay", "app1", "app2")
    side = Sidecar(pm, names["router"], names["relay"], names["app1"], names["app2"])
    assert poll(lambda: "ready:" in pm.logs(side.relay), timeout=20), pm.logs(side.relay)
    return side


@pytest.fixture
def sidecar(pm: Podman, images: Images, prefix: str) -> Sidecar:
    return bring_up(pm, images, prefix)


@pytest.fixture
def listener2(sidecar: Sidecar) -> Iterator[Listener]:
    listener = Listener(sidecar.pm, sidecar.app2, GPS)
    yield listener
    listener.stop()


@pytest.fixture
def listener1(sidecar: Sidecar) -> Iterator[Listener]:
    listener = Listener(sidecar.pm, sidecar.app1, GPS, EMERGENCY)
    yield listener
    listener.stop()


def test_router_has_the_vlan_interfaces_the_rules_name(sidecar: Sidecar) -> None:
    links = sidecar.pm.netns(sidecar.router, "ip", "-br", "-4", "addr").stdout
    addresses = {line.split()[0].split("@")[0]: line.split()[2] for line in links.splitlines()}
    assert addresses["eth0"] == "10.0.1.3/24"
    assert addresses["eth2"] == "10.0.2.3/24"
    assert "eth1" in addresses  # the uplink


def test_gps_broadcast_from_vlan1_reaches_vlan2(sidecar: Sidecar, listener2: Listener) -> None:
    send(sidecar.pm, sidecar.app1, "10.0.1.255", GPS, "gps-fix")
    assert listener2.wait_for("gps-fix")
    # rebroadcast on VLAN 2 with the sender's address kept, so replies can find it
    assert {(port, host) for port, host, _ in listener2.arrivals} == {(GPS, "10.0.1.10")}


def test_gps_broadcast_from_vlan2_does_not_reach_vlan1(
    sidecar: Sidecar, listener1: Listener
) -> None:
    send(sidecar.pm, sidecar.app2, "10.0.2.255", GPS, "gps-backwards")
    send(sidecar.pm, sidecar.app2, "10.0.2.255", EMERGENCY, "emergency-marker")
    assert listener1.wait_for("emergency-marker")  # that rule runs eth2 -> eth0
    assert listener1.payloads(GPS) == []


def test_unicast_between_vlans_does_not_cross_when_the_router_drops_it(
    sidecar: Sidecar, listener2: Listener
) -> None:
    pm = sidecar.pm
    pm.netns(sidecar.app1, "ip", "route", "add", "10.0.2.0/24", "via", "10.0.1.3")
    # control: with the router forwarding, unicast to app2 does arrive
    send(pm, sidecar.app1, "10.0.2.10", GPS, "unicast-forwarded")
    assert listener2.wait_for("unicast-forwarded")
    # the seed architecture's policy: FORWARD drop between the VLANs
    for i, o in (("eth0", "eth2"), ("eth2", "eth0")):
        pm.netns(sidecar.router, "iptables", "-A", "FORWARD", "-i", i, "-o", o, "-j", "DROP")
    send(pm, sidecar.app1, "10.0.2.10", GPS, "unicast-dropped")
    send(pm, sidecar.app1, "10.0.1.255", GPS, "gps-marker")
    assert listener2.wait_for("gps-marker")  # the relay's rule still carries the broadcast
    assert "unicast-dropped" not in listener2.payloads()


def test_relay_check_prints_the_rule_table_through_exec(sidecar: Sidecar) -> None:
    proc = sidecar.pm.exec(sidecar.relay, "crosscast", "relay", "--check", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "configuration ok" in proc.stdout
    rules = [line.split()[0] for line in proc.stdout.split("rules:")[1].splitlines()[2:]]
    assert rules[:3] == ["gps", "emergency", "telemetry"]


def test_status_shows_health_and_the_rule_counter_through_exec(
    sidecar: Sidecar, listener2: Listener
) -> None:
    send(sidecar.pm, sidecar.app1, "10.0.1.255", GPS, "gps-counted")
    assert listener2.wait_for("gps-counted")
    proc = sidecar.pm.exec(sidecar.relay, "crosscast", "status", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "health: ok" in proc.stdout
    assert 'crosscast_relayed_frames_total{rule="gps"}' in proc.stdout


def healthcheck(pm: Podman, container: str) -> int:
    return pm("healthcheck", "run", container, check=False).returncode


def test_healthcheck_is_healthy_then_unhealthy_when_capture_dies(
    pm: Podman, images: Images, prefix: str
) -> None:
    # The image's own HEALTHCHECK, timings included: podman 4.3 ignores --health-* timing
    # flags when the image brings one, so failures count only after its 10 s start period.
    # podman runs the check when asked (`healthcheck run`): it has no systemd timers here.
    side = bring_up(pm, images, prefix)
    assert poll(lambda: healthcheck(pm, side.relay) == 0, timeout=10)
    assert pm.health(side.relay) == "healthy"
    # VLAN 2's interface disappears under the relay: its capture socket is gone for good
    pm.netns(side.router, "ip", "link", "del", "eth2")
    assert poll(lambda: healthcheck(pm, side.relay) != 0, timeout=15)
    assert poll(
        lambda: healthcheck(pm, side.relay) != 0 and pm.health(side.relay) == "unhealthy",
        timeout=25,
        interval=1,
    )
    status = pm.exec(side.relay, "crosscast", "status", check=False).stdout
    assert "not running: capture eth2" in status
    log = json.loads(pm("inspect", "--format", "{{json .State.Health.Log}}", side.relay).stdout)
    assert log[-1]["Output"].strip() == "not running: capture eth2"  # what `inspect` shows
    assert pm.running(side.relay)  # unhealthy, not dead: the relay waits for eth2 to return
