"""The rule language: both syntaxes, validation and the table printout (index: test_ruleindex)."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

import pytest

from crosscast.relay.ruleindex import RuleTable
from crosscast.relay.rules import (
    MESH,
    PortRange,
    Rule,
    RuleError,
    RuleErrors,
    format_rule_table,
    format_rules_yaml,
    load_rules_yaml,
    parse_rule_text,
    parse_rules_text,
    snowsignal_rules,
    validate_rules,
)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "rules"
EXAMPLE = ROOT / "examples" / "rules-fire-truck.yaml"
# Set to 1 to rewrite the golden files from the current output, then review the diff.
REGEN = os.environ.get("CROSSCAST_REGEN_GOLDEN") == "1"


def ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def cidr(text: str) -> tuple[int, int]:
    net = ipaddress.IPv4Network(text)
    return int(net.network_address), net.prefixlen


def rule(
    name: str = "r",
    ingress: str = "eth0",
    egress: tuple[str, ...] = ("eth2",),
    ports: tuple[tuple[int, int], ...] = ((5000, 5000),),
    *,
    broadcast: bool = True,
    groups: tuple[str, ...] = (),
    allow: tuple[str, ...] = (),
    deny: tuple[str, ...] = (),
    origin: str = "test",
) -> Rule:
    return Rule(
        name=name,
        ingress=ingress,
        egress=egress,
        ports=tuple(PortRange(a, b) for a, b in ports),
        broadcast=broadcast,
        groups=tuple(ip(g) for g in groups),
        allow=tuple(cidr(c) for c in allow),
        deny=tuple(cidr(c) for c in deny),
        origin=origin,
    )


def problems_of(exc: pytest.ExceptionInfo[RuleError]) -> list[str]:
    return exc.value.problems


# --- one-line syntax --------------------------------------------------------------------------


def test_one_line_rule_parses_every_field() -> None:
    r = parse_rule_text(
        "cam from eth0 to eth2,mesh port 22001,5000-5010 group 233.54.12.234 broadcast "
        "allow 10.0.1.0/24 deny 10.0.1.66",
        "--rule #1",
    )
    assert r == Rule(
        name="cam",
        ingress="eth0",
        egress=("eth2", MESH),
        ports=(PortRange(5000, 5010), PortRange(22001, 22001)),
        broadcast=True,
        groups=(ip("233.54.12.234"),),
        allow=(cidr("10.0.1.0/24"),),
        deny=(cidr("10.0.1.66/32"),),
        origin="--rule #1",
    )


def test_one_line_keywords_may_come_in_any_order() -> None:
    a = parse_rule_text("gps from eth0 to eth2,eth3 port 10110", "x")
    b = parse_rule_text("gps port 10110 to eth2,eth3 from eth0", "x")
    assert a == b


def test_one_line_egress_keeps_its_order() -> None:
    assert parse_rule_text("gps from eth0 to eth3,eth2 port 1", "x").egress == ("eth3", "eth2")


def test_one_line_spaces_around_commas_are_allowed() -> None:
    r = parse_rule_text("gps from eth0 to eth2, eth3 port 10110 , 10111", "x")
    assert r.egress == ("eth2", "eth3")
    assert r.ports == (PortRange(10110, 10111),)


def test_broadcast_defaults_on_without_groups() -> None:
    assert parse_rule_text("pva from eth0 to mesh port 5076", "x").broadcast is True


def test_broadcast_defaults_off_with_groups() -> None:
    r = parse_rule_text("video from eth0 to eth2 group 233.54.12.234 port 22001", "x")
    assert r.broadcast is False
    assert r.groups == (ip("233.54.12.234"),)


def test_broadcast_keyword_turns_it_on_with_groups() -> None:
    r = parse_rule_text("v from eth0 to eth2 group 233.54.12.234 port 22001 broadcast", "x")
    assert r.broadcast is True


def test_ports_are_sorted_and_overlaps_merged() -> None:
    r = parse_rule_text("p from eth0 to eth2 port 7000,5005-5010,5000-5004,5008", "x")
    assert r.ports == (PortRange(5000, 5010), PortRange(7000, 7000))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty rule"),
        ("from eth0 to eth2 port 1", "rule has no name: start with NAME, before 'from'"),
        ("bad/name from eth0 to eth2 port 1", "'bad/name' is not a valid rule name"),
        ("gps from eth0 to eth2 port 70000", "port 70000 is out of range 1-65535"),
        ("gps from eth0 to eth2 port 0", "port 0 is out of range 1-65535"),
        ("gps from eth0 to eth2 port 5010-5000", "port range 5010-5000 runs backwards"),
        ("gps from eth0 to eth2 port ten", "'ten' is not a port or port range"),
        ("gps from eth0 to eth2 port 1 sideways", "unexpected word 'sideways'"),
        ("gps from eth0 to eth2 port 1 port 2", "'port' is given twice"),
        ("gps from eth0 to port 1", "'to' needs a value, got 'port'"),
        ("gps from eth0 to eth2 port", "'port' needs a value"),
        ("gps from eth0,eth1 to eth2 port 1", "'from eth0,eth1': a rule has exactly one ingress"),
        ("gps to eth2 port 1", "missing 'from IFACE'"),
        ("gps from eth0 port 1", "missing 'to IFACE[,IFACE...]'"),
        ("gps from eth0 to eth2", "missing 'port P[,LO-HI...]'"),
        ("gps from eth0 to eth2,,eth3 port 1", "empty item in 'to eth2,,eth3'"),
        ("gps from eth0 to averyveryverylongname port 1", "'averyveryverylongname' is not an"),
        ("v from eth0 to eth2 port 1 group 233.54.12", "group '233.54.12' is not an IPv4 address"),
        ("g from eth0 to eth2 port 1 allow 10.0.1.5/24", "allow 10.0.1.5/24 has host bits set"),
        ("g from eth0 to eth2 port 1 deny 10.0.1.0/33", "deny '10.0.1.0/33' is not an IPv4"),
    ],
)
def test_one_line_error_names_the_offending_word(text: str, message: str) -> None:
    with pytest.raises(RuleError) as exc:
        parse_rule_text(text, "--rule #3")
    assert message in str(exc.value)


def test_one_line_error_is_one_line_prefixed_with_origin_and_rule() -> None:
    with pytest.raises(RuleError) as exc:
        parse_rule_text("gps from eth0 to eth2 port 70000", "--rule #1")
    assert str(exc.value) == "--rule #1: rule 'gps': port 70000 is out of range 1-65535"
    assert problems_of(exc) == [str(exc.value)]


def test_one_line_reports_every_problem_at_once() -> None:
    with pytest.raises(RuleErrors) as exc:
        parse_rule_text("gps from eth0 to eth2 port 70000 group nope", "--rule #1")
    assert problems_of(exc) == [
        "--rule #1: rule 'gps': port 70000 is out of range 1-65535",
        "--rule #1: rule 'gps': group 'nope' is not an IPv4 address",
    ]
    assert str(exc.value).splitlines() == problems_of(exc)


def test_one_line_rejects_a_rule_back_to_its_own_ingress() -> None:
    with pytest.raises(RuleError, match="forwards back to its own ingress 'eth0'"):
        parse_rule_text("loop from eth0 to eth2,eth0 port 5000", "x")


def test_one_line_rejects_a_group_that_is_not_multicast() -> None:
    with pytest.raises(RuleError, match=r"group 10\.0\.0\.1 is not multicast"):
        parse_rule_text("v from eth0 to eth2 group 10.0.0.1 port 5000", "x")


def test_rules_text_splits_on_semicolons_and_newlines() -> None:
    rules = parse_rules_text(
        "gps from eth0 to eth2 port 10110; pva from eth0 to mesh port 5076\n"
        "back from mesh to eth0 port 5076",
        "env RULES",
    )
    assert [r.name for r in rules] == ["gps", "pva", "back"]


def test_rules_text_origins_count_the_rules() -> None:
    rules = parse_rules_text("a from eth0 to eth2 port 1;;\n b from eth2 to eth0 port 1;", "RULES")
    assert [r.origin for r in rules] == ["RULES #1", "RULES #2"]


def test_rules_text_skips_comment_lines() -> None:
    rules = parse_rules_text("# GPS only\ngps from eth0 to eth2 port 10110\n", "RULES")
    assert [r.name for r in rules] == ["gps"]


def test_rules_text_reports_problems_of_every_rule() -> None:
    with pytest.raises(RuleErrors) as exc:
        parse_rules_text("a from eth0 to eth2 port 0; b from eth0 to eth2 port x", "RULES")
    assert problems_of(exc) == [
        "RULES #1: rule 'a': port 0 is out of range 1-65535",
        "RULES #2: rule 'b': 'x' is not a port or port range (use 5076 or 5000-5010)",
    ]


def test_rules_text_of_nothing_is_no_rules() -> None:
    assert parse_rules_text("  ;\n", "RULES") == ()


# --- YAML -------------------------------------------------------------------------------------

YAML_GPS = """\
rules:
  - name: gps
    from: eth0
    to: [eth2, eth3]
    ports: [10110, "5000-5010"]
    allow: [10.0.1.0/24]
    deny: [10.0.1.66/32]
