"""Mesh envelopes: seal (encode) and open (decode), open and with a secret."""

from __future__ import annotations

import itertools

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.hotpath import ROUNDS, SECRET, SIZES, frame
from crosscast.relay.envelope import (
    KIND_FRAME,
    CrosscastCodec,
    Envelope,
    decode_snowsignal,
    encode_snowsignal,
)

NOW = 1_800_000_000.0
SECRETS = {"open": None, "secret": SECRET}


def _envelope(size: int, seq: int) -> Envelope:
    return Envelope(
        kind=KIND_FRAME, origin=7, seq=seq, hops=0, timestamp_ms=int(NOW * 1000), body=frame(size)
    )


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("mode", SECRETS)
def test_seal(benchmark: BenchmarkFixture, size: int, mode: str) -> None:
    codec = CrosscastCodec(SECRETS[mode])
    env = _envelope(size, 1)
    assert benchmark(codec.encode, env)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("mode", SECRETS)
def test_open(benchmark: BenchmarkFixture, size: int, mode: str) -> None:
    sender, receiver = CrosscastCodec(SECRETS[mode]), CrosscastCodec(SECRETS[mode])
    seqs = itertools.count(1)

    def fresh() -> tuple[tuple[bytes, float], dict[str, object]]:
        # A new sequence number each round: an authenticated codec rejects replays.
        return (sender.encode(_envelope(size, next(seqs))), NOW), {}

    benchmark.pedantic(  # type: ignore[no-untyped-call]  # pytest-benchmark is untyped
        receiver.decode, setup=fresh, rounds=ROUNDS
    )


def test_snowsignal_format(benchmark: BenchmarkFixture) -> None:
    data = frame(512)
    assert benchmark(lambda: decode_snowsignal(encode_snowsignal(data))) == data
