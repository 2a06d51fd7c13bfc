"""The bench's pure parts: frame stamping, statistics, the rate search, rows, targets, output."""

from __future__ import annotations

import argparse
import json
import random
import re
from array import array
from pathlib import Path

import pytest

from crosscast.net import frames
from crosscast.relay.bench import command, generator, report, sink
from crosscast.relay.bench.report import KERNEL, MESH, ROUTER, SNOWSIGNAL, SizeResult
from crosscast.relay.bench.search import Criteria, RateSearch, generator_bound
from crosscast.relay.bench.stats import Delivery, Latency, analyse, median, percentile

# -- generator frames -------------------------------------------------------------------------


def _stamped(size: int, seq: int, now_ns: int) -> bytes:
    t = generator.build_template("02:00:0a:f1:01:0b", "10.241.1.11", "10.241.1.255", 5076, size)
    buf = bytearray(t.frame)
    generator.stamp(buf, 0, t, run_id=7, seq=seq, now_ns=now_ns)
    return bytes(buf)


@pytest.mark.parametrize("size", [24, 64, 512, 1400])
@pytest.mark.parametrize("seq", [0, 1, 0xFFFF, 2**40 + 12345])
def test_stamped_frame_has_a_valid_udp_checksum(size: int, seq: int) -> None:
    frame = _stamped(size, seq, 1_700_000_000_123_456_789)
    parsed = frames.parse_udp_frame(frame)
    segment = frame[generator.ETH_UDP_OFFSET :]
    expected = frames.udp_checksum(parsed.src_ip, parsed.dst_ip, segment)
    assert segment[6:8] == expected.to_bytes(2, "big")
    assert len(parsed.payload) == size


def test_stamped_checksums_hold_for_many_random_headers() -> None:
    rng = random.Random(8)
    t = generator.build_template("02:00:0a:f1:01:0b", "10.241.1.11", "10.241.1.255", 5076, 64)
    for _ in range(2000):
        buf = bytearray(t.frame)
        generator.stamp(buf, 0, t, rng.getrandbits(32), rng.getrandbits(64), rng.getrandbits(64))
        parsed = frames.parse_udp_frame(bytes(buf))
        segment = buf[generator.ETH_UDP_OFFSET :]
        assert segment[6:8] == frames.udp_checksum(parsed.src_ip, parsed.dst_ip, segment).to_bytes(
            2, "big"
        )


def test_stamped_frame_carries_run_sequence_and_send_time() -> None:
    frame = _stamped(64, 42, 123_456_789)
    magic, run, seq, sent = generator.HEADER.unpack_from(frame, generator.PAYLOAD_OFFSET)
    assert (magic, run, seq, sent) == (generator.MAGIC, 7, 42, 123_456_789)


def test_template_is_an_ethernet_broadcast_to_the_bench_port() -> None:
    parsed = frames.parse_udp_frame(_stamped(64, 0, 0))
    assert parsed.dst_mac == b"\xff" * 6
    assert frames.ip_to_str(parsed.dst_ip) == "10.241.1.255"
    assert parsed.dst_port == 5076


def test_payload_shorter_than_the_header_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 24"):
        generator.build_template("02:00:00:00:00:01", "10.0.0.1", "10.0.0.255", 1, 23)


def test_due_paces_frames_by_elapsed_time_and_caps_at_the_total() -> None:
    assert generator.due(1000, 0.0, 100) == 1
    assert generator.due(1000, 0.0505, 100) == 51
    assert generator.due(1000, 5.0, 100) == 100


# -- sink records -----------------------------------------------------------------------------


def test_records_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "records.bin"
    sink.write_records(path, array("Q", [3, 1, 2]), array("q", [10, -5, 30]))
    seqs, lats = sink.read_records(path)
    assert list(seqs) == [3, 1, 2]
    assert list(lats) == [10, -5, 30]


