"""Rule matching: the egress for one (ingress, destination, port, source)."""

from __future__ import annotations

from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.hotpath import PORT, router_rules
from crosscast.net.frames import ip_from_str


def test_match(benchmark: BenchmarkFixture) -> None:
    table = router_rules()
    dst, src = ip_from_str("10.0.1.255"), ip_from_str("10.0.1.11")
    egress, _rules = benchmark(table.egress_for, "br1", dst, PORT, src, is_broadcast=True)
    assert list(egress) == ["br2"]


def test_no_match(benchmark: BenchmarkFixture) -> None:
    table = router_rules()
    dst, src = ip_from_str("10.0.1.255"), ip_from_str("10.0.1.11")
    egress, _rules = benchmark(table.egress_for, "br1", dst, PORT + 1, src, is_broadcast=True)
    assert not egress
