"""`crosscast bench`, tiny: the kernel path and crosscast in router mode, one size, a few seconds.

It checks that the bench measures something real (frames cross, the kernel path delivers
essentially everything at a low rate, the JSON has every section) and cleans up after itself.
It never asserts a timing: the machine is shared.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crosscast import cli
from crosscast.net import netns
from crosscast.relay.bench import testbed

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    before = set(netns.names(testbed.PREFIX_STEM))
    status = cli.main(
        ["bench", "--systems", "kernel,crosscast-router", "--sizes", "64",
         "--trial-seconds", "0.5", "--max-rate", "2000", "--no-overload", "--json", str(out)]
    )  # fmt: skip
    left = set(netns.names(testbed.PREFIX_STEM)) - before
    assert not left, f"namespaces left behind: {left}"
    assert status == 0
    doc: dict[str, object] = json.loads(Path(out).read_text())
    return doc


def _row(doc: dict[str, object], system: str) -> dict[str, object]:
    rows = doc["rows"]
    assert isinstance(rows, list)
    return next(r for r in rows if r["system"] == system)


def _latency_trial(doc: dict[str, object], system: str) -> dict[str, float]:
    runs = doc["runs"]
    assert isinstance(runs, list)
    result = next(r for r in runs[0] if r["system"] == system)
    trial: dict[str, float] = result["latency"]
    return trial


def test_kernel_path_delivers_nearly_everything_at_a_low_rate(
    bench_json: dict[str, object],
) -> None:
    trial = _latency_trial(bench_json, "kernel")
    assert trial["sent"] > 0
    assert trial["unique"] >= 0.99 * trial["sent"]
    assert trial["duplicates"] == 0


def test_router_mode_relays_frames_with_latencies(bench_json: dict[str, object]) -> None:
    trial = _latency_trial(bench_json, "crosscast-router")
    assert trial["unique"] > 0
    row = _row(bench_json, "crosscast-router")
    assert isinstance(row["p50_us"], float)
    assert 0 < row["p50_us"] <= row["p99_us"] <= row["max_us"]  # type: ignore[operator]
    assert row["rss_mb"], "the relay's RSS was not measured"
    # At 1,000 pps a relay waits about once per frame (a drain finds one frame); never zero,
    # and a few timers a second add next to nothing.
    waits, preempted = row["waits_1k"], row["preemptions_1k"]
    assert isinstance(waits, list)
    assert isinstance(preempted, list)
    assert len(waits) == len(preempted) == 1
    assert 0.2 <= waits[0] <= 3
    assert 0 <= preempted[0] <= 3


def test_json_has_every_section(bench_json: dict[str, object]) -> None:
    assert {"machine", "settings", "criteria", "rows", "ratios", "targets", "runs"} <= set(
        bench_json
    )
    ratios = bench_json["ratios"]
    assert isinstance(ratios, list)
    router = next(r for r in ratios if r["system"] == "crosscast-router")
    assert router["p50_vs_kernel"] > 0
