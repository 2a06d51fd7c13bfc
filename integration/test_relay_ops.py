"""Running the relay: /metrics, /healthz and `crosscast status`; what it loads; an interface
that goes down and comes back; a sender on the relay's own host."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crosscast import lab
from crosscast.net import netns
from integration.helpers.relays import Procs

pytestmark = pytest.mark.root

PORT = 5076
METRICS = 9124
ARRIVAL = 3.0


def relay_pair(vlans: lab.RoutedVlans, procs: Procs, *extra: str) -> None:
    r1, r2 = vlans.relays[1], vlans.relays[2]
    procs.wait_ready(
        procs.crosscast(r1, "--other-relays", r2.ip, "--metrics-port", str(METRICS), *extra),
        procs.crosscast(r2, "--other-relays", r1.ip, *extra),
    )


def crosses(vlans: lab.RoutedVlans, payload: bytes) -> bool:
    sender, receiver = vlans.hosts[1][0], vlans.hosts[2][0]
    listener = lab.udp_listener(receiver.ns, PORT)
    with listener:
        lab.send_broadcast(sender.ns, vlans.vlans[1].broadcast, PORT, payload)
        return lab.receive(listener, ARRIVAL, lambda d, _s: d == payload) is not None


def http_get(ns: str, path: str) -> tuple[int, str]:
    code = (
        "import sys, urllib.request, urllib.error\n"
        "try:\n"
        f"    r = urllib.request.urlopen('http://127.0.0.1:{METRICS}{path}', timeout=3)\n"
        "    print(r.status); print(r.read().decode(), end='')\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code); print(e.read().decode(), end='')\n"
    )
    out = netns.run([sys.executable, "-c", code], ns=ns).stdout
    status, _, body = out.partition("\n")
    return int(status), body


def value(page: str, name: str, **labels: str) -> float | None:
    """One sample of a /metrics page as prometheus_client's parser reads it (None: absent)."""
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


def test_metrics_count_what_was_relayed_and_dropped(vlans: lab.RoutedVlans, procs: Procs) -> None:
    relay_pair(vlans, procs)
    assert crosses(vlans, b"counted")
    lab.send_udp(vlans.hosts[1][0].ns, vlans.relays[1].ip, PORT, b"unicast is not captured")
    status, body = http_get(vlans.relays[1].ns, "/metrics")
    assert status == 200
    assert value(body, "crosscast_relayed_frames_total", rule="snowsignal-out") == 1
    assert value(body, "crosscast_mesh_sent_datagrams_total", peer=vlans.relays[2].ip) == 1
    assert value(body, "crosscast_peers") == 1
    assert value(body, "crosscast_up") == 1
    assert value(body, "process_open_fds") is not None


