"""The search for a relay's usable maximum rate: the highest offered rate that passes.

A trial passes when it loses less than 0.1 % of the frames and its p99 latency is at most
10 ms: a rate reached only by queueing for hundreds of milliseconds is not usable. The search
steps the rate up by a factor until a trial fails (or the ceiling is reached), then bisects
(geometrically) between the last pass and the first fail until they are close enough. A failing
trial is repeated once before its rate counts as failed: on a shared machine one scheduling
stall of 10 ms fails the p99 bound of a rate the system carries, and a single such trial would
send the bisection far below the system's limit (we saw usable maxima halved that way, with the
overload trial at twice the rate then passing). A system that cannot carry the rate fails both
times, at the cost of one more trial; the same rule applies to every system. A trial
whose generator could not send at the offered rate ends the search: the result is then a lower
bound (the generator's ceiling, not the system's).

Pure: `RateSearch` proposes rates and is told the outcomes; it runs no trial itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from crosscast.relay.bench.stats import Delivery

MAX_LOSS = 0.001  # fraction: < 0.1 % lost
MAX_P99_US = 10_000.0  # p99 <= 10 ms
# A generator that sent < 90 % of the offered rate, while the system delivered what it did
# send, was the limit. (On a loaded machine a trial may fall a few per cent short at any rate.)
GENERATOR_SHORTFALL = 0.90


@dataclass(frozen=True)
class Criteria:
    max_loss: float = MAX_LOSS
    max_p99_us: float = MAX_P99_US

    def passes(self, d: Delivery) -> bool:
        return d.latency is not None and d.loss < self.max_loss and d.latency.p99 <= self.max_p99_us


def generator_bound(d: Delivery, passed: bool) -> bool:
    """Whether the generator, not the system, limited this trial: it fell clearly short of the
    offered rate and the system kept up with what it sent (a failing system is the limit)."""
    return passed and d.sent_pps < GENERATOR_SHORTFALL * d.offered_pps


@dataclass
class RateSearch:
    """Step up by `factor` from `start` to `ceiling`, then bisect to a relative `precision`; a
    rate fails after `attempts` failed trials in a row at it (see the module docstring)."""

    start: int
    ceiling: int
    factor: float = 2.0
    precision: float = 0.1
    max_trials: int = 12
    attempts: int = 2
    floor: int = 100  # below this a system counts as unusable (usable max 0)
    best: int = 0  # the highest rate that passed
    failed: int | None = None  # the lowest rate that failed
    limited: bool = False  # the generator, not the system, ended the search
    trials: int = 0
    _next: int | None = field(default=None, init=False)
    _failures: int = field(default=0, init=False)  # failed trials in a row at `_next`

    def __post_init__(self) -> None:
        self._next = min(self.start, self.ceiling)

    def next_rate(self) -> int | None:
        """The next rate to try, or None when the search is over."""
        return self._next if self.trials < self.max_trials else None

    def record(self, rate: int, passed: bool, limited: bool = False) -> None:
        self.trials += 1
        if passed:
            self.best = max(self.best, rate)
            self._failures = 0
        else:
            self._failures += 1
            if self._failures < self.attempts and not limited:
                self._next = rate  # once more before it counts (the generator was not short)
                return
            self._failures = 0
            if self.failed is None or rate < self.failed:
                self.failed = rate
        if limited:
            self.limited = True
            self._next = None
            return
        self._next = self._propose()

    def _propose(self) -> int | None:
        if self.failed is None:  # still stepping up
            if self.best >= self.ceiling:
                return None
            return min(self.ceiling, math.ceil(self.best * self.factor))
        low = self.best
        if low == 0:  # the very first rate failed: step down
            if self.failed <= self.floor:
                return None
            return max(self.floor, math.floor(self.failed / self.factor))
        if self.failed <= low * (1 + self.precision):
            return None
        mid = round(math.sqrt(low * self.failed))
        return mid if low < mid < self.failed else None

    @property
    def done(self) -> bool:
        return self.next_rate() is None
