"""The soak's pure parts: the peer schedule, the windows, RSS flatness and the verdict."""

from __future__ import annotations

import itertools

import pytest

from crosscast.relay.bench import soak
from crosscast.relay.bench.soak import Exit, Rss


def test_peer_set_changes_every_period() -> None:
    sets = [tuple(soak.peers_at(t, ["a", "b"], ["c", "d", "e"])) for t in range(9)]
    assert all(s[:2] == ("a", "b") for s in sets)
    assert all(x != y for x, y in itertools.pairwise(sets))
    assert sets[0] == ("a", "b")
    assert sets[7] == ("a", "b", "c", "d", "e")


def test_windows_split_frames_by_sequence_number() -> None:
    # 10 pps, 1 s windows, 25 frames: windows of 10, 10 and 5; seq 12 lost, seq 3 twice,
    # seq 30 (sent after the soak) left out.
    seqs = [s for s in range(25) if s != 12] + [3, 30]
    lats = [1000] * len(seqs)
    ws = soak.windows(10, 25, 1.0, seqs, lats)
    assert [w.sent for w in ws] == [10, 10, 5]
    assert [w.lost for w in ws] == [0, 1, 0]
    assert [w.duplicates for w in ws] == [1, 0, 0]


def test_reordering_is_counted_in_its_window() -> None:
    ws = soak.windows(10, 10, 1.0, [0, 2, 1, 3, 4, 5, 6, 7, 8, 9], [5000] * 10)
    assert ws[0].reordered == 1
    assert ws[0].latency is not None
    assert ws[0].latency.p50 == 5.0


def test_rss_reference_is_taken_after_warm_up() -> None:
    rss = soak.rss_summary([30.0, 38.0, 40.0, 41.0, 45.0], warm_up=2)
    assert rss == Rss(start=30.0, reference=40.0, max=45.0, end=45.0)
    assert rss.growth == 5.0
    assert rss.flat


def test_rss_growing_more_than_10_mb_is_not_flat() -> None:
    rss = soak.rss_summary([40.0, 40.0, 55.0], warm_up=1)
    assert rss is not None
    assert not rss.flat


def test_rss_without_samples_is_unknown() -> None:
    assert soak.rss_summary([], warm_up=5) is None


@pytest.mark.parametrize(
    ("status", "seconds", "ok"),
    [(0, 0.3, True), (0, 2.5, False), (1, 0.3, False), (None, 5.0, False), (0, None, False)],
)
def test_exit_is_ok_only_with_status_0_within_2_s(
    status: int | None, seconds: float | None, ok: bool
) -> None:
    assert Exit("r", status, seconds).ok is ok


def _clean() -> tuple[list[soak.Delivery], dict[str, Rss | None], list[Exit]]:
    ws = soak.windows(10, 20, 1.0, list(range(20)), [1000] * 20)
    return ws, {"r": Rss(40.0, 41.0, 42.0, 42.0)}, [Exit("r", 0, 0.2)]


def test_a_clean_soak_has_no_problems() -> None:
    assert soak.problems(*_clean()) == []


def test_loss_rss_growth_a_bad_exit_and_a_death_are_problems() -> None:
    ws = soak.windows(10, 20, 1.0, list(range(19)), [1000] * 19)
    found = soak.problems(
        ws, {"r": Rss(40.0, 41.0, 60.0, 60.0), "s": None}, [Exit("r", 1, 0.2)], ["s"]
    )
    assert len(found) == 5
    assert found[0] == "lost 1 of 20 frames"


def test_metric_sums_the_samples_with_the_labels() -> None:
    samples = [
        {"name": "m", "labels": {"peer": "a"}, "value": 2.0},
        {"name": "m", "labels": {"peer": "b"}, "value": 3.0},
        {"name": "n", "labels": {"peer": "a"}, "value": 7.0},
    ]
    assert soak.metric(samples, "m") == 5.0
    assert soak.metric(samples, "m", peer="b") == 3.0
    assert soak.metric(samples, "x") == 0.0


def _kd(value: float, relay: str = soak.ROUTER) -> dict[str, list[dict[str, object]]]:
    sample = {"name": "crosscast_kernel_drops_total", "labels": {"interface": "br1"}}
    return {relay: [{**sample, "value": value}]}


def test_lost_frames_are_placed_by_what_the_counters_grew() -> None:
    places = soak.loss_places(10, _kd(100.0), _kd(107.0), "10.0.0.2", sink_drops=1)
    assert places["router capture ring"] == 7  # the search's drops before the soak do not count
    assert places["sink socket"] == 1
    assert places["not counted"] == 2