# -- statistics -------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_analyse_counts_loss_duplicates_and_reordering() -> None:
    seqs = [0, 1, 3, 2, 3, 5]  # 4 lost; 3 twice; 2 after 3
    lats_ns = [1000, 2000, 3000, 4000, 9_000_000, 5000]
    d = analyse(offered_pps=100, sent=6, seconds=1.0, seqs=seqs, latencies_ns=lats_ns)
    assert (d.received, d.unique, d.duplicates, d.reordered, d.lost) == (6, 5, 1, 1, 1)
    assert d.loss == pytest.approx(1 / 6)
    assert d.delivered_pps == pytest.approx(5.0)


def test_latency_counts_only_the_first_copy_of_each_frame() -> None:
    d = analyse(100, 2, 1.0, [0, 0, 1], [1000, 9_000_000, 3000])
    assert d.latency == Latency(p50=1.0, p90=3.0, p99=3.0, max=3.0)


def test_nothing_received_has_no_latency_and_total_loss() -> None:
    d = analyse(100, 50, 0.5, [], [])
    assert d.latency is None
    assert d.loss == 1.0


def test_median_ignores_missing_values() -> None:
    assert median([3.0, None, 1.0, 2.0]) == 2.0
    assert median([None]) is None


# -- search -----------------------------------------------------------------------------------


def _delivery(
    rate: int, *, loss: float = 0.0, p99_us: float = 100.0, sent_share: float = 1.0
) -> Delivery:
    sent = int(rate * sent_share)
    unique = round(sent * (1 - loss))
    lat = Latency(p99_us / 2, p99_us, p99_us, p99_us)
    return Delivery(rate, sent, 1.0, unique, unique, 0, 0, lat)


def test_criteria_need_little_loss_and_a_low_p99() -> None:
    c = Criteria()
    assert c.passes(_delivery(10_000, loss=0.0009, p99_us=10_000))
    assert not c.passes(_delivery(1000, loss=0.001))
    assert not c.passes(_delivery(1000, p99_us=10_001))
    assert not c.passes(Delivery(1000, 1000, 1.0, 0, 0, 0, 0, None))


def test_generator_bound_when_it_sent_clearly_less_than_offered_and_all_arrived() -> None:
    assert generator_bound(_delivery(100_000, sent_share=0.8), passed=True)
    assert not generator_bound(_delivery(100_000, sent_share=0.95), passed=True)


def test_a_failing_system_is_the_limit_even_when_the_generator_fell_short() -> None:
    assert not generator_bound(_delivery(100_000, sent_share=0.8), passed=False)


def _run_search(
    search: RateSearch, capacity: int, stalls: frozenset[int] = frozenset()
) -> list[int]:
    """Run `search` against a system that carries up to `capacity`, except that the first
    trial at each rate in `stalls` fails (a scheduling stall)."""
    tried = []
    while (rate := search.next_rate()) is not None:
        stalled = rate in stalls and rate not in tried
        tried.append(rate)
        search.record(rate, rate <= capacity and not stalled)
    return tried


def test_search_steps_up_then_bisects_to_the_precision() -> None:
    search = RateSearch(start=2000, ceiling=200_000, precision=0.1, max_trials=20)
    tried = _run_search(search, capacity=11_000)
    assert tried[:5] == [2000, 4000, 8000, 16000, 16000]  # a failure is confirmed once
    assert search.best <= 11_000 < search.failed  # type: ignore[operator]
    assert search.failed <= search.best * 1.1  # type: ignore[operator]


def test_one_stalled_trial_does_not_fail_a_rate_the_system_carries() -> None:
    search = RateSearch(start=2000, ceiling=200_000, precision=0.1, max_trials=20)
    tried = _run_search(search, capacity=11_000, stalls=frozenset({4000}))
    assert tried[:4] == [2000, 4000, 4000, 8000]
    assert 10_000 <= search.best <= 11_000


def test_a_rate_fails_only_after_every_attempt_at_it_failed() -> None:
    search = RateSearch(start=1000, ceiling=100_000, attempts=3)
    search.record(1000, True)
    for _ in range(2):
        search.record(2000, False)
        assert search.failed is None
        assert search.next_rate() == 2000
    search.record(2000, False)
    assert search.failed == 2000
    assert search.next_rate() == 1414  # bisecting


