"""Per-frame codec work: parse, duplicate key, classification, rewrite for the egress."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.hotpath import SIZES, frame
from crosscast.net.frames import (
    fingerprint,
    ip_from_str,
    is_multicast,
    mac_from_str,
    parse_udp_frame,
    rewrite_for_egress,
)


@pytest.mark.parametrize("size", SIZES)
def test_parse(benchmark: BenchmarkFixture, size: int) -> None:
    data = frame(size)
    assert benchmark(parse_udp_frame, data).dst_port == 5076


def test_classify(benchmark: BenchmarkFixture) -> None:
    """What the engine asks of every captured frame: its duplicate key and destination kind."""
    f = parse_udp_frame(frame(64))

    def classify() -> tuple[bytes, bool]:
        return fingerprint(f), is_multicast(f.dst_ip)

    assert benchmark(classify)[1] is False


@pytest.mark.parametrize("size", SIZES)
def test_rewrite_for_another_subnet(benchmark: BenchmarkFixture, size: int) -> None:
    f = parse_udp_frame(frame(size))
    mac, dst = mac_from_str("02:cc:00:00:00:02"), ip_from_str("10.0.2.255")
    out = benchmark(rewrite_for_egress, f, src_mac=mac, dst_ip=dst)
    assert parse_udp_frame(out).dst_ip == dst
