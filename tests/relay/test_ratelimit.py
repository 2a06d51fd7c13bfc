"""Token buckets and the relay's limiters: pure, time passed in."""

from __future__ import annotations

import pytest

from crosscast.relay.ratelimit import Limiters, TokenBucket, default_burst, limits_of
from crosscast.relay.rules import parse_rules_text


def passed(bucket: TokenBucket, n: int, now: float) -> int:
    return sum(bucket.allow(now) for _ in range(n))


def test_a_new_bucket_passes_its_burst_at_once_and_then_nothing() -> None:
    bucket = TokenBucket(rate=500, burst=50, now=0.0)
    assert passed(bucket, 1000, 0.0) == 50


def test_a_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=500, burst=50, now=0.0)
    passed(bucket, 50, 0.0)
    assert passed(bucket, 1000, 0.1) == 50  # 0.1 s at 500/s
    assert passed(bucket, 1000, 0.103) == 1  # 1.5 tokens: one frame


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    bucket = TokenBucket(rate=500, burst=50, now=0.0)
    assert passed(bucket, 1000, 3600.0) == 50


def test_over_a_second_a_flood_gets_the_rate_plus_the_burst() -> None:
    bucket = TokenBucket(rate=500, burst=50, now=0.0)
    # 100,000 frames/s offered for one second
    got = sum(bucket.allow(i / 100_000) for i in range(100_000))
    assert 500 <= got <= 550


def test_time_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket(rate=500, burst=10, now=100.0)
    passed(bucket, 10, 100.0)
    assert passed(bucket, 10, 50.0) == 0
    assert passed(bucket, 10, 100.0) == 0


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-5, 1), (10, 0)])
def test_a_bucket_needs_a_positive_rate_and_burst(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="token bucket"):
        TokenBucket(rate, burst)


def test_the_default_burst_is_a_tenth_of_a_second_and_at_least_one() -> None:
    assert default_burst(500) == 50
    assert default_burst(3) == 1


def test_limits_of_lists_only_rate_limited_rules() -> None:
    rules = parse_rules_text(
        "a from eth0 to eth2 port 1 rate 500; b from eth0 to eth2 port 2", "test"
    )
    assert limits_of(rules) == [("a", 500.0, 50)]


def test_a_rule_without_a_rate_and_an_interface_without_a_cap_always_pass() -> None:
    limiters = Limiters([("a", 1, 1)], egress=["eth2"], egress_rate=0)
    assert all(limiters.allow_rule("b", 0.0) for _ in range(1000))
    assert all(limiters.allow_egress("eth2", 0.0) for _ in range(1000))


def test_the_egress_cap_applies_per_interface() -> None:
    limiters = Limiters(egress=["eth2", "eth3"], egress_rate=100)
    assert sum(limiters.allow_egress("eth2", 0.0) for _ in range(1000)) == 10
    assert sum(limiters.allow_egress("eth3", 0.0) for _ in range(1000)) == 10


def test_rebuilt_limiters_keep_the_state_of_unchanged_limits_only() -> None:
    old = Limiters([("same", 10, 5), ("changed", 10, 5)], egress=["eth2"], egress_rate=100)
    for _ in range(5):
        old.allow_rule("same", 0.0)
        old.allow_rule("changed", 0.0)
    new = old.rebuilt([("same", 10, 5), ("changed", 20, 5), ("new", 10, 5)], egress=["eth2"],
                      now=0.0)  # fmt: skip
    assert not new.allow_rule("same", 0.0)  # still empty: a reload hands a flood no burst
    assert new.allow_rule("changed", 0.0)
    assert new.allow_rule("new", 0.0)
    assert new.egress["eth2"] is old.egress["eth2"]
