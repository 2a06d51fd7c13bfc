"""What one bench trial delivered: loss, duplicates, reordering and latency percentiles.

Pure: it takes the number of frames the generator sent and the sink's records (sequence numbers
and latencies in arrival order) and returns a frozen summary. It must not read clocks or files.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Latency:
    """Latency percentiles of the first copy of each frame, in microseconds."""

    p50: float
    p90: float
    p99: float
    max: float


@dataclass(frozen=True)
class Delivery:
    """One trial: what was offered and what arrived."""

    offered_pps: int
    sent: int
    seconds: float  # the generator's own duration of the trial
    received: int  # datagrams of the trial, copies included
    unique: int
    duplicates: int
    reordered: int  # frames that arrived after a frame with a higher sequence number
    latency: Latency | None  # None when nothing arrived
    sink_drops: int = 0  # datagrams the sink's own socket dropped (SO_RXQ_OVFL): sink-bound

    @property
    def lost(self) -> int:
        return max(0, self.sent - self.unique)

    @property
    def loss(self) -> float:
        """The fraction of sent frames that never arrived (0.0 .. 1.0)."""
        return self.lost / self.sent if self.sent else 0.0

    @property
    def sent_pps(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def delivered_pps(self) -> float:
        return self.unique / self.seconds if self.seconds > 0 else 0.0


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank `q`-th percentile (0 < q <= 100) of an ascending, non-empty sequence."""
    if not ordered:
        raise ValueError("no values")
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


def analyse(
    offered_pps: int,
    sent: int,
    seconds: float,
    seqs: Sequence[int],
    latencies_ns: Sequence[int],
    sink_drops: int = 0,
) -> Delivery:
    """Summarise a trial from the sink's records (`seqs[i]` arrived with `latencies_ns[i]`)."""
    seen: set[int] = set()
    firsts: list[float] = []
    duplicates = reordered = 0
    highest = -1
    for seq, lat in zip(seqs, latencies_ns, strict=True):
        if seq in seen:
            duplicates += 1
            continue
        seen.add(seq)
        firsts.append(lat / 1000)
        if seq < highest:
            reordered += 1
        else:
            highest = seq
    latency = None
    if firsts:
        firsts.sort()
        latency = Latency(
            p50=percentile(firsts, 50),
            p90=percentile(firsts, 90),
            p99=percentile(firsts, 99),
            max=firsts[-1],
        )
    return Delivery(
        offered_pps=offered_pps,
        sent=sent,
        seconds=seconds,
        received=len(seqs),
        unique=len(seen),
        duplicates=duplicates,
        reordered=reordered,
        latency=latency,
        sink_drops=sink_drops,
    )


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are not None; None when there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
