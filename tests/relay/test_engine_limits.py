"""The engine with rate limits, fragments and the mesh MTU (issue 9): drains in, output out."""

from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from crosscast.relay.engine import Drop, Relay
from crosscast.relay.envelope import MESH_DATAGRAM_MAX, CrosscastCodec
from crosscast.relay.ruleindex import RuleTable
from crosscast.relay.rules import parse_rules_text
from tests.relay.test_engine import (
    NOW,
    ROUTER_IFACES,
    Emit,
    bcast,
    capture,
    emits,
    envelope,
    iface,
    mesh,
    mesh_datagrams,
)
from tests.relay.test_fragments import PAYLOAD, fragments, reassembled, udp_checksum_ok

LIMITED_RULES = (
    "flood from eth0 to eth2 port 9000 rate 500 burst 5; quiet from eth0 to eth3 port 9001"
)


def router(rules: str = LIMITED_RULES, *, egress_rate: int = 0, mesh_mtu: int = 1500) -> Relay:
    return Relay(
        rules=RuleTable(parse_rules_text(rules, "test")),
        interfaces={i.name: i for i in ROUTER_IFACES},
        relay_id=1,
        mesh_port=7124,
        egress_rate=egress_rate,
        mesh_mtu=mesh_mtu,
    )


_sent = iter(range(10**9))  # every frame fed is distinct: the duplicate window never drops one


def feed(r: Relay, port: int, n: int, now: float = NOW) -> list[Emit]:
    out: list[Emit] = []
    for _ in range(n):
        out += emits(capture(r, "eth0", bcast(port=port, payload=b"%d" % next(_sent)), now))
    return out


def test_a_rate_limited_rule_relays_its_burst_then_drops_counted_per_rule() -> None:
    r = router()
    assert len(feed(r, 9000, 100)) == 5
    assert r.counters["dropped", Drop.RATE_LIMIT] == 95
    assert r.counters["rule_dropped", "flood", Drop.RATE_LIMIT] == 95
    assert r.counters["rule", "flood"] == 5  # relayed, by rule: the refused are not in it


def test_a_flood_on_a_limited_rule_does_not_touch_another_rule() -> None:
    r = router()
    feed(r, 9000, 1000)
    assert len(feed(r, 9001, 100)) == 100


def test_a_limited_rule_refills_with_time() -> None:
    r = router()
    feed(r, 9000, 5)
    assert len(feed(r, 9000, 100, NOW + 0.011)) == 5  # 11 ms at 500/s: 5.5 tokens


def test_a_frame_two_rules_match_still_reaches_the_egress_of_the_unlimited_one() -> None:
    r = router("a from eth0 to eth2 port 9000 rate 1 burst 1; b from eth0 to eth2,eth3 port 9000")
    out = feed(r, 9000, 3)
    assert sorted(e.interface for e in out) == ["eth2"] * 3 + ["eth3"] * 3


def test_a_frame_only_limited_rules_match_goes_to_the_egress_of_those_that_passed() -> None:
    r = router("a from eth0 to eth2 port 9000 rate 1 burst 1; b from eth0 to eth3 port 9000")
    out = feed(r, 9000, 3)
    assert sorted(e.interface for e in out) == ["eth2", "eth3", "eth3", "eth3"]


def test_the_egress_cap_limits_each_interface_over_all_rules() -> None:
    r = router("a from eth0 to eth2 port 9000; b from eth0 to eth2 port 9001", egress_rate=100)
    out = feed(r, 9000, 8) + feed(r, 9001, 8)
    assert len(out) == 10  # the cap's burst: 0.1 s at 100/s
    assert r.counters["dropped", Drop.RATE_LIMIT] == 6


def test_a_reload_keeps_the_state_of_an_unchanged_limit() -> None:
    r = router()
    feed(r, 9000, 5)
    r.update_rules(RuleTable(parse_rules_text(LIMITED_RULES, "reloaded")))
    assert feed(r, 9000, 5) == []


def test_a_reload_swaps_the_rules() -> None:
    r = router()
    r.update_rules(RuleTable(parse_rules_text("other from eth0 to eth3 port 9000", "new")))
    assert [e.interface for e in feed(r, 9000, 1)] == ["eth3"]


