"""What `topology verify` expects, derived from a topology: the seeds' ping table and UDP tests."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest

from crosscast.relay.rules import Rule, parse_rule_text
from crosscast.topology import verify
from crosscast.topology.load import load_topology
from crosscast.topology.model import Topology

IPv4 = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network
SEEDS = Path(__file__).resolve().parents[2] / "examples" / "topology-seeds.yaml"

# The ping table at the end of seed 002, row by row, with the addresses this copy of the page
# lost restored (VLAN 1 router 10.0.1.3, VLAN 2 router 10.0.2.3; "Internet" has no address).
SEED_PING_TABLE = [
    ("Container1", "Device1", "OK", "VLAN 1"),
    ("Device1", "Container1", "OK", "VLAN 1"),
    ("Container1", "Router (10.0.1.3)", "OK", "VLAN 1"),
    ("Device1", "Router (10.0.1.3)", "OK", "VLAN 1"),
    ("Container1", "Internet", "OK", "VLAN 1 to Internet via Router"),
    ("Device1", "Internet", "OK", "VLAN 1 to Internet via Router"),
    ("Router", "Container1", "OK", "VLAN 1"),
    ("Router", "Device1", "OK", "VLAN 1"),
    ("Container1", "Container2", "No connection", "VLAN 1 to VLAN 2"),
    ("Container1", "Device2", "No connection", "VLAN 1 to VLAN 2"),
    ("Container1", "Router (10.0.2.3)", "No connection", "VLAN 1 to VLAN 2"),
    ("Device1", "Container2", "No connection", "VLAN 1 to VLAN 2"),
    ("Device1", "Device2", "No connection", "VLAN 1 to VLAN 2"),
    ("Device1", "Router (10.0.2.3)", "No connection", "VLAN 1 to VLAN 2"),
    ("Container2", "Device2", "OK", "VLAN 2"),
    ("Device2", "Container2", "OK", "VLAN 2"),
    ("Container2", "Router (10.0.2.3)", "OK", "VLAN 2"),
    ("Device2", "Router (10.0.2.3)", "OK", "VLAN 2"),
    ("Container2", "Internet", "OK", "VLAN 2 to Internet via Router"),
    ("Device2", "Internet", "OK", "VLAN 2 to Internet via Router"),
    ("Router", "Container2", "OK", "VLAN 2"),
    ("Router", "Device2", "OK", "VLAN 2"),
    ("Container2", "Container1", "No connection", "VLAN 2 to VLAN 1"),
    ("Container2", "Device1", "No connection", "VLAN 2 to VLAN 1"),
    ("Container2", "Router (10.0.1.3)", "No connection", "VLAN 2 to VLAN 1"),
    ("Device2", "Container1", "No connection", "VLAN 2 to VLAN 1"),
    ("Device2", "Device1", "No connection", "VLAN 2 to VLAN 1"),
    ("Device2", "Router (10.0.1.3)", "No connection", "VLAN 2 to VLAN 1"),
]


def as_seed_rows(pings: list[verify.Ping]) -> list[tuple[str, str, str, str]]:
    """Our rows in the seed table's spelling: the router's name capitalised, no uplink address."""

    def spell(name: str) -> str:
        name = name[0].upper() + name[1:].replace(" via router", " via Router")
        return "Internet" if name.startswith("Internet (") else name

    return [
        (spell(p.source), spell(p.target), verify.OK if p.expected else verify.NO, spell(p.why))
        for p in pings
    ]


def seg(vlan: int, *members: str) -> verify.Segment:
    return verify.Segment(
        vlan, f"vlan{vlan}", ipaddress.IPv4Network(f"10.0.{vlan}.0/24"), IPv4(f"10.0.{vlan}.3"),
        members,
    )  # fmt: skip


def layout(*segments: verify.Segment, forwards: tuple[verify.Forward, ...] = ()) -> verify.Layout:
    return verify.Layout("router", segments, IPv4("192.168.1.1"), forwards)


def test_seed_topology_gives_exactly_the_seed_ping_table() -> None:
    pings = verify.expected_pings(verify.layout_of(load_topology(SEEDS)))
    assert as_seed_rows(pings) == SEED_PING_TABLE


def test_seed_layout_puts_containers_before_devices_per_vlan() -> None:
    lay = verify.layout_of(load_topology(SEEDS))
    assert [(s.vlan_id, s.members) for s in lay.segments] == [
        (1, ("Container1", "Device1")),
        (2, ("Container2", "Device2")),
    ]
    assert lay.uplink_gateway == IPv4("192.168.1.1")


def test_pings_to_the_router_and_internet_use_fixed_addresses() -> None:
    pings = verify.expected_pings(layout(seg(1, "a"), seg(2, "b")))
    fixed = {(p.source, p.target_address) for p in pings if p.target_address is not None}
    assert ("a", IPv4("10.0.1.3")) in fixed
    assert ("a", IPv4("10.0.2.3")) in fixed
    assert ("a", IPv4("192.168.1.1")) in fixed
    assert all(p.target_host is None for p in pings if p.target_address is not None)


def test_matrix_size_follows_the_members() -> None:
    # n members on a VLAN: n(n-1) among them, n to the router, n to the Internet, n from the
    # router, and n x (members + router) of every other VLAN.
    pings = verify.expected_pings(layout(seg(1, "a", "b", "c"), seg(2, "d"), seg(3)))
    assert len(pings) == (6 + 3 + 3 + 3 + 3 * (1 + 1) + 3 * 1) + (0 + 1 + 1 + 1 + 1 * (3 + 1) + 1)
    assert all(not p.expected for p in pings if p.why.endswith("to VLAN 3"))


def test_nothing_crosses_vlans_without_a_firewall_exception() -> None:
    pings = verify.expected_pings(layout(seg(1, "a"), seg(2, "b")))
    crossing = [p for p in pings if " to VLAN " in p.why]
    assert crossing
    assert not any(p.expected for p in crossing)


def test_a_firewall_exception_opens_pings_one_way_and_not_the_router_address() -> None:
    fw = (verify.Forward("vlan1", "vlan2"),)
    pings = verify.expected_pings(layout(seg(1, "a"), seg(2, "b"), forwards=fw))
    by = {(p.source, p.target): p.expected for p in pings}
    assert by[("a", "b")] is True
    assert by[("b", "a")] is False
    assert by[("a", "router (10.0.2.3)")] is False


def test_an_exception_limited_to_networks_needs_matching_addresses() -> None:
    fw = (verify.Forward("vlan1", "vlan2", destination_net=ipaddress.IPv4Network("10.0.2.8/29")),)
    lay = layout(seg(1, "a"), seg(2, "b", "c"), forwards=fw)
    addresses = {"a": IPv4("10.0.1.5"), "b": IPv4("10.0.2.9"), "c": IPv4("10.0.2.20")}
    by = {(p.source, p.target): p.expected for p in verify.expected_pings(lay, addresses)}
    assert (by[("a", "b")], by[("a", "c")]) == (True, False)


def test_layout_keeps_only_exceptions_that_pass_icmp() -> None:
    topo = load_topology(SEEDS)
    assert verify.layout_of(topo).forwards == ()


# --- UDP ----------------------------------------------------------------------------------------


def traffic_rows(rows: list[verify.Datagram]) -> list[tuple[str, str, str, bool]]:
    return [(r.test, r.source, f"{r.receiver} {r.destination}:{r.port}", r.expected) for r in rows]


def test_seed_udp_tests_per_vlan_and_isolation() -> None:
    rows = verify.expected_traffic(verify.layout_of(load_topology(SEEDS)))
    assert traffic_rows(rows)[:11] == [
        ("broadcast", "router", "Container1 10.0.1.255:5000", True),
        ("multicast", "Device1", "Container1 233.54.12.234:22001", True),
        ("broadcast", "Device1", "Container1 10.0.1.255:5000", True),
        ("broadcast", "Device1", "Container1 255.255.255.255:5000", True),
        # A port and a group no relay rule names: they arrive on their own VLAN...
        ("broadcast", "Device1", "Container1 10.0.1.255:5001", True),
        ("multicast", "Device1", "Container1 233.54.12.235:22001", True),
        # ... and nothing crosses (no crossings passed: no relay).
        ("broadcast", "Device1", "Container2 10.0.1.255:5000", False),
        ("broadcast", "Device1", "Container2 255.255.255.255:5000", False),
        ("multicast", "Device1", "Container2 233.54.12.234:22001", False),
        ("broadcast", "Device1", "Container2 10.0.1.255:5001", False),
        ("multicast", "Device1", "Container2 233.54.12.235:22001", False),
    ]
    assert rows[0].source_address == IPv4("10.0.1.3")  # the seeds' `nc -s 10.0.1.3`
    assert len(rows) == 22
    assert traffic_rows(rows)[11][2] == "Container2 10.0.2.255:5000"
    # A relayed directed broadcast would arrive as the receiving VLAN's broadcast address.
    assert [r.target for r in rows[6:11]] == [
        "Container2 (10.0.2.255:5000)",
        "Container2 (255.255.255.255:5000)",
        "Container2 (233.54.12.234:22001)",
        "Container2 (10.0.2.255:5001)",
        "Container2 (233.54.12.235:22001)",
    ]


def test_expected_crossings_turn_isolation_rows_into_arrivals() -> None:
    lay = verify.layout_of(load_topology(SEEDS))
    crossings = [verify.Crossing("multicast", "vlan1", "vlan2")]
    rows = verify.expected_traffic(lay, crossings)
    arriving = [r for r in rows if r.expected and r.receiver == "Container2"]
    multicast_from_1 = [r for r in arriving if r.source == "Device1"]
    assert [(r.test, r.why) for r in multicast_from_1] == [
        ("multicast", "VLAN 1 to VLAN 2 (relayed)")
    ]


def test_relay_rules_of_the_seeds_cross_from_vlan1_to_vlan2() -> None:
    crossings = verify.crossings_of_relay_rules(load_topology(SEEDS))
    assert crossings == [
        verify.Crossing("broadcast", "vlan1", "vlan2"),
        verify.Crossing("multicast", "vlan1", "vlan2"),
    ]
    assert [c.rule for c in crossings] == ["broadcast-5000", "multicast-22001"]


def test_with_the_seeds_relay_exactly_its_rules_cross_and_nothing_else() -> None:
    topology = load_topology(SEEDS)
    rows = verify.expected_traffic(
        verify.layout_of(topology), verify.crossings_of_relay_rules(topology)
    )
    crossing = [r for r in rows if " to VLAN " in r.why]
    assert [(r.test, r.source, r.target) for r in crossing if r.expected] == [
        ("broadcast", "Device1", "Container2 (10.0.2.255:5000)"),
        ("broadcast", "Device1", "Container2 (255.255.255.255:5000)"),
        ("multicast", "Device1", "Container2 (233.54.12.234:22001)"),
    ]
    assert [r.why for r in crossing if r.expected] == [
        "VLAN 1 to VLAN 2 (relayed: broadcast-5000)",
        "VLAN 1 to VLAN 2 (relayed: broadcast-5000)",
        "VLAN 1 to VLAN 2 (relayed: multicast-22001)",
    ]
    # Another port, another group, the reverse direction: not received.
    assert [(r.source, r.target) for r in crossing if not r.expected] == [
        ("Device1", "Container2 (10.0.2.255:5001)"),
        ("Device1", "Container2 (233.54.12.235:22001)"),
        ("Device2", "Container1 (10.0.1.255:5000)"),
        ("Device2", "Container1 (255.255.255.255:5000)"),
        ("Device2", "Container1 (233.54.12.234:22001)"),
        ("Device2", "Container1 (10.0.1.255:5001)"),
        ("Device2", "Container1 (233.54.12.235:22001)"),
    ]
    # Within a VLAN, everything arrives, relay or not.
    assert all(r.expected for r in rows if " to VLAN " not in r.why)


def _with_rules(*rules: str) -> Topology:
    """The seeds with these one-line relay rules (VLAN names where the relay has interfaces)."""
    parsed: tuple[Rule, ...] = tuple(parse_rule_text(r, "test") for r in rules)
    return dataclasses.replace(load_topology(SEEDS), relay_rules=parsed)


def test_the_port_and_group_no_rule_names_are_derived_from_the_rules() -> None:
    lay = verify.layout_of(
        _with_rules(
            "a from vlan1 to vlan2 port 5000-5003 broadcast",
            "b from vlan2 to vlan1 group 233.54.12.235:5005,233.54.12.236",
        )
    )
    assert (lay.quiet_port, lay.quiet_group) == (5004, IPv4("233.54.12.237"))
    rows = verify.expected_traffic(lay)
    assert {r.port for r in rows if r.test == "broadcast"} == {5000, 5004}
    assert {r.destination for r in rows if r.test == "multicast"} == {
        IPv4("233.54.12.234"),
        IPv4("233.54.12.237"),
    }


def test_a_rule_crosses_verify_traffic_only_on_its_own_ports_and_groups() -> None:
    topology = _with_rules(
        "pva from vlan1 to vlan2 port 5076 broadcast",
        f"group-elsewhere from vlan1 to vlan2 port 5000 group {verify.GROUP}",
        "to-mesh from vlan2 to mesh port 5000 broadcast",
    )
    # `group-elsewhere` relays the group on port 5000 only, and broadcast not at all.
    assert verify.crossings_of_relay_rules(topology) == [
        verify.Crossing("broadcast", "vlan2", "mesh"),
    ]
    rows = verify.expected_traffic(
        verify.layout_of(topology), verify.crossings_of_relay_rules(topology)
    )
    assert not any(r.expected for r in rows if " to VLAN " in r.why)


def test_a_crossing_limited_to_some_senders_is_expected_from_those_only() -> None:
    allowed = verify.Crossing("broadcast", "vlan1", "vlan2", allow=(IPv4Network("10.0.1.0/28"),))
    denied = dataclasses.replace(allowed, deny=(IPv4Network("10.0.1.11/32"),))
    lay = verify.layout_of(load_topology(SEEDS))

    def crossing(crossings: list[verify.Crossing], device1: str | None) -> int:
        addresses = {"Device1": IPv4(device1)} if device1 else {}
        rows = verify.expected_traffic(lay, crossings, addresses)
        return sum(r.expected for r in rows if " to VLAN " in r.why)

    assert crossing([allowed], "10.0.1.11") == 2  # subnet and limited broadcast
    assert crossing([allowed], "10.0.1.40") == 0
    assert crossing([allowed], None) == 0
    assert crossing([denied], "10.0.1.11") == 0


# --- what verify expects of the relay ------------------------------------------------------------


def test_without_relay_rules_nothing_is_expected_to_cross(tmp_path: Path) -> None:
    expectation = verify.relay_expectation(_with_rules(), "p-", state_root=str(tmp_path))
    assert expectation.crossings == ()
    assert expectation.summary == (
        "relay: the topology has no relay rules: expecting nothing to cross between VLANs"
    )


def test_a_relay_apply_did_not_start_is_not_expected(tmp_path: Path) -> None:
    expectation = verify.relay_expectation(load_topology(SEEDS), "p-", state_root=str(tmp_path))
    assert expectation.crossings == ()
    assert "relay: not started" in expectation.summary
    assert "expecting nothing to cross" in expectation.summary


def test_a_running_relay_is_expected_to_carry_its_rules(tmp_path: Path) -> None:
    topology = load_topology(SEEDS)
    state = tmp_path / "p-"
    state.mkdir()
    rules = str(state / "relay-rules.yaml")
    # A stand-in whose command line holds what the relay's does.
    script = "import time; time.sleep(30)"
    stand_in = subprocess.Popen(
        [sys.executable, "-c", script, "crosscast", "relay", "--rules-file", rules]
    )
    try:
        (state / "relay.pid").write_text(f"{stand_in.pid}\n")
        running = verify.relay_expectation(topology, "p-", state_root=str(tmp_path))
        assert running.crossings == tuple(verify.crossings_of_relay_rules(topology))
        assert running.summary == (
            f"relay: running in p-router (pid {stand_in.pid}): expecting its rules' crossings: "
            "broadcast vlan1 -> vlan2, multicast vlan1 -> vlan2"
        )
    finally:
        stand_in.kill()
        stand_in.wait()
    # Apply started it, and it is gone: its crossings are still expected (and will fail).
    gone = verify.relay_expectation(topology, "p-", state_root=str(tmp_path))
    assert gone.crossings == running.crossings
    assert "started by apply in p-router but not running" in gone.summary


def test_a_vlan_with_one_member_multicasts_from_the_router() -> None:
    rows = verify.expected_traffic(layout(seg(1, "a"), seg(2, "b")))
    mine = [r for r in rows if r.why == "VLAN 1"]
    assert [(r.test, r.source, r.source_address) for r in mine] == [
        ("broadcast", "router", IPv4("10.0.1.3")),
        ("multicast", "router", IPv4("10.0.1.3")),
    ]
    isolation = [r for r in rows if r.why == "VLAN 1 to VLAN 2"]
    assert {r.source for r in isolation} == {"a"}


def test_a_vlan_without_members_is_neither_tested_nor_a_target() -> None:
    rows = verify.expected_traffic(layout(seg(1, "a", "b"), seg(2)))
    assert {r.receiver for r in rows} == {"a"}


# --- output ---------------------------------------------------------------------------------------


def test_table_marks_mismatches_and_errors() -> None:
    rows = [
        verify.Row("ping", "a", "b", True, True, "VLAN 1"),
        verify.Row("ping", "a", "c", False, True, "VLAN 1 to VLAN 2"),
        verify.Row("broadcast", "a", "d", False, False, "x", error="source has no address"),
    ]
    lines = verify.format_table(rows, with_test=True).splitlines()
    assert lines[0].split() == ["Test", "Source", "Target", "Expected", "Got", "Result"]
    assert lines[1].endswith("pass")
    assert lines[2].endswith("FAIL")
    assert "No connection" in lines[2]
    assert "source has no address" in lines[3]
    assert lines[3].endswith("FAIL")


@pytest.mark.parametrize("prefix", [None])
def test_verify_without_a_namespace_prefix_is_a_usage_error(
    prefix: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify.run_verify(load_topology(SEEDS), netns_prefix=prefix) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_verify_of_a_topology_that_was_not_applied_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert verify.run_verify(load_topology(SEEDS), netns_prefix="ccl-never-applied-") == 2
    assert "ccl-never-applied-host does not exist" in capsys.readouterr().err


# --- progress and JSON ----------------------------------------------------------------------------

PASSING = verify.Row("ping", "a", "b", True, True, "VLAN 1")
FAILING = verify.Row("broadcast", "a", "c (10.0.2.255:5000)", False, True, "VLAN 1 to VLAN 2")


def progress_of(*rows: verify.Row, live: bool) -> str:
    out = io.StringIO()
    progress = verify.Progress(out, live=live)
    progress.start(len(rows))
    for row in rows:
        progress.row(row)
    progress.close()
    return out.getvalue()


def test_progress_off_a_terminal_is_one_plain_line_per_check() -> None:
    assert progress_of(PASSING, FAILING, live=False).splitlines() == [
        "verify: 2 checks",
        "verify: [1/2] pass  ping  a -> b: OK",
        "verify: [2/2] FAIL  broadcast  a -> c (10.0.2.255:5000): received",
    ]


def test_progress_on_a_terminal_rewrites_one_line_and_keeps_failures() -> None:
    text = progress_of(PASSING, FAILING, live=True)
    # What stays on the screen: each write starts by erasing the live line, and close erases
    # the last one; only the failure was written with a newline.
    screen = [chunk.rpartition(verify.CLEAR_LINE)[2] for chunk in text.split("\n")]
    assert screen == ["verify: [2/2] FAIL  broadcast  a -> c (10.0.2.255:5000): received", ""]
    assert "verify: 1/2 checks, 0 failed: [1/2] pass  ping  a -> b: OK" in text
    assert text.endswith(verify.CLEAR_LINE)


def test_a_check_that_could_not_run_says_why_in_its_progress_line() -> None:
    row = verify.Row("multicast", "d", "b", True, False, "x", error="source has no address")
    assert verify.progress_line(3, 10, row) == (
        "[ 3/10] FAIL  multicast  d -> b: source has no address"
    )


def test_verify_json_has_the_documented_shape() -> None:
    report = verify.Report([PASSING], [FAILING])
    doc = verify.report_json(report, "relay: not started", 1.23456, ["p-d"])
    assert doc == {
        "ok": False,
        "relay": "relay: not started",
        "passed": 1,
        "total": 2,
        "seconds": 1.235,
        "unaddressed": ["p-d"],
        "pings": [
            {
                "test": "ping",
                "source": "a",
                "target": "b",
                "expected": True,
                "got": True,
                "passed": True,
                "why": "VLAN 1",
                "error": None,
            }
        ],
        "traffic": [verify.row_json(FAILING)],
    }
    assert json.loads(json.dumps(doc)) == doc
