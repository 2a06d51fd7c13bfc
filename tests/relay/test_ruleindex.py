"""The hot-path index: what `RuleTable.egress_for` answers, and what the capture shell asks for
its kernel filter and group joins, checked against the rules themselves."""

from __future__ import annotations

import random

import pytest

from crosscast.relay.ruleindex import RuleTable
from crosscast.relay.rules import MESH, Rule

from .test_rules import ip, rule

BCAST = ip("10.0.1.255")
SRC = ip("10.0.1.7")
GROUP = "233.54.12.234"


def matched(
    table: RuleTable, ingress: str, dst: int, port: int, src: int = SRC, *, bcast: bool = True
) -> tuple[str, ...]:
    """Names of the rules that let the datagram out, as the engine sees them."""
    return tuple(r.name for r in table.egress_for(ingress, dst, port, src, is_broadcast=bcast)[1])


def multicast() -> Rule:
    return rule(groups=(GROUP,), broadcast=False, ports=((22001, 22001),))


# (what, rules, (ingress, destination, port, source, is broadcast), names of the matched rules)
CASES: list[tuple[str, list[Rule], tuple[str, int, int, int, bool], tuple[str, ...]]] = [
    ("broadcast to a rule port", [rule()], ("eth0", BCAST, 5000, SRC, True), ("r",)),
    ("broadcast to another port", [rule()], ("eth0", BCAST, 5001, SRC, True), ()),
    ("range, low bound", [rule(ports=((5000, 5010),))], ("eth0", BCAST, 5000, SRC, True), ("r",)),
    ("range, high bound", [rule(ports=((5000, 5010),))], ("eth0", BCAST, 5010, SRC, True), ("r",)),
    ("range, below", [rule(ports=((5000, 5010),))], ("eth0", BCAST, 4999, SRC, True), ()),
    ("range, above", [rule(ports=((5000, 5010),))], ("eth0", BCAST, 5011, SRC, True), ()),
    (
        "wide range and a port inside it",
        [rule(ports=((1024, 65535),)), rule("b", ports=((2000, 2000),))],
        ("eth0", BCAST, 2000, SRC, True),
        ("r", "b"),
    ),
    (
        "wide range, top port",
        [rule(ports=((1024, 65535),)), rule("b", ports=((2000, 2000),))],
        ("eth0", BCAST, 65535, SRC, True),
        ("r",),
    ),
    ("wide range, below", [rule(ports=((1024, 65535),))], ("eth0", BCAST, 1023, SRC, True), ()),
    ("group and port", [multicast()], ("eth0", ip(GROUP), 22001, SRC, False), ("r",)),
    ("group, other port", [multicast()], ("eth0", ip(GROUP), 22002, SRC, False), ()),
    (
        "other group",
        [multicast()],
        ("eth0", ip("233.54.12.235"), 22001, SRC, False),
        (),
    ),
    (
        "group rule ignores broadcast",
        [rule(groups=(GROUP,), broadcast=False)],
        ("eth0", BCAST, 5000, SRC, True),
        (),
    ),
    (
        "group rule with broadcast, broadcast",
        [rule(groups=(GROUP,), broadcast=True)],
        ("eth0", BCAST, 5000, SRC, True),
        ("r",),
    ),
    (
        "group rule with broadcast, group",
        [rule(groups=(GROUP,), broadcast=True)],
        ("eth0", ip(GROUP), 5000, SRC, False),
        ("r",),
    ),
    ("broadcast rule, unicast", [rule()], ("eth0", ip("10.0.1.9"), 5000, SRC, False), ()),
    ("one way", [rule()], ("eth2", ip("10.0.2.255"), 5000, ip("10.0.2.5"), True), ()),
    (
        "allowed source",
        [rule(allow=("10.0.1.0/24",))],
        ("eth0", BCAST, 5000, ip("10.0.1.200"), True),
        ("r",),
    ),
    (
        "source not allowed",
        [rule(allow=("10.0.1.0/24",))],
        ("eth0", BCAST, 5000, ip("10.0.2.200"), True),
        (),
    ),
    (
        "denied source",
        [rule(deny=("10.0.1.66/32",))],
        ("eth0", BCAST, 5000, ip("10.0.1.66"), True),
        (),
    ),
    (
        "source next to the denied one",
        [rule(deny=("10.0.1.66/32",))],
        ("eth0", BCAST, 5000, ip("10.0.1.67"), True),
        ("r",),
    ),
    ("unknown ingress", [rule()], ("eth9", BCAST, 5000, SRC, True), ()),
]