"""


def test_yaml_rule_parses_every_field() -> None:
    (r,) = load_rules_yaml(YAML_GPS, "rules.yaml")
    assert r == Rule(
        name="gps",
        ingress="eth0",
        egress=("eth2", "eth3"),
        ports=(PortRange(5000, 5010), PortRange(10110, 10110)),
        broadcast=True,
        groups=(),
        allow=(cidr("10.0.1.0/24"),),
        deny=(cidr("10.0.1.66/32"),),
        origin="rules.yaml:2:5",
    )


def test_yaml_groups_turn_broadcast_off_by_default() -> None:
    text = (
        "rules:\n- {name: v, from: eth0, to: eth2, groups: [233.54.12.234], ports: 22001}\n"
        "- {name: w, from: eth0, to: eth2, groups: [233.54.12.235], ports: 22001, broadcast: true}"
    )
    v, w = load_rules_yaml(text, "f.yaml")
    assert (v.broadcast, w.broadcast) == (False, True)


def test_yaml_accepts_single_values_without_a_list() -> None:
    (r,) = load_rules_yaml("rules:\n- {name: a, from: eth0, to: eth2, ports: 5076}", "f.yaml")
    assert (r.egress, r.ports) == (("eth2",), (PortRange(5076, 5076),))


def test_yaml_accepts_comma_separated_strings() -> None:
    text = 'rules:\n- {name: a, from: eth0, to: "eth2, eth3", ports: "5076, 5000-5001"}'
    (r,) = load_rules_yaml(text, "f.yaml")
    assert r.egress == ("eth2", "eth3")
    assert r.ports == (PortRange(5000, 5001), PortRange(5076, 5076))


def test_yaml_origin_is_the_line_of_each_rule() -> None:
    text = YAML_GPS + "  - name: pva\n    from: eth0\n    to: [mesh]\n    ports: [5076]\n"
    assert [r.origin for r in load_rules_yaml(text, "rules.yaml")] == [
        "rules.yaml:2:5",
        "rules.yaml:8:5",
    ]


def test_yaml_collects_all_problems_with_their_lines() -> None:
    text = """\