def test_search_stops_at_the_ceiling_when_everything_passes() -> None:
    search = RateSearch(start=2000, ceiling=10_000)
    assert _run_search(search, capacity=10**9) == [2000, 4000, 8000, 10_000]
    assert search.best == 10_000


def test_search_steps_down_when_the_first_rate_fails() -> None:
    search = RateSearch(start=8000, ceiling=100_000, precision=0.1, max_trials=20)
    tried = _run_search(search, capacity=1500)
    assert tried[:6] == [8000, 8000, 4000, 4000, 2000, 2000]
    assert 1000 <= search.best <= 1500


def test_search_of_a_dead_system_ends_at_the_floor_with_zero() -> None:
    search = RateSearch(start=800, ceiling=100_000, floor=100)
    _run_search(search, capacity=0)
    assert search.best == 0
    assert search.done


def test_search_ends_when_the_generator_is_the_limit() -> None:
    search = RateSearch(start=50_000, ceiling=400_000)
    search.record(50_000, True)
    search.record(95_000, True, limited=True)
    assert search.done
    assert search.limited
    assert search.best == 95_000


def test_a_failing_trial_the_generator_fell_short_in_ends_the_search_without_a_repeat() -> None:
    search = RateSearch(start=50_000, ceiling=400_000)
    search.record(50_000, True)
    search.record(100_000, False, limited=True)
    assert search.done
    assert search.limited
    assert search.trials == 2
    assert search.best == 50_000


def test_search_respects_its_trial_budget() -> None:
    search = RateSearch(start=100, ceiling=10**9, max_trials=3)
    assert len(_run_search(search, capacity=10**9)) == 3


# -- rows, ratios, targets, output ------------------------------------------------------------


def _result(system: str, size: int, max_pps: int, p50: float, **kw: object) -> SizeResult:
    lat = Delivery(1000, 1000, 1.0, 1000, 1000, 0, 0, Latency(p50, p50 * 2, p50 * 3, p50 * 4))
    return SizeResult(system, size, max_pps, False, (), lat, **kw)  # type: ignore[arg-type]


def _runs() -> list[list[SizeResult]]:
    over = Delivery(40_000, 40_000, 1.0, 19_000, 19_000, 0, 0, Latency(1, 2, 15_000, 30_000))
    relay = {"cpu_us_1k": (20.0,), "cpu_us_max": (6.0,), "rss_mb": (20.0,),
             "overload": over, "rss_mb_overload": (21.0,), "survived": True}  # fmt: skip
    mesh = {**relay, "cpu_us_1k": (25.0, 26.0), "rss_mb": (20.0, 20.0),
            "rss_mb_overload": (20.5, 30.0), "waits_1k": (1.0, 0.99),
            "preemptions_1k": (0.51, 0.0)}  # fmt: skip
    return [
        [
            _result(KERNEL, 64, 100_000, 10.0),
            _result(ROUTER, 64, 20_000, 30.0, **relay),
            _result(MESH, 64, 45_000, 80.0, **mesh),
            _result(SNOWSIGNAL, 64, 5_000, 250.0),
        ],
        [
            _result(KERNEL, 64, 90_000, 12.0),
            _result(ROUTER, 64, 22_000, 50.0, **relay),
            _result(MESH, 64, 35_000, 90.0, **mesh),
            _result(SNOWSIGNAL, 64, 5_000, 250.0),
        ],
    ]


def test_rows_are_the_median_of_the_runs() -> None:
    rows = {r.system: r for r in report.rows_of(_runs())}
    assert rows[ROUTER].max_pps == 21_000
    assert rows[ROUTER].p50_us == 40.0
    assert rows[ROUTER].runs == 2
    assert rows[MESH].cpu_us_1k == (25.0, 26.0)
    assert rows[MESH].waits_1k == (1.0, 0.99)
    assert rows[MESH].preemptions_1k == (0.51, 0.0)


def test_ratios_are_against_snowsignal_and_the_kernel_path_of_the_same_size() -> None:
    by = {x.system: x for x in report.ratios(report.rows_of(_runs()))}
    assert by[MESH].max_vs_snowsignal == pytest.approx(8.0)
    assert by[ROUTER].p50_vs_kernel == pytest.approx(40.0 / 11.0)
    assert by[KERNEL].max_vs_kernel == pytest.approx(1.0)