# -- fragments --------------------------------------------------------------------------------

FRAGMENT_RULES = "big from eth0 to eth2,eth3 port 10110"


def test_fragments_of_a_broadcast_follow_the_first_one_rewritten_for_each_egress() -> None:
    r = router(FRAGMENT_RULES)
    out: list[Emit] = []
    for frame in fragments():
        out += emits(capture(r, "eth0", frame, NOW))
    for name, broadcast in (("eth2", "10.0.2.255"), ("eth3", "10.0.3.255")):
        mine = [e.frame for e in out if e.interface == name]
        assert len(mine) == 3
        whole = reassembled(mine)
        assert whole.dst == broadcast
        assert bytes(whole[UDP].payload) == PAYLOAD
        assert udp_checksum_ok(whole)


def test_fragments_before_the_first_are_held_and_follow_it() -> None:
    r = router(FRAGMENT_RULES)
    first, second, third = fragments()
    assert emits(capture(r, "eth0", third, NOW)) == []
    assert emits(capture(r, "eth0", second, NOW)) == []
    out = emits(capture(r, "eth0", first, NOW))
    assert len(out) == 6
    assert (
        bytes(reassembled([e.frame for e in out if e.interface == "eth2"])[UDP].payload) == PAYLOAD
    )


def test_held_fragments_whose_first_never_comes_are_dropped_as_timeout() -> None:
    r = router(FRAGMENT_RULES)
    _, second, third = fragments()
    capture(r, "eth0", second, NOW)
    capture(r, "eth0", third, NOW)
    r.on_tick(NOW + 3)
    assert r.counters["dropped", Drop.FRAGMENT_TIMEOUT] == 2


def test_the_rest_of_a_datagram_no_rule_matched_is_dropped_at_once() -> None:
    r = router("other from eth0 to eth2 port 9")
    out = [emits(capture(r, "eth0", f, NOW)) for f in fragments()]
    assert out == [[], [], []]
    assert r.counters["dropped", Drop.NO_RULE] == 3
    assert r.counters["dropped", Drop.FRAGMENT_TIMEOUT] == 0


def test_a_rate_limit_counts_a_fragmented_datagram_once() -> None:
    r = router("big from eth0 to eth2 port 10110 rate 1 burst 1")
    out = [e for f in fragments() for e in emits(capture(r, "eth0", f, NOW))]
    assert len(out) == 3


# -- the mesh MTU -----------------------------------------------------------------------------


def mesh_pair(mtu: int = 1500, secret: bytes | None = None) -> tuple[Relay, Relay]:
    def one(rid: int) -> Relay:
        return Relay(
            rules=RuleTable(
                parse_rules_text(
                    "out from eth0 to mesh port 10110; in from mesh to eth0 port 10110", "t"
                )
            ),
            interfaces={"eth0": iface("eth0", rid, f"10.0.{rid}.21")},
            relay_id=rid,
            mesh_port=7124,
            codec=CrosscastCodec(secret),
            mesh_mtu=mtu,
        )

    return one(1), one(2)


def test_a_full_size_frame_crosses_the_mesh_in_datagrams_within_the_path_mtu() -> None:
    for secret in (None, b"correct horse battery staple"):
        a, b = mesh_pair(secret=secret)
        frame = bcast(port=10110, payload=b"p" * 1472)  # a 1514-byte frame
        datagrams = mesh_datagrams(capture(a, "eth0", frame, NOW))
        assert len(datagrams) == 2
        assert all(len(d) + 28 <= 1500 for d in datagrams)
        out = [e.frame for d in datagrams for e in emits(mesh(b, d, NOW))]
        whole = reassembled(out)
        assert whole.dst == "10.0.2.255"
        assert bytes(whole[UDP].payload) == b"p" * 1472
        assert udp_checksum_ok(whole)


def test_fragments_cross_the_mesh_and_reassemble_on_the_far_segment() -> None:
    a, b = mesh_pair()
    sent = [d for f in fragments() for d in mesh_datagrams(capture(a, "eth0", f, NOW))]
    assert all(len(d) + 28 <= 1500 for d in sent)
    out = [e.frame for d in sent for e in emits(mesh(b, d, NOW))]
    assert {Ether(f)[IP].dst for f in out} == {"10.0.2.255"}
    assert bytes(reassembled(out)[UDP].payload) == PAYLOAD