rules:
  - name: gps
    from: eth0
    to: [eth2]
    ports: [10110]
    colour: red
  - name: video
    from: eth0
    to: [eth2]
    groups: [233.54.12]
    ports: [22001]
  - name: back
    from: eth2
    to: [eth2]
    ports: [5000]
"""
    with pytest.raises(RuleErrors) as exc:
        load_rules_yaml(text, "rules.yaml")
    assert problems_of(exc) == [
        "rules.yaml:6:5: unknown key 'colour' (expected name, from, to, ports, broadcast, groups, "
        "allow, deny, rate, burst)",
        "rules.yaml:10:14: rule 'video': group '233.54.12' is not an IPv4 address",
        "rules.yaml:14:5: rule 'back': forwards back to its own ingress 'eth2'",
    ]


# (what, file text, every problem): one line each, FILE:LINE:COLUMN of the value it concerns.
YAML_ERRORS = [
    (
        "unknown key, with a suggestion",
        "rules:\n  - name: gps\n    from: eth0\n    to: eth2\n    port: 10110\n",
        [
            "f.yaml:5:5: unknown key 'port' (did you mean 'ports'?)",
            "f.yaml:2:5: rule 'gps': missing 'ports'",
        ],
    ),
    (
        "bad port, at its item",
        "rules:\n  - name: gps\n    from: eth0\n    to: eth2\n    ports:\n"
        "      - 1\n      - 70000\n",
        ["f.yaml:7:9: rule 'gps': port 70000 is out of range 1-65535"],
    ),
    (
        "syntax error",
        "rules:\n  - name: gps\n    to: [eth2\n",
        [
            "f.yaml:4:1: not valid YAML: while parsing a flow sequence (line 3), "
            "expected ',' or ']', but got '<stream end>'"
        ],
    ),
    (
        "bad indentation",
        "rules:\n  - name: gps\n   from: eth0\n",
        [
            "f.yaml:3:4: not valid YAML: while parsing a block collection (line 2), "
            "expected <block end>, but found '<block mapping start>'"
        ],
    ),
    ("empty file", "# nothing\n", ["f.yaml:1:1: empty file; expected a 'rules:' list"]),
    (
        "no rules key",
        "rule:\n  - name: gps\n",
        [
            "f.yaml:1:1: unknown top-level key 'rule' (expected 'rules')",
            "f.yaml:1:1: no 'rules:' list",
        ],
    ),
    ("top-level list", "- name: gps\n", ["f.yaml:1:1: expected a mapping with a 'rules:' list"]),
    (
        "rule not a mapping",
        "rules:\n  - gps from eth0 to eth2 port 1\n",
        ["f.yaml:2:5: each rule must be a mapping (name:, from:, to:, ports:)"],
    ),
    (
        "repeated key",
        "rules:\n- name: a\n  from: eth0\n  to: eth2\n  ports: 1\n  ports: 2\n",
        ["f.yaml:6:3: 'ports' is given twice (first on line 5)"],
    ),
    (
        "missing keys, at the rule",
        "rules:\n- from: eth0\n",
        [
            "f.yaml:2:3: rule has no 'name'",
            "f.yaml:2:3: missing 'to'",
            "f.yaml:2:3: missing 'ports'",
        ],
    ),
    (
        "broadcast not a boolean",
        "rules:\n- {name: a, from: eth0, to: eth2, ports: 1,\n   broadcast: maybe}\n",
        ["f.yaml:3:15: rule 'a': 'broadcast' must be true or false, not 'maybe'"],
    ),
    (
        "broadcast off without groups",
        "rules:\n- name: a\n  from: eth0\n  to: eth2\n  ports: 1\n  broadcast: false\n",
        ["f.yaml:6:3: rule 'a': matches nothing: broadcast is off and no groups are given"],
    ),
    (
        "problem at the key it concerns",
        "rules:\n- name: a\n  from: mesh\n  ports: 1\n  to: [mesh]\n",
        [
            "f.yaml:5:3: rule 'a': forwards from mesh to mesh, which would bounce frames "
            "between relays"
        ],
    ),
    (
        "name not a string",
        "rules:\n- {name: 12, from: eth0, to: eth2, ports: 1}\n",
        ["f.yaml:2:10: rule name 12 is not a string"],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in YAML_ERRORS], ids=[c[0] for c in YAML_ERRORS]
)
def test_yaml_problems(text: str, expected: list[str]) -> None:
    with pytest.raises(RuleError) as exc:
        load_rules_yaml(text, "f.yaml")
    assert problems_of(exc) == expected
    assert str(exc.value) == "\n".join(expected)


# Found by the fuzzer (fuzz/rules_yaml.py, issue 9): PyYAML composes recursively, one level of
# Python stack per nesting level, so about 500 "[" in a rules file made `crosscast relay --check`
# (and a reload) die with a RecursionError traceback instead of one line.
def test_yaml_nested_too_deeply_is_an_error_not_a_crash() -> None:
    with pytest.raises(RuleError, match=r"^deep\.yaml:1:1: .*nested too deeply"):
        load_rules_yaml("[" * 1000, "deep.yaml")


def test_yaml_empty_rules_list_is_no_rules() -> None:
    assert load_rules_yaml("rules: []\n", "f.yaml") == ()
    assert load_rules_yaml("rules:\n", "f.yaml") == ()


def test_fire_truck_example_loads_and_validates() -> None:
    rules = load_rules_yaml(EXAMPLE.read_text(), str(EXAMPLE))
    assert validate_rules(rules, interfaces={"eth0", "eth2", "eth3"}, mesh_port=7124) == []
    table = RuleTable(rules)
    gps = table.egress_for("eth0", ip("10.0.1.255"), 10110, ip("10.0.1.7"), is_broadcast=True)
    assert gps[0] == ("eth2", "eth3")
    back = table.egress_for("eth2", ip("10.0.2.255"), 10110, ip("10.0.2.7"), is_broadcast=True)
    assert back == ((), ())
    video = table.egress_for("eth0", ip("233.54.12.234"), 22001, ip("10.0.1.9"), is_broadcast=False)
    assert video[0] == ("eth2",)
    assert table.egress_for("eth3", ip("10.0.3.255"), 5000, ip("10.0.3.5"), is_broadcast=True)[
        0
    ] == ("eth0", "eth2")
    assert table.egress_for("mesh", ip("255.255.255.255"), 5076, ip("10.9.0.1"), is_broadcast=True)[
        0
    ] == ("eth0",)


# --- SnowSignal flags -------------------------------------------------------------------------


def test_snowsignal_flags_are_a_rule_pair_through_the_mesh() -> None:
    out, back = snowsignal_rules("eth0", 5076)
    assert (out.ingress, out.egress, back.ingress, back.egress) == (
        "eth0",
        (MESH,),
        MESH,
        ("eth0",),
    )
    for r in (out, back):
        assert (r.ports, r.broadcast, r.groups, r.origin) == (
            (PortRange(5076, 5076),),
            True,
            (),
            "snowsignal flags",
        )
    assert validate_rules((out, back), interfaces={"eth0"}, mesh_port=7124) == []


def test_snowsignal_flags_with_a_bad_port_are_a_rule_error() -> None:
    with pytest.raises(RuleError, match=r"^snowsignal flags: port 70000 is out of range"):
        snowsignal_rules("eth0", 70000)


# --- validation -------------------------------------------------------------------------------


def test_valid_rules_have_no_problems() -> None:
    rules = [rule("a"), rule("b", "eth2", ("eth0", MESH), groups=("233.54.12.234",))]
    assert validate_rules(rules, interfaces={"eth0", "eth2"}, mesh_port=7124) == []


def test_duplicate_rule_names_are_a_problem() -> None:
    rules = [rule("a", origin="f.yaml:2"), rule("a", "eth2", ("eth0",), origin="f.yaml:8")]
    assert validate_rules(rules, interfaces=None, mesh_port=None) == [
        "f.yaml:8: rule 'a': duplicate name (also defined at f.yaml:2)"
    ]


def test_egress_containing_the_ingress_is_a_problem() -> None:
    assert validate_rules([rule(egress=("eth2", "eth0"))], interfaces=None, mesh_port=None) == [
        "test: rule 'r': forwards back to its own ingress 'eth0'"
    ]


def test_mesh_to_mesh_is_a_problem() -> None:
    problems = validate_rules([rule(ingress=MESH, egress=(MESH,))], interfaces=None, mesh_port=None)
    assert problems == [
        "test: rule 'r': forwards from mesh to mesh, which would bounce frames between relays"
    ]


def test_empty_egress_is_a_problem() -> None:
    assert validate_rules([rule(egress=())], interfaces=None, mesh_port=None) == [
        "test: rule 'r': has no egress ('to' is empty)"
    ]


def test_repeated_egress_is_a_problem() -> None:
    assert validate_rules([rule(egress=("eth2", "eth2"))], interfaces=None, mesh_port=None) == [
        "test: rule 'r': 'eth2' is listed twice in 'to'"
    ]


def test_rule_without_broadcast_or_groups_is_a_problem() -> None:
    assert validate_rules([rule(broadcast=False)], interfaces=None, mesh_port=None) == [
        "test: rule 'r': matches nothing: broadcast is off and no groups are given"
    ]


def test_rule_without_ports_is_a_problem() -> None:
    assert validate_rules([rule(ports=())], interfaces=None, mesh_port=None) == [
        "test: rule 'r': has no ports"
    ]


def test_group_that_is_not_multicast_is_a_problem() -> None:
    assert validate_rules([rule(groups=("10.0.0.1",))], interfaces=None, mesh_port=None) == [
        "test: rule 'r': group 10.0.0.1 is not multicast (224.0.0.0/4)"
    ]


def test_link_local_control_group_is_a_problem() -> None:
    problems = validate_rules([rule(groups=("224.0.0.251",))], interfaces=None, mesh_port=None)
    assert problems == [
        "test: rule 'r': group 224.0.0.251 is in the local network control block 224.0.0.0/24, "
        "which is never relayed (RFC 5771)"
    ]


def test_group_just_above_the_control_block_is_fine() -> None:
    assert validate_rules([rule(groups=("224.0.1.129",))], interfaces=None, mesh_port=None) == []


def test_mesh_port_relayed_by_a_rule_touching_the_mesh_is_a_problem() -> None:
    rules = [rule("a", egress=(MESH,), ports=((7124, 7124),))]
    assert validate_rules(rules, interfaces=None, mesh_port=7124) == [
        "test: rule 'a': port 7124 is the mesh port 7124; a rule that touches the mesh cannot "
        "relay it"
    ]


def test_mesh_port_inside_a_range_from_the_mesh_is_a_problem() -> None:
    rules = [rule("a", ingress=MESH, egress=("eth0",), ports=((7000, 8000),))]
    assert validate_rules(rules, interfaces=None, mesh_port=7124) == [
        "test: rule 'a': ports 7000-8000 include the mesh port 7124; a rule that touches the mesh "
        "cannot relay it"
    ]


def test_mesh_port_between_local_interfaces_is_allowed() -> None:
    assert validate_rules([rule(ports=((7124, 7124),))], interfaces=None, mesh_port=7124) == []


def test_mesh_port_is_not_checked_without_a_mesh() -> None:
    rules = [rule(egress=(MESH,), ports=((7124, 7124),))]
    assert validate_rules(rules, interfaces=None, mesh_port=None) == []


def test_interface_that_does_not_exist_is_a_problem() -> None:
    rules = [rule(ingress="eth0", egress=("eth9", MESH))]
    assert validate_rules(rules, interfaces={"eth0", "lo"}, mesh_port=None) == [
        "test: rule 'r': interface 'eth9' does not exist (have: eth0, lo)"
    ]


def test_interface_missing_for_several_rules_is_one_problem() -> None:
    rules = snowsignal_rules("wlan0", 5076)
    assert validate_rules(rules, interfaces={"lo"}, mesh_port=7124) == [
        "snowsignal flags: interface 'wlan0' does not exist (have: lo); "
        "used by rules 'snowsignal-out', 'snowsignal-in'"
    ]


def test_problems_come_one_line_each_in_rule_order() -> None:
    rules = [
        rule("a", egress=(), origin="--rule #1"),
        rule("b", ports=(), broadcast=False, origin="--rule #2"),
    ]
    assert validate_rules(rules, interfaces=None, mesh_port=None) == [
        "--rule #1: rule 'a': has no egress ('to' is empty)",
        "--rule #2: rule 'b': has no ports",
        "--rule #2: rule 'b': matches nothing: broadcast is off and no groups are given",
    ]


# --- printout ---------------------------------------------------------------------------------


def golden_rules() -> tuple[Rule, ...]:
    rules = load_rules_yaml(EXAMPLE.read_text(), "examples/rules-fire-truck.yaml")
    return (
        *rules,
        *parse_rules_text(
            "sensors from eth2 to eth0,eth3 port 6000-6010,6100 allow 10.0.2.0/24 deny 10.0.2.9;"
            "both from eth3 to mesh group 239.1.1.1,239.1.1.2 port 30000 broadcast",
            "env RULES",
        ),
        *snowsignal_rules("eth1", 5076),
    )


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def test_rule_table_matches_the_golden_file() -> None:
    check_golden("table.txt", format_rule_table(golden_rules()))


def test_rule_table_is_deterministic() -> None:
    assert format_rule_table(golden_rules()) == format_rule_table(golden_rules())


def test_empty_rule_table_says_nothing_is_relayed() -> None:
    assert format_rule_table([]) == (
        "NAME  FROM  TO  MATCH  SOURCES  LIMIT  ORIGIN\n(no rules: nothing is relayed)\n"
    )


# -- rate limits (issue 9) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate", "burst"),
    [
        ("gps from eth0 to eth2 port 10110 rate 500", 500.0, 50),
        ("gps from eth0 to eth2 port 10110 rate 500/s burst 20", 500.0, 20),
        ("gps from eth0 to eth2 port 10110 burst 7 rate 2.5/s", 2.5, 7),
        ("gps from eth0 to eth2 port 10110", None, None),
    ],
)
def test_one_line_rate_and_burst(text: str, rate: float | None, burst: int | None) -> None:
    rule = parse_rule_text(text, "test")
    assert (rule.rate, rule.burst) == (rate, burst)


@pytest.mark.parametrize(
    ("words", "problem"),
    [
        ("rate 0", "rate 0 is out of range"),
        ("rate fast", "rate 'fast' is not a number of frames per second"),
        ("rate 500/min", "is not a number of frames per second"),
        ("rate 500 burst 0", "burst 0 is out of range"),
        ("rate 500 burst 1.5", "burst '1.5' is not a whole number"),
        ("burst 5", "has a burst but no rate"),
        ("rate", "'rate' needs a value"),
    ],
)
def test_one_line_bad_rates_are_refused(words: str, problem: str) -> None:
    with pytest.raises(RuleError, match=re.escape(problem)):
        parse_rule_text(f"gps from eth0 to eth2 port 10110 {words}", "test")


def test_yaml_rate_as_number_or_per_second_with_burst() -> None:
    text = (
        "rules:\n"
        "  - {name: a, from: eth0, to: eth2, ports: 1, rate: 500/s, burst: 20}\n"
        "  - {name: b, from: eth0, to: eth2, ports: 2, rate: 100}\n"
    )
    a, b = load_rules_yaml(text, "rules.yaml")
    assert (a.rate, a.burst, b.rate, b.burst) == (500.0, 20, 100.0, 10)


def test_yaml_bad_rate_names_its_line() -> None:
    text = "rules:\n  - name: a\n    from: eth0\n    to: eth2\n    ports: 1\n    rate: lots\n"
    with pytest.raises(RuleError, match=r"rules\.yaml:6:11: rule 'a': rate 'lots'"):
        load_rules_yaml(text, "rules.yaml")


def test_rule_table_shows_the_limit() -> None:
    table = format_rule_table(
        [parse_rule_text("gps from eth0 to eth2 port 1 rate 500 burst 9", "t")]
    )
    assert "500/s burst 9" in table


def test_rules_yaml_round_trips_the_rate() -> None:
    rule = parse_rule_text("gps from eth0 to eth2 port 1 rate 500 burst 9", "t")
    (again,) = load_rules_yaml(format_rules_yaml([rule]), "again.yaml")
    assert (again.rate, again.burst) == (500.0, 9)
