"""The apply/destroy plans (pure) and the executor, without root: fake runners and tmp files."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from crosscast.cli import main
from crosscast.topology.apply import execute, is_done
from crosscast.topology.load import load_topology
from crosscast.topology.model import Topology
from crosscast.topology.plan import (
    AddNamespace,
    DaemonRunning,
    FileHas,
    FirewallIs,
    Note,
    Plan,
    Run,
    StartDaemon,
    Step,
    WriteFile,
    check_leases,
    layout_for,
    namespaces,
    peer_name,
    plan_apply,
    plan_destroy,
)
from crosscast.topology.render import render_iptables_rules

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "examples" / "topology-seeds.yaml"


@pytest.fixture
def seeds() -> Topology:
    return load_topology(SEEDS)


def _steps(plan: Plan) -> list[Step]:
    return [item for item in plan if isinstance(item, Step)]


def _runs(plan: Plan) -> list[Run]:
    return [a for s in _steps(plan) for a in s.actions if isinstance(a, Run)]


def test_netns_layout_names_namespaces_prefix_plus_name(seeds: Topology) -> None:
    layout = layout_for(seeds, "p-")
    assert namespaces(seeds, layout) == [
        "p-Container1",
        "p-Container2",
        "p-Device1",
        "p-Device2",
        "p-router",
        "p-host",
    ]
    assert layout.state_dir == "/run/crosscast/p-"


def test_netns_plan_creates_every_namespace_it_destroys(seeds: Topology) -> None:
    layout = layout_for(seeds, "p-")
    created = {
        a.name
        for s in _steps(plan_apply(seeds, layout))
        for a in s.actions
        if isinstance(a, AddNamespace)
    }
    assert created == set(namespaces(seeds, layout))


def test_netns_plan_runs_nothing_outside_its_namespaces(seeds: Topology) -> None:
    layout = layout_for(seeds, "p-")
    assert {run.ns for run in _runs(plan_apply(seeds, layout))} <= set(namespaces(seeds, layout))


def test_router_interfaces_are_named_as_in_the_file_and_plugged_into_the_vlan_bridge(
    seeds: Topology,
) -> None:
    argvs = [run.argv for run in _runs(plan_apply(seeds, layout_for(seeds, "p-")))]
    assert (
        "ip",
        "link",
        "add",
        "router-eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        "p-router",
    ) in argvs
    assert ("ip", "link", "set", "router-eth0", "master", "br0", "up") in argvs
    assert ("ip", "link", "set", "router-eth1", "master", "brup", "up") in argvs
    assert ("ip", "address", "add", "192.168.1.1/24", "brd", "+", "dev", "brup") in argvs


def test_bridges_are_created_with_snooping_and_a_querier(seeds: Topology) -> None:
    argvs = [run.argv for run in _runs(plan_apply(seeds, layout_for(seeds, "p-")))]
    assert (
        "ip",
        "link",
        "add",
        "br1",
        "type",
        "bridge",
        "mcast_snooping",
        "1",
        "mcast_querier",
        "1",
    ) in argvs


def test_dhcpd_serves_the_vlan_interfaces_with_state_in_the_prefix_dir(seeds: Topology) -> None:
    plan = plan_apply(seeds, layout_for(seeds, "p-"))
    (start,) = [a for s in _steps(plan) for a in s.actions if isinstance(a, StartDaemon)]
    assert start.ns == "p-router"
    assert start.argv[:3] == ("dhcpd", "-4", "-f")
    assert start.argv[-2:] == ("eth0", "eth2")
    assert "/run/crosscast/p-/dhcpd.leases" in start.argv


def test_container_without_address_is_left_for_crosscast_lease(seeds: Topology) -> None:
    plan = plan_apply(seeds, layout_for(seeds, "p-"))
    notes = [item.text for item in plan if isinstance(item, Note)]
    lease = "`crosscast lease Container1 --vlan vlan1 --interface br0 --netns p-host`"
    assert any(lease in note for note in notes)
    container_runs = [run.argv[:3] for run in _runs(plan) if run.ns == "p-Container1"]
    assert ("ip", "address", "add") not in container_runs


def test_a_lease_passed_in_addresses_the_container(seeds: Topology) -> None:
    plan = plan_apply(seeds, layout_for(seeds, "p-"), {"Container1": IPv4Address("10.0.1.150")})
    argvs = [(run.ns, run.argv) for run in _runs(plan)]
    assert (
        "p-Container1",
        ("ip", "address", "add", "10.0.1.150/24", "brd", "+", "dev", "eth0"),
    ) in argvs
    assert ("p-Container1", ("ip", "route", "replace", "default", "via", "10.0.1.3")) in argvs


def test_leases_for_unknown_containers_or_other_subnets_are_refused(seeds: Topology) -> None:
    assert check_leases(seeds, {"Nobody": IPv4Address("10.0.1.5")}) == [
        "lease for Nobody: no such container in topology seeds"
    ]
    assert check_leases(seeds, {"Container1": IPv4Address("10.0.2.5")}) == [
        "lease for Container1: 10.0.2.5 is outside VLAN vlan1 10.0.1.0/24"
    ]


def test_host_layout_builds_vlan_devices_only_where_the_kernel_has_them(seeds: Topology) -> None:
    with_8021q = [
        r.argv for r in _runs(plan_apply(seeds, layout_for(seeds, None, kernel_has_8021q=True)))
    ]
    assert (
        "ip",
        "link",
        "add",
        "link",
        "enp2s0",
        "name",
        "enp2s0.1",
        "type",
        "vlan",
        "id",
        "1",
    ) in with_8021q
    without = plan_apply(seeds, layout_for(seeds, None, kernel_has_8021q=False))
    assert not any("vlan" in r.argv for r in _runs(without))
    assert any(isinstance(item, Note) and "802.1Q" in item.text for item in without)


def test_host_layout_puts_no_namespace_around_the_host_or_the_devices(seeds: Topology) -> None:
    layout = layout_for(seeds, None)
    assert namespaces(seeds, layout) == ["Container1", "Container2", "router"]
    argvs = [r.argv for r in _runs(plan_apply(seeds, layout))]
    assert ("ip", "link", "set", "wlp3s0f0", "up") in argvs
    assert (
        "ip",
        "link",
        "add",
        "router-eth1",
        "link",
        "wlp3s0f0",
        "type",
        "macvlan",
        "mode",
        "bridge",
    ) in argvs


def test_destroy_on_the_host_removes_bridges(seeds: Topology) -> None:
    argvs = [r.argv for r in _runs(plan_destroy(seeds, layout_for(seeds, None)))]
    assert ("ip", "link", "del", "br0") in argvs


@pytest.mark.parametrize("prefix", ["", "a/b", "x y"])
def test_bad_netns_prefix_is_refused(seeds: Topology, prefix: str) -> None:
    with pytest.raises(ValueError, match="netns prefix"):
        layout_for(seeds, prefix)


@pytest.mark.parametrize(
    ("owner", "ifname"),
    [
        ("router", "eth0"),
        ("Container1", "eth0"),
        ("a-very-long-container-name", "eth0"),
        ("x", "a-long-ifname1"),
    ],
)
def test_peer_names_fit_in_15_characters_and_are_stable(owner: str, ifname: str) -> None:
    name = peer_name(owner, ifname)
    assert 0 < len(name) <= 15
    assert name == peer_name(owner, ifname)


def test_long_names_sharing_a_start_get_different_peer_names() -> None:
    assert peer_name("application-one", "eth0") != peer_name("application-two", "eth0")


def test_execute_runs_what_is_not_done_and_skips_it_the_second_time(tmp_path: Path) -> None:
    target = tmp_path / "a" / "file"
    plan: Plan = [Step("write file", FileHas(str(target), "x\n"), (WriteFile(str(target), "x\n"),))]
    first, second = io.StringIO(), io.StringIO()
    assert execute(plan, out=first) == (1, 0, None)
    assert execute(plan, out=second) == (0, 1, None)
    assert first.getvalue() == "+    write file\n"
    assert second.getvalue() == "ok   write file\n"


def test_execute_stops_at_the_first_failure(tmp_path: Path) -> None:
    def failing(
        argv: Sequence[str], ns: str | None = None, **_: object
    ) -> subprocess.CompletedProcess[str]:
        raise subprocess.CalledProcessError(2, list(argv), "", "Error: Unknown device type.\n")

    later = tmp_path / "later"
    plan: Plan = [
        Step("vlan device", FileHas(str(tmp_path / "never"), "x"), (Run(("ip", "link", "add")),)),
        Step("later", FileHas(str(later), "x"), (WriteFile(str(later), "x"),)),
    ]
    performed, skipped, failure = execute(plan, out=io.StringIO(), runner=failing)
    assert (performed, skipped) == (0, 0)
    assert failure == "vlan device: `ip link add` exited 2: Error: Unknown device type."
    assert not later.exists()


def test_a_step_whose_check_still_fails_after_running_is_a_failure(tmp_path: Path) -> None:
    plan: Plan = [
        Step("wrong", FileHas(str(tmp_path / "f"), "y"), (WriteFile(str(tmp_path / "f"), "x"),))
    ]
    assert execute(plan, out=io.StringIO())[2] == "wrong: the step ran but its check still fails"


def test_loaded_firewall_is_recognised_in_iptables_save_output(seeds: Topology) -> None:
    rules = render_iptables_rules(seeds)
    body = [line for line in rules.splitlines() if not line.startswith("#")]
    nat_end = body.index("COMMIT") + 1
    saved = "\n".join(
        ["# Generated by iptables-save v1.8.9 (nf_tables)"]
        + [line.replace("[0:0]", "[12:345]") for line in body[nat_end:] + body[:nat_end]]
    )

    def fake(
        argv: Sequence[str], ns: str | None = None, **_: object
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(argv), 0, saved, "")

    assert is_done(FirewallIs(None, rules), fake)
    assert not is_done(FirewallIs(None, rules.replace("-j DROP", "-j ACCEPT")), fake)


def test_apply_command_refuses_a_malformed_lease(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["topology", "apply", str(SEEDS), "--netns-prefix", "p-", "--lease", "Container1"])
        == 2
    )
    assert "--lease 'Container1' is not NAME=ADDRESS" in capsys.readouterr().err


def test_apply_command_refuses_a_lease_for_an_unknown_container(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["topology", "apply", str(SEEDS), "--netns-prefix", "p-", "--lease", "Nobody=10.0.1.5"]
    assert main(argv) == 2
    assert "no such container" in capsys.readouterr().err


def test_a_daemon_started_before_its_config_changed_is_not_done(tmp_path: Path) -> None:
    pidfile, config = tmp_path / "d.pid", tmp_path / "d.conf"
    pidfile.write_text(f"{os.getpid()}\n")
    config.write_text("old\n")
    program = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    os.utime(config, (1_000, 1_000))
    os.utime(pidfile, (2_000, 2_000))
    assert is_done(DaemonRunning(str(pidfile), program, config=str(config)), _no_runner)
    os.utime(config, (3_000, 3_000))
    assert not is_done(DaemonRunning(str(pidfile), program, config=str(config)), _no_runner)
    assert not is_done(DaemonRunning(str(pidfile), "not-" + program), _no_runner)


def _no_runner(
    argv: Sequence[str], ns: str | None = None, **_: object
) -> subprocess.CompletedProcess[str]:
    raise AssertionError("this check runs no command")