@pytest.mark.parametrize(
    ("rules", "packet", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_matching(
    rules: list[Rule], packet: tuple[str, int, int, int, bool], expected: tuple[str, ...]
) -> None:
    ingress, dst, port, src, bcast = packet
    assert matched(RuleTable(rules), ingress, dst, port, src, bcast=bcast) == expected


def test_deny_wins_over_allow() -> None:
    r = rule(allow=("10.0.1.0/24",), deny=("10.0.1.64/30",))
    assert not r.admits_source(ip("10.0.1.65"))
    assert r.admits_source(ip("10.0.1.68"))


def test_allow_everything_admits_any_source() -> None:
    assert rule(allow=("0.0.0.0/0",)).admits_source(ip("192.0.2.1"))


def test_overlapping_rules_union_egress_without_repeats() -> None:
    a = rule("a", egress=("eth2", "eth3"))
    b = rule("b", egress=("eth3", MESH), ports=((4000, 6000),))
    egress, rules = RuleTable([a, b]).egress_for("eth0", BCAST, 5000, SRC, is_broadcast=True)
    assert egress == ("eth2", "eth3", MESH)
    assert rules == (a, b)


def test_egress_union_depends_on_which_rules_admit_the_source() -> None:
    a = rule("a", egress=("eth2",), allow=("10.0.1.0/25",))
    b = rule("b", egress=("eth3",))
    table = RuleTable([a, b])
    assert table.egress_for("eth0", BCAST, 5000, ip("10.0.1.1"), is_broadcast=True) == (
        ("eth2", "eth3"),
        (a, b),
    )
    assert table.egress_for("eth0", BCAST, 5000, ip("10.0.1.200"), is_broadcast=True) == (
        ("eth3",),
        (b,),
    )


def test_egress_never_includes_the_ingress() -> None:
    # Validation forbids it; the table still never sends a frame back where it came from.
    table = RuleTable([rule(egress=("eth0", "eth2"))])
    assert table.egress_for("eth0", BCAST, 5000, SRC, is_broadcast=True)[0] == ("eth2",)


def test_no_match_gives_no_egress() -> None:
    assert RuleTable([rule()]).egress_for("eth9", BCAST, 5000, SRC, is_broadcast=True) == ((), ())


def test_index_agrees_with_a_scan_of_every_rule() -> None:
    rng = random.Random(7)
    groups = ["233.54.12.234", "239.1.1.1", "239.1.1.2"]
    ifaces = ["eth0", "eth2", "eth3", MESH]
    rules = []
    for n in range(40):
        ingress = rng.choice(ifaces)
        ports = []
        for _ in range(rng.randint(1, 3)):
            first = rng.randint(4990, 5030)
            ports.append((first, first + rng.choice((0, 0, 3, 200))))
        rules.append(
            rule(
                f"r{n}",
                ingress,
                tuple(rng.sample([i for i in ifaces if i != ingress], 2)),
                tuple(ports),
                broadcast=rng.random() < 0.6,
                groups=tuple(rng.sample(groups, rng.randint(0, 2))),
                allow=("10.0.1.0/25",) if rng.random() < 0.2 else (),
                deny=("10.0.1.8/29",) if rng.random() < 0.2 else (),
            )
        )
    table = RuleTable(rules)
    for _ in range(3000):
        ingress = rng.choice(ifaces)
        is_broadcast = rng.random() < 0.5
        dst = BCAST if is_broadcast else ip(rng.choice([*groups, "239.9.9.9"]))
        port = rng.randint(4980, 5240)
        src = ip(rng.choice(["10.0.1.5", "10.0.1.10", "10.0.1.200"]))
        expected = [
            r
            for r in rules
            if r.ingress == ingress
            and any(p.first <= port <= p.last for p in r.ports)
            and (r.broadcast if is_broadcast else dst in r.groups)
            and r.admits_source(src)
        ]
        egress, got = table.egress_for(ingress, dst, port, src, is_broadcast=is_broadcast)
        assert got == tuple(expected)
        union = dict.fromkeys(e for r in expected for e in r.egress if e != ingress)
        assert egress == tuple(union)


def test_groups_on_lists_the_groups_to_join_per_ingress() -> None:
    table = RuleTable(
        [
            rule("a", groups=("239.1.1.1", GROUP), broadcast=False),
            rule("b", groups=(GROUP,), broadcast=False),
            rule("c", "eth2", ("eth0",), groups=("239.2.2.2",), broadcast=False),
        ]
    )
    assert table.groups_on("eth0") == (ip(GROUP), ip("239.1.1.1"))
    assert table.groups_on("eth2") == (ip("239.2.2.2"),)
    assert table.groups_on("eth3") == ()


def test_capture_needs_merge_overlapping_and_adjacent_ranges() -> None:
    table = RuleTable(
        [
            rule("a", ports=((5000, 5004), (6000, 6000))),
            rule("b", ports=((5005, 5010), (5003, 5003))),
            rule("c", ports=((22001, 22001),), groups=(GROUP,), broadcast=False),
            rule("d", ports=((22000, 22001),), groups=(GROUP, "224.1.1.1"), broadcast=False),
            rule("e", "eth2", ("eth0",), ports=((9, 9),)),
        ]
    )
    assert table.capture_needs("eth0") == (
        ((5000, 5010), (6000, 6000)),
        ((ip("224.1.1.1"), ((22000, 22001),)), (ip(GROUP), ((22000, 22001),))),
    )


def test_capture_needs_of_an_unused_interface_are_empty() -> None:
    assert RuleTable([rule()]).capture_needs("eth7") == ((), ())