def test_a_frame_within_the_mesh_limit_is_one_datagram() -> None:
    a, _ = mesh_pair()
    assert len(capture(a, "eth0", bcast(port=10110, payload=b"s"), NOW).datagrams) == 1


# -- on the fast path: drains, cached decisions, reloads ---------------------------------------


def test_a_refused_frame_in_a_drain_leaves_the_rest_of_the_drain_relayed() -> None:
    r = router()
    drain = [(bcast(port=9000, payload=b"f%d" % i), 0) for i in range(8)]
    drain += [(bcast(port=9001, payload=b"q%d" % i), 0) for i in range(8)]
    out = emits(r.on_capture("eth0", drain, NOW))
    assert [e.interface for e in out] == ["eth2"] * 5 + ["eth3"] * 8


def test_rate_limit_counts_survive_the_decisions_being_worked_out_anew() -> None:
    r = router()
    feed(r, 9000, 10)
    r.update_interface(ROUTER_IFACES[1])  # forgets the cached decisions
    feed(r, 9000, 10)
    assert r.counters["rule_dropped", "flood", Drop.RATE_LIMIT] == 15
    assert r.counters["rule", "flood"] == 5


def test_a_reload_that_changes_a_limit_starts_its_bucket_afresh() -> None:
    r = router()
    feed(r, 9000, 5)
    r.update_rules(RuleTable(parse_rules_text(LIMITED_RULES.replace("burst 5", "burst 3"), "t")))
    assert len(feed(r, 9000, 5)) == 3


def test_the_egress_cap_applies_to_frames_from_the_mesh_too() -> None:
    rules = "in from mesh to eth2 port 9000"
    r = router(rules, egress_rate=10)  # burst: one frame
    datagrams = [envelope(bcast(port=9000, payload=b"%d" % n), seq=n) for n in range(3)]
    out = [e for d in datagrams for e in emits(mesh(r, d, NOW))]
    assert len(out) == 1
    assert r.counters["dropped", Drop.RATE_LIMIT] == 2


def test_fragments_held_for_decisions_a_reload_forgets_are_counted_not_sent() -> None:
    r = router(FRAGMENT_RULES)
    first, second, _ = fragments()
    capture(r, "eth0", first, NOW)
    r.update_rules(RuleTable(parse_rules_text("other from eth0 to eth3 port 9", "new")))
    assert emits(capture(r, "eth0", second, NOW)) == []  # held: its first is forgotten
    r.on_tick(NOW + 3)
    assert r.counters["dropped", Drop.FRAGMENT_TIMEOUT] == 1


def test_an_interface_a_reload_removed_is_no_longer_an_egress_or_probed() -> None:
    r = router("a from eth0 to eth2 port 9000")
    r.remove_interface("eth3")
    assert [name for name, _ in r.on_tick(NOW).emits] == ["eth0", "eth2"]


def test_full_size_frames_too_large_for_a_mesh_datagram_cross_whole_one_for_one() -> None:
    # A 1514-byte frame plus envelope exceeds a mesh datagram (1422 bytes): it crosses cut into
    # parts, and the far side emits the frame itself (its kernel delivers it, no reassembly),
    # also when successive datagrams carry IP id 0 (Linux sends that in every DF datagram).
    a, b = mesh_pair()
    sent, out, datagrams = [], [], 0
    for n in range(3):
        frame = bcast(port=10110, payload=bytes([n]) * 1472)  # id 0, like a DF datagram
        sent.append(frame)
        for d in mesh_datagrams(capture(a, "eth0", frame, NOW + n * 0.001)):
            assert len(d) <= MESH_DATAGRAM_MAX
            datagrams += 1
            out += [e.frame for e in emits(mesh(b, d, NOW + n * 0.001))]
    assert datagrams == 6  # one frame per wake-up: two datagrams each
    assert [bytes(Ether(f)[UDP].payload) for f in out] == [bytes([n]) * 1472 for n in range(3)]
    assert all(udp_checksum_ok(Ether(f)[IP]) for f in out)
