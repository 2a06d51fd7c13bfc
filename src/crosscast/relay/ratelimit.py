"""Rate limits: token buckets for the rules and the egress interfaces, in the pure core.

Owns `TokenBucket` (one limit: a rate in frames per second and a burst) and `Limiters` (the
buckets of one relay: one per rate-limited rule, one per egress interface under the default
cap). Pure: the time is passed in as `now` (seconds, any monotonic origin); O(1) per frame, no
allocation after construction, no clock read, no sleep. A frame the bucket refuses is dropped
and counted by the engine (Drop.RATE_LIMIT); nothing is ever queued, so a flood costs latency
to nobody.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rules.py imports default_burst from here
    from crosscast.relay.rules import Rule

# The default cap per egress interface, in frames per second (0 = off). Discovery traffic on a
# controls or vehicle network is a few hundred frames per second at most; 20,000/s of full-size
# frames is ~240 Mbit/s, well below what a 1 Gbit segment carries, and far above any legitimate
# broadcast load, so only a storm (a loop outside the relay, a runaway sender) ever meets it,
# and the segment keeps most of its capacity for unicast when it does.
DEFAULT_EGRESS_RATE = 20_000
# The burst of a limit given without one: a tenth of a second at the rate, at least one frame,
# so a periodic sender that bunches its datagrams (a search sent to 50 servers at once) passes.
DEFAULT_BURST_SECONDS = 0.1


def default_burst(rate: float) -> int:
    """The burst of a limit written without `burst`: 0.1 s worth of frames, at least 1."""
    return max(1, int(rate * DEFAULT_BURST_SECONDS))


class TokenBucket:
    """At most `burst` frames at once, refilled at `rate` frames per second.

    `allow(now)` takes one token if there is one. Time going backwards (a clock step) refills
    nothing and takes nothing away.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float = 0.0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, not {rate}/{burst}")
        self.rate = float(rate)
        self.burst = burst
        self._tokens = float(burst)  # a new limit starts full: the first burst passes
        self._last = now

    def allow(self, now: float) -> bool:
        elapsed = now - self._last
        if elapsed > 0:
            self._last = now
            tokens = self._tokens + elapsed * self.rate
            self._tokens = tokens if tokens < self.burst else float(self.burst)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Limiters:
    """The buckets of one relay: per rule name (rules with a rate) and per egress interface.

    Built from (name, rate, burst) triples so it does not depend on the rule model; `rebuilt`
    keeps the state of every limit that did not change (a reload must not hand a flooding rule a
    fresh burst).
    """

    __slots__ = ("egress", "egress_burst", "egress_rate", "rules")

    def __init__(
        self,
        rules: Iterable[tuple[str, float, int]] = (),
        *,
        egress: Iterable[str] = (),
        egress_rate: float = 0,
        now: float = 0.0,
    ) -> None:
        self.rules: dict[str, TokenBucket] = {
            name: TokenBucket(rate, burst, now) for name, rate, burst in rules
        }
        self.egress_rate = egress_rate
        self.egress_burst = default_burst(egress_rate) if egress_rate > 0 else 0
        self.egress: dict[str, TokenBucket] = {}
        for name in egress:
            self.add_egress(name, now)

    def add_egress(self, name: str, now: float) -> None:
        """Cap `name` at the egress rate (no-op when the cap is off or it has one already)."""
        if self.egress_rate > 0 and name not in self.egress:
            self.egress[name] = TokenBucket(self.egress_rate, self.egress_burst, now)

    def rebuilt(
        self,
        rules: Iterable[tuple[str, float, int]],
        *,
        egress: Iterable[str],
        now: float,
    ) -> Limiters:
        """Limiters for a new configuration; unchanged limits keep their bucket."""
        new = Limiters(egress_rate=self.egress_rate, now=now)
        for name, rate, burst in rules:
            old = self.rules.get(name)
            same = old is not None and old.rate == rate and old.burst == burst
            new.rules[name] = old if same and old is not None else TokenBucket(rate, burst, now)
        for name in egress:
            old_egress = self.egress.get(name)
            if old_egress is not None:
                new.egress[name] = old_egress
            else:
                new.add_egress(name, now)
        return new

    def allow_rule(self, name: str, now: float) -> bool:
        """True when rule `name` may relay one more frame (always, for a rule without a rate)."""
        bucket = self.rules.get(name)
        return bucket is None or bucket.allow(now)

    def allow_egress(self, name: str, now: float) -> bool:
        """True when interface `name` may take one more frame under the egress cap."""
        bucket = self.egress.get(name)
        return bucket is None or bucket.allow(now)


def limits_of(rules: Iterable[Rule]) -> list[tuple[str, float, int]]:
    """(name, rate, burst) of every rule that has a rate."""
    return [(r.name, r.rate, r.burst or default_burst(r.rate)) for r in rules if r.rate]
