"""The apply/destroy plans (pure) and the executor, without root: fake runners and tmp files."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from crosscast.cli import main
from crosscast.relay.rules import parse_rule_text
from crosscast.topology import apply
from crosscast.topology.apply import execute, is_done, perform
from crosscast.topology.load import load_topology
from crosscast.topology.model import Topology
from crosscast.topology.plan import (
    AddNamespace,
    DaemonRunning,
    FileHas,
    FirewallIs,
    Not,
    Note,
    Plan,
    Run,
    StartDaemon,
    Step,
    StopDaemon,
    WriteFile,
    check_leases,
    layout_for,
    namespaces,
    peer_name,
    plan_apply,
    plan_destroy,
    relay_identity,
)
from crosscast.topology.render import render_iptables_rules, render_relay_rules

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.mark.parametrize("prefix", ["p-", None])
def test_plan_has_each_step_once(seeds: Topology, prefix: str | None, tmp_path: Path) -> None:
    # plan_apply is put together from named parts; none may repeat another's step.
    plan = plan_apply(seeds, layout_for(seeds, prefix, state_root=str(tmp_path)))
    steps = [s.description for s in plan if isinstance(s, Step)]
    assert len(steps) == len(set(steps))


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
    (start,) = [
        a
        for s in _steps(plan)
        for a in s.actions
        if isinstance(a, StartDaemon) and a.argv[0] == "dhcpd"
    ]
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


# -- the router-mode relay ----------------------------------------------------------------------


def _relay_step(plan: Plan) -> Step:
    (step,) = [s for s in _steps(plan) if any(isinstance(a, StartDaemon) and a.program ==
               "crosscast relay" for a in s.actions)]  # fmt: skip
    return step


def test_netns_plan_starts_the_relay_in_the_router_with_the_rendered_rules(
    seeds: Topology,
) -> None:
    plan = plan_apply(seeds, layout_for(seeds, "p-"))
    rules = "/run/crosscast/p-/relay-rules.yaml"
    writes = [a for s in _steps(plan) for a in s.actions if isinstance(a, WriteFile)]
    assert WriteFile(rules, render_relay_rules(seeds)) in writes
    step = _relay_step(plan)
    stop, start = step.actions
    assert isinstance(start, StartDaemon)
    assert start.ns == "p-router"
    assert start.argv == (
        sys.executable, "-m", "crosscast", "relay", "--rules-file", rules, "-ll", "info",
    )  # fmt: skip
    assert (start.pidfile, start.log) == (
        "/run/crosscast/p-/relay.pid",
        "/run/crosscast/p-/relay.log",
    )
    assert start.write_pidfile
    assert start.ready == "ready"
    assert start.args == relay_identity(layout_for(seeds, "p-"))
    # Settings come from its command line and rules file, not from whoever runs apply.
    from crosscast.relay.settings import env_vars

    assert start.inherit_env is not None
    assert not set(env_vars()) & set(start.inherit_env)
    # Running already with these rules: nothing to do; rules written since it started: restart.
    assert step.done == DaemonRunning(start.pidfile, "crosscast relay", rules, start.args)
    assert stop == StopDaemon(start.pidfile, "crosscast relay", start.args)


def test_the_relay_starts_once_the_router_and_its_rules_file_are_there(seeds: Topology) -> None:
    steps = _steps(plan_apply(seeds, layout_for(seeds, "p-")))
    descriptions = [s.description for s in steps]
    relay = descriptions.index(_relay_step(steps).description)  # type: ignore[arg-type]
    assert descriptions.index("/run/crosscast/p-/relay-rules.yaml") < relay
    assert descriptions.index("router firewall loaded") < relay
    assert descriptions.index("router eth2 has 10.0.2.3/24") < relay


def test_a_rule_that_uses_the_mesh_starts_the_relay_with_a_mesh_port(seeds: Topology) -> None:
    meshed = dataclasses.replace(
        seeds,
        relay_rules=(*seeds.relay_rules, parse_rule_text("out from vlan1 to mesh port 5076", "t")),
    )
    start = _relay_step(plan_apply(meshed, layout_for(meshed, "p-"))).actions[1]
    assert isinstance(start, StartDaemon)
    assert start.argv[-2:] == ("-m", "7124")
    plain = _relay_step(plan_apply(seeds, layout_for(seeds, "p-"))).actions[1]
    assert isinstance(plain, StartDaemon)
    assert "-m" not in plain.argv[2:]


def test_without_relay_rules_a_relay_left_running_is_stopped(seeds: Topology) -> None:
    bare = dataclasses.replace(seeds, relay_rules=())
    layout = layout_for(bare, "p-")
    plan = plan_apply(bare, layout)
    starts = [a for s in _steps(plan) for a in s.actions if isinstance(a, StartDaemon)]
    assert [a.argv[0] for a in starts] == ["dhcpd"]
    (step,) = [s for s in _steps(plan) if "relay" in s.description]
    args = relay_identity(layout)
    assert step.done == Not(
        DaemonRunning("/run/crosscast/p-/relay.pid", "crosscast relay", args=args)
    )
    assert step.actions == (StopDaemon("/run/crosscast/p-/relay.pid", "crosscast relay", args),)


def test_on_this_host_the_relay_is_the_sidecar_container_and_apply_starts_none(
    seeds: Topology,
) -> None:
    plan = plan_apply(seeds, layout_for(seeds, None))
    starts = [a for s in _steps(plan) for a in s.actions if isinstance(a, StartDaemon)]
    assert [a.argv[0] for a in starts] == ["dhcpd"]
    notes = [item.text for item in plan if isinstance(item, Note)]
    assert any("sidecar container (compose.yaml" in note for note in notes)
    assert not any(
        "relay" in s.description for s in _steps(plan_destroy(seeds, layout_for(seeds, None)))
    )


def test_destroy_stops_the_relay_first(seeds: Topology) -> None:
    layout = layout_for(seeds, "p-")
    first = _steps(plan_destroy(seeds, layout))[0]
    stop = StopDaemon("/run/crosscast/p-/relay.pid", "crosscast relay", relay_identity(layout))
    assert first.actions == (stop,)
    assert first.done == Not(DaemonRunning(stop.pidfile, stop.program, args=stop.args))


# -- starting and stopping a daemon that writes no PID file and says when it is ready -----------

_FAKE_RELAY = """
import signal, sys, time
if sys.argv[4] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("starting", flush=True)
time.sleep(float(sys.argv[2]))
print(sys.argv[3], flush=True)
time.sleep(30)
"""


def _fake(
    tmp_path: Path, *, delay: float = 0.1, says: str = "ready: sockets open", on_term: str = "term"
) -> StartDaemon:
    marker = str(tmp_path / "marker")  # what its command line holds: no other process has it
    return StartDaemon(
        (sys.executable, "-c", _FAKE_RELAY, marker, str(delay), says, on_term),
        None,
        str(tmp_path / "fake.pid"),
        str(tmp_path / "fake.log"),
        write_pidfile=True,
        ready="ready",
        program="fake relay",
        args=(marker,),
    )


def _stop(start: StartDaemon) -> None:
    perform(StopDaemon(start.pidfile, "fake relay", start.args), _no_runner)


def test_a_daemon_without_pid_file_is_started_until_it_logs_ready_and_then_stopped(
    tmp_path: Path,
) -> None:
    start = _fake(tmp_path, delay=0.3)
    running = DaemonRunning(start.pidfile, "fake relay", args=start.args)
    began = time.monotonic()
    try:
        perform(start, _no_runner)
        assert time.monotonic() - began >= 0.3  # it waited for the word, not just the PID
        assert "ready" in Path(start.log).read_text()
        assert is_done(running, _no_runner)
        pid = int(Path(start.pidfile).read_text())
        assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == sys.executable.encode()
    finally:
        _stop(start)
    assert not is_done(running, _no_runner)
    assert not Path(start.pidfile).exists()


def test_a_daemon_that_exits_before_it_is_ready_fails_at_once_with_its_log(tmp_path: Path) -> None:
    start = dataclasses.replace(
        _fake(tmp_path), argv=(sys.executable, "-c", "import sys; sys.exit('no interface eth9')")
    )
    began = time.monotonic()
    with pytest.raises(apply.StepFailed, match=r"it exited.*no interface eth9"):
        perform(start, _no_runner)
    assert time.monotonic() - began < 3


def test_ready_counts_only_what_this_start_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apply, "READY_DEADLINE", 0.5)
    start = _fake(tmp_path, says="already listening")  # "already" is not the word "ready"
    Path(start.log).write_text("ready: from the previous start\n")
    try:
        with pytest.raises(apply.StepFailed, match="does not say 'ready'"):
            perform(start, _no_runner)
    finally:
        _stop(start)


def test_a_daemon_deaf_to_sigterm_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apply, "DAEMON_DEADLINE", 0.3)  # the grace period before SIGKILL
    start = _fake(tmp_path, on_term="ignore")
    perform(start, _no_runner)
    pid = int(Path(start.pidfile).read_text())
    os.kill(pid, 0)
    began = time.monotonic()
    _stop(start)
    assert time.monotonic() - began >= 0.3  # SIGTERM first, SIGKILL after the grace period
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_a_relay_is_recognised_by_its_command_line_not_by_a_reused_pid(tmp_path: Path) -> None:
    pidfile = tmp_path / "relay.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # pytest: alive, but not the relay
    assert not is_done(
        DaemonRunning(str(pidfile), "crosscast relay", args=("--rules-file", "/x")), _no_runner
    )
    mine = tuple(Path(f"/proc/{os.getpid()}/cmdline").read_bytes().split(b"\0")[:2])
    args = tuple(a.decode() for a in mine)
    assert is_done(DaemonRunning(str(pidfile), "crosscast relay", args=args), _no_runner)
