"""Per-frame codec work on the hot path: validation by offsets, full parse (the slow path and
mesh input), and the incremental rewrite for the egress."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.hotpath import SIZES, frame
from crosscast.net.frames import (
    checksum_delta,
    ip_from_str,
    mac_from_str,
    parse_udp_frame,
    rewrite_incremental,
    udp_offset,
)


@pytest.mark.parametrize("size", SIZES)
def test_validate_by_offsets(benchmark: BenchmarkFixture, size: int) -> None:
    data = frame(size)
    assert benchmark(udp_offset, data)[1] == 34


@pytest.mark.parametrize("size", SIZES)
def test_parse(benchmark: BenchmarkFixture, size: int) -> None:
    data = frame(size)
    assert benchmark(parse_udp_frame, data).dst_port == 5076


@pytest.mark.parametrize("size", SIZES)
def test_rewrite_for_another_subnet(benchmark: BenchmarkFixture, size: int) -> None:
    data, u = udp_offset(frame(size))
    old, new = ip_from_str("10.0.1.255"), ip_from_str("10.0.2.255")
    macs = b"\xff" * 6 + mac_from_str("02:cc:00:00:00:02")
    out = benchmark(
        rewrite_incremental, data, u, macs, new.to_bytes(4, "big"), checksum_delta(old, new)
    )
    assert parse_udp_frame(bytes(out)).dst_ip == new