def test_ratios_without_snowsignal_are_missing_not_zero() -> None:
    rows = report.rows_of([[r for r in _runs()[0] if r.system != SNOWSIGNAL]])
    assert all(x.max_vs_snowsignal is None for x in report.ratios(rows))


def _target(name: str, system: str) -> report.Target:
    found = [t for t in report.targets(report.rows_of(_runs())) if t.system == system]
    return next(t for t in found if t.name.startswith(name))


def test_targets_pass_and_fail_on_the_measured_values() -> None:
    assert _target("mesh usable max >= 8x", MESH).ok is True
    assert _target("router p50 <= 4x", ROUTER).ok is True
    assert _target("router usable max >= 0.5x", ROUTER).ok is False  # 21k of 95k
    assert _target("RSS flat", MESH).ok is False  # 20 -> 30 MB on relay B
    assert _target("overload (2x max): p99", ROUTER).ok is True
    assert _target("overload (2x max): delivered", MESH).ok is False  # 19k of 40k


def test_target_without_a_snowsignal_row_is_not_applicable() -> None:
    rows = report.rows_of([[r for r in _runs()[0] if r.system != SNOWSIGNAL]])
    t = next(t for t in report.targets(rows) if t.name.startswith("mesh usable max >= 8x"))
    assert t.ok is None


def test_table_has_a_line_per_row_with_the_usable_max_and_ratios() -> None:
    table = report.render_table(report.rows_of(_runs()))
    lines = table.splitlines()
    assert len(lines) == 2 + 4
    router = next(line for line in lines if line.startswith("crosscast, router mode"))
    assert "21.0k" in router
    assert "40/80/120/160" in router
    assert "4.20x" in router  # max vs SnowSignal
    column = re.split(r"\s{2,}", lines[0]).index("waits/preempted per frame @1k")
    mesh = next(line for line in lines if line.startswith("crosscast, mesh A+B"))
    assert re.split(r"\s{2,}", mesh)[column] == "1.00/0.51 + 0.99/0.00"  # per relay
    assert re.split(r"\s{2,}", router)[column] == "-"  # not measured


def test_targets_render_one_line_each_with_their_mark() -> None:
    rows = report.rows_of(_runs())
    text = report.render_targets(report.targets(rows))
    assert len(text.splitlines()) == len(report.targets(rows))
    assert any(line.startswith("FAIL") for line in text.splitlines())


def test_json_document_has_rows_ratios_targets_and_every_trial() -> None:
    runs = _runs()
    doc = report.to_json(runs, {"host": "h"}, {"sizes": [64]}, ["a note"])
    json.dumps(doc)  # serialisable as it is
    assert doc["crosscast_bench"] == report.JSON_VERSION
    assert {r["system"] for r in doc["rows"]} == {KERNEL, ROUTER, MESH, SNOWSIGNAL}
    assert len(doc["runs"]) == 2
    latency = doc["runs"][0][1]["latency"]
    assert latency["loss"] == 0.0
    assert latency["delivered_pps"] == 1000.0
    assert doc["criteria"]["max_p99_us"] == 10_000.0
    assert all(isinstance(k, str) for t in doc["targets"] for k in t["values"])


# -- options ----------------------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    return parser.parse_args(["bench", *argv])


def test_quick_plan_is_short_and_options_override_it() -> None:
    quick = command.plan_from(_args("--quick"))
    assert quick.sizes == (64, 1400)
    plan = command.plan_from(_args("--quick", "--sizes", "512", "--max-rate", "3000"))
    assert plan.sizes == (512,)
    assert plan.max_rate == 3000
    assert plan.start_rate == 3000


def test_unknown_system_is_an_error_and_missing_snowsignal_a_note() -> None:
    with pytest.raises(ValueError, match="unknown system"):
        command.systems_from("kernel,bogus", snowsignal=True)
    systems, notes = command.systems_from("kernel,snowsignal", snowsignal=False)
    assert systems == ["kernel"]
    assert "not installed" in notes[0]
