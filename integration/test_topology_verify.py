"""The seeds' prototype end to end: apply (dhcpd and the router-mode relay), lease from apply's
dhcpd, restart it, verify (the relay's rules cross VLANs, nothing else does), stop the relay and
verify again (it fails), destroy.

One topology per module (namespaces under "ccl" + 4 hex + "-"), destroyed afterwards even when a
test fails. Every command is the CLI in a subprocess, as the demo and a shell script run them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.topology.test_verify import SEED_PING_TABLE

from crosscast.net import netns
from crosscast.topology.load import load_topology
from crosscast.topology.model import mac_for_name
from crosscast.topology.plan import dhcpd_paths, layout_for, relay_paths

pytestmark = [pytest.mark.root]

SEEDS = Path(__file__).parent.parent / "examples" / "topology-seeds.yaml"
CONTAINERS = {"Container1": "vlan1", "Container2": "vlan2"}


def crosscast(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crosscast", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class Seeds:
    prefix: str
    db: Path
    first: dict[str, dict[str, str]]  # container -> `crosscast lease --format json` output
    lease_seconds: dict[str, float]

    def lease(self, name: str) -> subprocess.CompletedProcess[str]:
        return crosscast(
            "lease", name, "--vlan", CONTAINERS[name], "--topology", str(SEEDS),
            "--netns-prefix", self.prefix, "--db", str(self.db), "--format", "json",
        )  # fmt: skip

    def apply(self) -> subprocess.CompletedProcess[str]:
        args = [f"--lease={n}={self.first[n]['ip']}" for n in self.first]
        return crosscast("topology", "apply", str(SEEDS), "--netns-prefix", self.prefix, *args)

    def dhcpd_pid(self) -> int:
        paths = dhcpd_paths(layout_for(load_topology(SEEDS), self.prefix))
        return int(Path(paths["pid"]).read_text().strip())

    def relay_pid(self) -> int:
        paths = relay_paths(layout_for(load_topology(SEEDS), self.prefix))
        return int(Path(paths["pid"]).read_text().strip())

    def verify(self) -> subprocess.CompletedProcess[str]:
        return crosscast("topology", "verify", str(SEEDS), "--netns-prefix", self.prefix)


def _stopped(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeds]:
    prefix = f"ccl{secrets.token_hex(2)}-"
    state = Path("/run/crosscast") / prefix
    s = Seeds(prefix, tmp_path_factory.mktemp("leases") / "leases.sqlite3", {}, {})
    try:
        applied = crosscast("topology", "apply", str(SEEDS), "--netns-prefix", prefix)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        for name in CONTAINERS:
            started = time.monotonic()
            got = s.lease(name)
            s.lease_seconds[name] = time.monotonic() - started
            assert got.returncode == 0, got.stderr
            s.first[name] = json.loads(got.stdout)
        again = s.apply()
        assert again.returncode == 0, again.stdout + again.stderr
        yield s
    finally:
        crosscast("topology", "destroy", str(SEEDS), "--netns-prefix", prefix)
        for ns in netns.names(prefix):  # whatever destroy left, so the next run starts clean
            netns.delete(ns)
    assert netns.names(prefix) == []
    assert not state.exists()


def test_containers_lease_from_the_dhcpd_that_apply_runs(seeds: Seeds) -> None:
    topology = load_topology(SEEDS)
    for name, vlan_name in CONTAINERS.items():
        lease = seeds.first[name]
        vlan = topology.vlan(vlan_name)
        assert vlan.dhcp.in_pool(ipaddress.IPv4Address(lease["ip"]))
        assert lease["mac"] == mac_for_name(name)
        assert lease["gateway"] == str(vlan.router_address)
        assert lease["vlan"] == str(vlan.id)


def test_applied_containers_carry_the_leased_mac_and_address(seeds: Seeds) -> None:
    for name, lease in seeds.first.items():
        link = netns.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"], seeds.prefix + name)
        assert f"inet {lease['ip']}/24" in link.stdout
        mac = netns.run(["cat", "/sys/class/net/eth0/address"], seeds.prefix + name)
        assert mac.stdout.strip() == lease["mac"]


def test_lease_again_after_a_dhcpd_restart_gives_the_same_binding(seeds: Seeds) -> None:
    pid = seeds.dhcpd_pid()
    os.kill(pid, signal.SIGTERM)  # apply started it for this module's topology
    assert _stopped(pid)
    restarted = seeds.apply()  # idempotent apply starts dhcpd again, with its leases file
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert seeds.dhcpd_pid() != pid
    for name, first in seeds.first.items():
        again = seeds.lease(name)
        assert again.returncode == 0, again.stderr
        assert "renewed" in again.stderr
        lease = json.loads(again.stdout)
        assert (lease["mac"], lease["ip"]) == (first["mac"], first["ip"])


def _table(text: str, title: str) -> list[list[str]]:
    lines = text.split(title + "\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]


# The broadcast/multicast rows that cross VLANs with the seeds' relay rules (vlan1 -> vlan2).
RELAYED = [
    ["broadcast", "Device1", "Container2 (10.0.2.255:5000)", "received", "received", "pass"],
    ["broadcast", "Device1", "Container2 (255.255.255.255:5000)", "received", "received", "pass"],
    ["multicast", "Device1", "Container2 (233.54.12.234:22001)", "received", "received", "pass"],
]


def _crossing(rows: list[list[str]]) -> list[list[str]]:
    """The rows sent on one VLAN and listened for on the other."""
    vlan = {"Device1": "1", "Container1": "1", "Device2": "2", "Container2": "2"}
    return [r for r in rows if r[1] in vlan and vlan[r[1]] != vlan[r[2].split()[0]]]


def test_verify_reproduces_the_seed_ping_table_and_exits_0(seeds: Seeds) -> None:
    started = time.monotonic()
    proc = seeds.verify()
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == (
        f"relay: running in {seeds.prefix}router (pid {seeds.relay_pid()}): expecting its "
        "rules' crossings: broadcast vlan1 -> vlan2, multicast vlan1 -> vlan2"
    )
    rows = _table(proc.stdout, "Reachability (ping)")

    def spell(name: str) -> str:
        name = name[0].upper() + name[1:]
        return "Internet" if name.startswith("Internet (") else name

    assert [(spell(s), spell(t), e) for s, t, e, _got, _res in rows] == [
        (s, t, e) for s, t, e, _why in SEED_PING_TABLE
    ]
    assert all(got == expected and res == "pass" for _s, _t, expected, got, res in rows)
    udp = _table(proc.stdout, "Broadcast and multicast (UDP)")
    assert len(udp) == 22
    assert all(r[-1] == "pass" for r in udp)
    crossing = _crossing(udp)
    # The relay's crossings arrive; another port, another group, the reverse direction do not.
    assert [r for r in crossing if r[3] == "received"] == RELAYED
    assert len(crossing) == 10
    others = [r for r in crossing if r[3] != "received"]
    assert {r[4] for r in others} == {"not received"}
    assert {(r[1], r[2].split()[1]) for r in others} == {
        ("Device1", "(10.0.2.255:5001)"),
        ("Device1", "(233.54.12.235:22001)"),
        ("Device2", "(10.0.1.255:5000)"),
        ("Device2", "(255.255.255.255:5000)"),
        ("Device2", "(233.54.12.234:22001)"),
        ("Device2", "(10.0.1.255:5001)"),
        ("Device2", "(233.54.12.235:22001)"),
    }
    assert took < 15, f"verify took {took:.1f} s"


VERIFY_KEYS = {"ok", "relay", "passed", "total", "seconds", "unaddressed", "pings", "traffic"}
ROW_KEYS = {"test", "source", "target", "expected", "got", "passed", "why", "error"}


def test_verify_json_has_the_documented_shape_and_progress_goes_to_stderr(seeds: Seeds) -> None:
    proc = crosscast(
        "topology", "verify", str(SEEDS), "--netns-prefix", seeds.prefix, "--format", "json"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert set(report) == VERIFY_KEYS
    assert report["ok"] is True
    assert report["relay"].startswith(f"relay: running in {seeds.prefix}router")
    rows = [*report["pings"], *report["traffic"]]
    assert report["passed"] == report["total"] == len(rows)
    assert len(report["traffic"]) == 22
    for row in rows:
        assert set(row) == ROW_KEYS
        assert all(isinstance(row[k], bool) for k in ("expected", "got", "passed"))
        assert row["error"] is None
    # Not a terminal: one plain progress line per check, as each completes, on stderr.
    progress = [line for line in proc.stderr.splitlines() if line.startswith("verify: [")]
    assert proc.stderr.startswith(f"verify: {len(rows)} checks\n")
    assert len(progress) == len(rows)
    assert progress[-1].startswith(f"verify: [{len(rows)}/{len(rows)}] pass  ")


def test_verify_fails_when_the_relay_apply_started_is_gone(seeds: Seeds) -> None:
    # An operator's relay that died must not turn verify green by lowering the expectation:
    # apply started it for these rules, so the crossings it no longer makes are failures.
    pid = seeds.relay_pid()
    os.kill(pid, signal.SIGTERM)
    assert _stopped(pid)
    proc = seeds.verify()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "but not running" in proc.stdout.splitlines()[0]
    udp = _table(proc.stdout, "Broadcast and multicast (UDP)")
    failed = [r for r in udp if r[-1] == "FAIL"]
    assert [r[:4] for r in failed] == [r[:4] for r in RELAYED]
    assert {r[4] for r in failed} == {"not received"}
    # Apply starts it again.
    again = seeds.apply()
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"+    crosscast relay in {seeds.prefix}router (2 rules)" in again.stdout
    assert seeds.relay_pid() != pid
    os.kill(seeds.relay_pid(), 0)


def test_verify_fails_when_the_router_forwards_between_vlans(seeds: Seeds) -> None:
    router = seeds.prefix + "router"
    rule = ["FORWARD", "-i", "eth0", "-o", "eth2", "-j", "ACCEPT"]
    back = ["FORWARD", "-i", "eth2", "-o", "eth0", "-j", "ACCEPT"]
    netns.run(["iptables", "-I", *rule], router)
    netns.run(["iptables", "-I", *back], router)
    try:
        proc = crosscast("topology", "verify", str(SEEDS), "--netns-prefix", seeds.prefix)
    finally:
        netns.run(["iptables", "-D", *rule], router)
        netns.run(["iptables", "-D", *back], router)
    assert proc.returncode == 1
    failed = {(r[0], r[1]) for r in _table(proc.stdout, "Reachability (ping)") if r[-1] == "FAIL"}
    assert ("Container1", "Container2") in failed
    assert ("Device2", "Device1") in failed


def test_destroy_leaves_no_namespace_process_or_state_behind(seeds: Seeds) -> None:
    relay, dhcpd = seeds.relay_pid(), seeds.dhcpd_pid()
    proc = crosscast("topology", "destroy", str(SEEDS), "--netns-prefix", seeds.prefix)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == "+    stop crosscast relay"
    # Stopped by destroy (it waited for them to go); their reaper (not us) may take a moment.
    assert _stopped(relay)
    assert _stopped(dhcpd)
    assert _processes_mentioning(f"/run/crosscast/{seeds.prefix}") == []
    assert netns.names(seeds.prefix) == []
    assert not (Path("/run/crosscast") / seeds.prefix).exists()


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(proc.name))
    return found
