"""The engine's cost per frame: capture -> emit (router), capture -> mesh, mesh -> emit."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.hotpath import (
    ROUNDS,
    SECRET,
    SIZES,
    clock,
    distinct_frames,
    mesh_relay,
    router_relay,
)
from crosscast.relay.engine import Output, Relay

Args = tuple[tuple[str, bytes, float], dict[str, object]]


def _capture(benchmark: BenchmarkFixture, relay: Relay, iface: str, size: int) -> list[Output]:
    """Time on_capture of a drain of one distinct frame (built outside the timing); the last
    round's output."""
    frames, now = distinct_frames(size), clock()
    last: list[Output] = []

    def fresh() -> Args:
        return (iface, next(frames), next(now)), {}

    def capture(iface: str, data: bytes, t: float) -> None:
        last[:] = [relay.on_capture(iface, [(data, 0)], t)]

    benchmark.pedantic(  # type: ignore[no-untyped-call]  # pytest-benchmark is untyped
        capture, setup=fresh, rounds=ROUNDS
    )
    return last


@pytest.mark.parametrize("size", SIZES)
def test_on_capture_router_mode(benchmark: BenchmarkFixture, size: int) -> None:
    (out,) = _capture(benchmark, router_relay(), "br1", size)
    assert [egress for egress, _ in out.emits] == ["br2"]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("secret", [None, SECRET], ids=["open", "secret"])
def test_on_capture_to_mesh(benchmark: BenchmarkFixture, size: int, secret: bytes | None) -> None:
    (out,) = _capture(benchmark, mesh_relay(1, secret), "eth0", size)
    # A frame over the mesh budget (the 1400-byte payload) leaves as two IPv4 fragments.
    assert len(out.datagrams) == (1 if size < 1300 else 2)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("secret", [None, SECRET], ids=["open", "secret"])
def test_on_mesh_to_emit(benchmark: BenchmarkFixture, size: int, secret: bytes | None) -> None:
    sender, receiver = mesh_relay(1, secret), mesh_relay(2, secret)
    times, frames = clock(), distinct_frames(size)

    def fresh() -> tuple[tuple[list[tuple[bytes, bool]], float], dict[str, object]]:
        # A distinct frame from the sending relay each round (a new envelope sequence number).
        now = next(times)
        datagrams = sender.on_capture("eth0", [(next(frames), 0)], now).datagrams
        return ([(datagram, False) for datagram in datagrams], now), {}

    benchmark.pedantic(  # type: ignore[no-untyped-call]  # pytest-benchmark is untyped
        receiver.on_mesh, setup=fresh, rounds=ROUNDS
    )