def test_healthz_and_status_report_a_healthy_relay(vlans: lab.RoutedVlans, procs: Procs) -> None:
    relay_pair(vlans, procs)
    assert http_get(vlans.relays[1].ns, "/healthz") == (200, "ok\n")
    status = netns.run(
        [sys.executable, "-m", "crosscast", "status", "--url", f"http://127.0.0.1:{METRICS}"],
        ns=vlans.relays[1].ns,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("health: ok")
    assert "\n  crosscast_up 1\n" in status.stdout
    as_json = netns.run(
        [sys.executable, "-m", "crosscast", "status", "--url", f"http://127.0.0.1:{METRICS}",
         "--format", "json"],
        ns=vlans.relays[1].ns,
    )  # fmt: skip
    report = json.loads(as_json.stdout)
    assert (report["healthy"], report["health"]) == (True, "ok")
    assert {"name": "crosscast_up", "labels": {}, "value": 1.0} in report["samples"]


def test_status_of_no_relay_is_exit_2() -> None:
    # Port 9 (discard) on loopback: nothing listens there.
    status = subprocess.run(
        [sys.executable, "-m", "crosscast", "status", "--url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert status.returncode == 2
    assert status.stderr.count("\n") == 1


def test_an_old_event_loop_option_still_starts_and_is_said_to_be_ignored(
    vlans: lab.RoutedVlans, procs: Procs
) -> None:
    relay_pair(vlans, procs, "--event-loop", "uvloop")
    assert "--event-loop uvloop is ignored" in procs.started[0].text()
    assert crosses(vlans, b"uvloop")


def test_a_relay_without_a_secret_or_metrics_does_not_load_libcrypto(
    vlans: lab.RoutedVlans, procs: Procs
) -> None:
    # asyncio is imported without ssl (the relay speaks no TLS): 3.4 MB of RSS less.
    relay_pair(vlans, procs)  # the second relay has no --metrics-port
    assert crosses(vlans, b"no tls")
    with open(f"/proc/{procs.started[1].proc.pid}/maps") as f:
        maps = f.read()
    assert "socket:[" in maps  # the relay's own mappings: its capture ring
    assert "libcrypto" not in maps


def test_interface_down_and_up_again_keeps_relaying(vlans: lab.RoutedVlans, procs: Procs) -> None:
    relay_pair(vlans, procs)
    assert crosses(vlans, b"before")
    for n, relay in vlans.relays.items():
        netns.run(["ip", "link", "set", "eth0", "down"], ns=relay.ns)
        netns.run(["ip", "link", "set", "eth0", "up"], ns=relay.ns)
        # the kernel drops the routes of a link that goes down; the lab's host puts its own back
        netns.run(["ip", "route", "replace", "default", "via", vlans.gateway(n)], ns=relay.ns)
    lab.wait_until(lambda: crosses(vlans, b"after"), timeout=10, what="relaying after down/up")
    assert all(s.alive() for s in procs.started)


def test_partial_checksum_of_a_same_host_sender_is_completed(
    vlans: lab.RoutedVlans, procs: Procs
) -> None:
    # Every lab host is a namespace behind a veth on this machine, so the relay's capture
    # socket gets its frames with a partial UDP checksum (TP_STATUS_CSUMNOTREADY). Relayed as
    # they are, the receiving stack would drop them; delivery to a socket proves the fix.
    relay_pair(vlans, procs)
    assert crosses(vlans, b"partial checksum")
    _, body = http_get(vlans.relays[1].ns, "/metrics")
    assert value(body, "crosscast_checksum_completed_frames_total", interface="eth0") == 1


def test_metrics_page_is_served_only_on_loopback_by_default(
    vlans: lab.RoutedVlans, procs: Procs
) -> None:
    relay_pair(vlans, procs)
    url = f"http://{vlans.relays[1].ip}:{METRICS}/healthz"
    code = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=2)"
    outside = netns.run([sys.executable, "-c", code], ns=vlans.hosts[1][0].ns, check=False)
    assert outside.returncode != 0


def test_interface_deleted_and_created_again_is_captured_on_again(
    vlans: lab.RoutedVlans, procs: Procs
) -> None:
    relay_pair(vlans, procs)
    assert crosses(vlans, b"before")
    relay = vlans.relays[1]
    peer = f"p1x{lab.RoutedVlans.RELAY_OCTET}"
    netns.run(["ip", "link", "del", "eth0"], ns=relay.ns)
    netns.run(
        ["ip", "link", "add", "eth0", "address", relay.mac, "type", "veth",
         "peer", "name", peer, "netns", vlans.router],
        ns=relay.ns,
    )  # fmt: skip
    netns.run(["ip", "link", "set", peer, "master", "br1", "up"], ns=vlans.router)
    netns.run(["ip", "addr", "add", f"{relay.ip}/24", "brd", "+", "dev", "eth0"], ns=relay.ns)
    netns.run(["ip", "link", "set", "eth0", "up"], ns=relay.ns)
    netns.run(["ip", "route", "replace", "default", "via", vlans.gateway(1)], ns=relay.ns)
    lab.wait_until(lambda: crosses(vlans, b"after"), timeout=10, what="relaying after re-create")
    assert "interface eth0 is back" in procs.started[0].text()


def test_captured_bytes_are_exported_per_interface(vlans: lab.RoutedVlans, procs: Procs) -> None:
    relay_pair(vlans, procs)
    assert crosses(vlans, bytes(100))
    iface = vlans.relays[1].iface
    deadline = time.monotonic() + 5.0  # the counts are folded in once a tick (1 s)
    got = None
    while got is None and time.monotonic() < deadline:
        got = value(http_get(vlans.relays[1].ns, "/metrics")[1], "crosscast_captured_bytes_total",
                    interface=iface)  # fmt: skip
        time.sleep(0.2)
    assert got is not None
    assert got >= 14 + 20 + 8 + 100  # Ethernet, IPv4 and UDP headers and the payload
