"""Unit tests of the mesh wire formats (relay.envelope): pure, no sockets, time passed in."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from crosscast.relay.envelope import (
    CROSSCAST_MAGIC,
    ENVELOPE_ERROR_REASONS,
    HEADER_LEN,
    HOP_LIMIT,
    KIND_BATCH,
    KIND_FRAME,
    KIND_PROBE,
    MAX_PENDING,
    MESH_DATAGRAM_MAX,
    PART_FLAG,
    PART_HOLD,
    TAG_LEN,
    CrosscastCodec,
    Envelope,
    EnvelopeError,
    Part,
    Reassembly,
    SequenceCounter,
    decode_snowsignal,
    encode_snowsignal,
    pack,
    parse_secret,
    split_batch,
)

SECRET = b"correct horse battery staple"
NOW = 1_700_000_000.0  # seconds; every test passes time in explicitly
NOW_MS = int(NOW * 1000)
ORIGIN = 0x0123_4567_89AB_CDEF


def make_frame() -> bytes:
    return bytes(
        Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff")
        / IP(src="10.0.1.5", dst="10.0.1.255")
        / UDP(sport=40000, dport=5076)
        / b"search"
    )


def envelope(seq: int = 0, *, origin: int = ORIGIN, timestamp_ms: int = NOW_MS) -> Envelope:
    return Envelope(
        kind=KIND_FRAME,
        origin=origin,
        seq=seq,
        hops=0,
        timestamp_ms=timestamp_ms,
        body=make_frame(),
    )


def reason_of(codec: CrosscastCodec, data: bytes, now: float = NOW) -> str:
    with pytest.raises(EnvelopeError) as excinfo:
        codec.decode(data, now)
    return excinfo.value.reason


def header(**fields: int) -> bytes:
    """A raw header with defaults that decode, and any field overridden."""
    values = {
        "version": 1,
        "flags": 0,
        "kind": KIND_FRAME,
        "hops": 0,
        "reserved": 0,
        "origin": ORIGIN,
        "seq": 0,
        "timestamp_ms": NOW_MS,
    } | fields
    return struct.pack(
        "!2sBBBBHQQQ",
        CROSSCAST_MAGIC,
        values["version"],
        values["flags"],
        values["kind"],
        values["hops"],
        values["reserved"],
        values["origin"],
        values["seq"],
        values["timestamp_ms"],
    )


# --- round trips -------------------------------------------------------------------------------


def test_round_trip_without_secret() -> None:
    codec = CrosscastCodec(None)
    env = envelope(seq=7)
    assert codec.decode(codec.encode(env), NOW) == env


def test_round_trip_with_secret() -> None:
    codec = CrosscastCodec(SECRET)
    env = envelope(seq=7)
    assert codec.decode(codec.encode(env), NOW) == env


def test_round_trip_of_a_probe_with_an_empty_body() -> None:
    codec = CrosscastCodec(SECRET)
    env = Envelope(KIND_PROBE, ORIGIN, 1, 0, NOW_MS, b"")
    assert codec.decode(codec.encode(env), NOW) == env


@pytest.mark.parametrize("length", [1, 32, 64, 65, 200])
def test_the_tag_is_hmac_sha256_of_header_and_body(length: int) -> None:
    # RFC 2104 as the standard library computes it; a secret longer than SHA-256's 64-byte
    # block is hashed first.
    import hmac

    secret = bytes(range(256))[:length]
    data = CrosscastCodec(secret).encode(envelope())
    assert data[-TAG_LEN:] == hmac.digest(secret, data[:-TAG_LEN], "sha256")


def test_header_is_32_bytes_and_tag_is_appended_only_with_a_secret() -> None:
    env = envelope()
    assert HEADER_LEN == 32
    assert len(CrosscastCodec(None).encode(env)) == HEADER_LEN + len(env.body)
    assert len(CrosscastCodec(SECRET).encode(env)) == HEADER_LEN + len(env.body) + TAG_LEN


def test_encoded_header_matches_the_documented_layout() -> None:
    env = Envelope(KIND_FRAME, origin=ORIGIN, seq=9, hops=2, timestamp_ms=NOW_MS, body=b"x")
    data = CrosscastCodec(None).encode(env)
    assert data == header(seq=9, hops=2) + b"x"


def test_authenticated_property_follows_the_secret() -> None:
    assert CrosscastCodec(SECRET).authenticated
    assert not CrosscastCodec(None).authenticated


def test_sequence_counter_counts_up_from_zero() -> None:
    counter = SequenceCounter()
    assert [counter.next() for _ in range(3)] == [0, 1, 2]


# --- every EnvelopeError reason ----------------------------------------------------------------


def test_every_documented_reason_is_listed() -> None:
    assert set(ENVELOPE_ERROR_REASONS) == {
        "short",
        "bad-magic",
        "bad-version",
        "bad-kind",
        "hop-limit",
        "unauthenticated",
        "unexpected-tag",
        "bad-tag",
        "stale",
        "replay",
        "bad-batch",
    }


def _encoded(secret: bytes | None, **kw: int) -> bytes:
    return CrosscastCodec(secret).encode(envelope(**kw))


# One datagram each, decoded by a fresh codec with `secret` (max_age 30 s): the reason it fails.
REASON_CASES = [
    ("short-header", None, header()[:-1], "short"),
    ("short-tag", SECRET, header(flags=1) + b"\x00" * (TAG_LEN - 1), "short"),
    ("snowsignal", None, encode_snowsignal(make_frame()), "bad-magic"),
    ("version-2", None, header(version=2), "bad-version"),
    ("kind-4", None, header(kind=4), "bad-kind"),
    ("hops-over-limit", None, header(hops=HOP_LIMIT + 1), "hop-limit"),
    ("untagged-with-secret", SECRET, _encoded(None), "unauthenticated"),
    ("tagged-without-secret", None, _encoded(SECRET), "unexpected-tag"),
    ("tagged-with-another-secret", SECRET, _encoded(b"another secret"), "bad-tag"),
    ("too-old", SECRET, _encoded(SECRET, timestamp_ms=NOW_MS - 30_001), "stale"),
    ("too-far-ahead", SECRET, _encoded(SECRET, timestamp_ms=NOW_MS + 30_001), "stale"),
]


@pytest.mark.parametrize(
    ("secret", "data", "reason"), [c[1:] for c in REASON_CASES], ids=[c[0] for c in REASON_CASES]
)
def test_a_bad_datagram_fails_with_its_reason(
    secret: bytes | None, data: bytes, reason: str
) -> None:
    assert reason_of(CrosscastCodec(secret, max_age=30.0), data) == reason


def test_the_reason_table_covers_every_reason_but_replay_and_bad_batch() -> None:
    # replay needs a codec that saw the datagram before, and bad-batch is split_batch's: below
    assert {c[3] for c in REASON_CASES} == set(ENVELOPE_ERROR_REASONS) - {"replay", "bad-batch"}


def test_hops_at_the_limit_is_accepted() -> None:
    assert CrosscastCodec(None).decode(header(hops=HOP_LIMIT), NOW).hops == HOP_LIMIT


def test_flipped_bit_anywhere_is_rejected() -> None:
    data = CrosscastCodec(SECRET).encode(envelope())
    # Bytes 0-5 are checked before the tag (magic, version, flags, kind, hops) and may fail
    # with their own reason; whatever the reason, no flipped datagram may decode.
    reasons = set()
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        reasons.add(reason_of(CrosscastCodec(SECRET), bytes(flipped)))
    assert "bad-tag" in reasons
    assert reasons <= {
        "bad-magic",
        "bad-version",
        "bad-kind",
        "hop-limit",
        "bad-tag",
        "unauthenticated",
    }


def test_flipped_bit_after_the_checked_header_fields_is_bad_tag() -> None:
    data = CrosscastCodec(SECRET).encode(envelope())
    for index in range(6, len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[index] ^= 1 << bit
            assert reason_of(CrosscastCodec(SECRET), bytes(flipped)) == "bad-tag", (index, bit)


def test_timestamp_exactly_max_age_old_is_accepted() -> None:
    codec = CrosscastCodec(SECRET, max_age=30.0)
    codec.decode(codec.encode(envelope(timestamp_ms=NOW_MS - 30_000)), NOW)


def test_unauthenticated_mode_does_no_freshness_check() -> None:
    codec = CrosscastCodec(None)
    env = envelope(timestamp_ms=0)
    assert codec.decode(codec.encode(env), NOW) == env


# --- anti-replay window ------------------------------------------------------------------------


def test_same_datagram_twice_is_replay() -> None:
    codec = CrosscastCodec(SECRET)
    data = codec.encode(envelope(seq=5))
    codec.decode(data, NOW)
    assert reason_of(codec, data) == "replay"


def test_out_of_order_within_the_window_is_accepted() -> None:
    codec = CrosscastCodec(SECRET, window=64)
    for seq in (10, 12, 11, 1, 0):  # 0 is 12 - 12: inside a 64-wide window
        assert codec.decode(codec.encode(envelope(seq)), NOW).seq == seq


def test_replay_of_an_out_of_order_seq_is_rejected() -> None:
    codec = CrosscastCodec(SECRET, window=64)
    for seq in (10, 12, 11):
        codec.decode(codec.encode(envelope(seq)), NOW)
    assert reason_of(codec, codec.encode(envelope(11))) == "replay"


def test_seq_older_than_the_window_is_replay() -> None:
    codec = CrosscastCodec(SECRET, window=64)
    codec.decode(codec.encode(envelope(100)), NOW)
    assert reason_of(codec, codec.encode(envelope(100 - 64))) == "replay"


def test_oldest_seq_inside_the_window_is_accepted() -> None:
    codec = CrosscastCodec(SECRET, window=64)
    codec.decode(codec.encode(envelope(100)), NOW)
    codec.decode(codec.encode(envelope(100 - 63)), NOW)


def test_window_slides_past_a_big_jump() -> None:
    codec = CrosscastCodec(SECRET, window=64)
    codec.decode(codec.encode(envelope(1)), NOW)
    codec.decode(codec.encode(envelope(1000)), NOW)
    assert reason_of(codec, codec.encode(envelope(2))) == "replay"
    codec.decode(codec.encode(envelope(999)), NOW)


def test_replay_windows_are_per_origin() -> None:
    codec = CrosscastCodec(SECRET)
    codec.decode(codec.encode(envelope(5, origin=1)), NOW)
    codec.decode(codec.encode(envelope(5, origin=2)), NOW)


def test_forged_huge_seq_does_not_advance_the_window() -> None:
    codec = CrosscastCodec(SECRET, window=64)
    codec.decode(codec.encode(envelope(10)), NOW)
    forged = CrosscastCodec(b"attacker").encode(envelope(2**64 - 1))
    assert reason_of(codec, forged) == "bad-tag"
    # Had the forgery moved the window, seq 11 would now be far too old.
    assert codec.decode(codec.encode(envelope(11)), NOW).seq == 11


def test_stale_datagram_does_not_advance_the_window() -> None:
    codec = CrosscastCodec(SECRET, window=64)
    codec.decode(codec.encode(envelope(10)), NOW)
    stale = codec.encode(envelope(10_000, timestamp_ms=NOW_MS - 60_000))
    assert reason_of(codec, stale) == "stale"
    assert codec.decode(codec.encode(envelope(11)), NOW).seq == 11


def test_unauthenticated_mode_does_no_replay_check() -> None:
    codec = CrosscastCodec(None)
    data = codec.encode(envelope(5))
    codec.decode(data, NOW)
    assert codec.decode(data, NOW).seq == 5


def test_origin_table_is_bounded() -> None:
    codec = CrosscastCodec(SECRET, max_origins=16)
    for origin in range(100):
        codec.decode(codec.encode(envelope(0, origin=origin)), NOW)
    assert codec.tracked_origins == 16


def test_origin_state_is_kept_while_its_datagrams_can_still_be_fresh() -> None:
    codec = CrosscastCodec(SECRET, max_age=30.0)
    # Sender's clock 30 s ahead: this datagram stays fresh until NOW + 60 s.
    data = codec.encode(envelope(5, timestamp_ms=NOW_MS + 30_000))
    codec.decode(data, NOW)
    codec.decode(codec.encode(envelope(0, origin=99, timestamp_ms=NOW_MS + 59_000)), NOW + 59.0)
    assert reason_of(codec, data, now=NOW + 59.0) == "replay"


def test_origins_not_heard_for_twice_max_age_are_evicted() -> None:
    codec = CrosscastCodec(SECRET, max_age=30.0)
    codec.decode(codec.encode(envelope(0, origin=1)), NOW)
    later = NOW + 61.0
    codec.decode(codec.encode(envelope(0, origin=2, timestamp_ms=int(later * 1000))), later)
    assert codec.tracked_origins == 1


# --- SnowSignal --------------------------------------------------------------------------------


def test_snowsignal_round_trip_with_a_frame() -> None:
    frame = make_frame()
    data = encode_snowsignal(frame)
    assert data[:2] == b"SS"
    assert decode_snowsignal(data) == frame


def test_snowsignal_without_magic_is_bad_magic() -> None:
    with pytest.raises(EnvelopeError, match="bad-magic"):
        decode_snowsignal(b"CX" + make_frame())


def test_snowsignal_magic_alone_is_short() -> None:
    with pytest.raises(EnvelopeError, match="short"):
        decode_snowsignal(b"SS")


# --- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("contents", "secret"),
    [
        (b"s3cret", b"s3cret"),
        (b"s3cret\n", b"s3cret"),
        (b"s3cret\r\n", b"s3cret"),
        (b"s3cret\n\n", b"s3cret\n"),  # only one newline is the editor's
        (b" s3cret ", b" s3cret "),
    ],
)
def test_parse_secret_strips_one_trailing_newline(contents: bytes, secret: bytes) -> None:
    assert parse_secret(contents) == secret


@pytest.mark.parametrize("contents", [b"", b"\n", b"\r\n"])
def test_an_empty_secret_is_a_clear_error(contents: bytes) -> None:
    with pytest.raises(ValueError, match="is empty"):
        parse_secret(contents)


# -- batches ----------------------------------------------------------------------------------


def frames_of(sizes: list[int]) -> list[bytes]:
    return [bytes([i]) * n for i, n in enumerate(sizes, 1)]


def unpacked(bodies: list[tuple[int, bytes]], origin: int = ORIGIN) -> list[bytes]:
    """What a receiver makes of `bodies`: the frames, parts put back together, in order."""
    parts, out = Reassembly(), []
    for kind, body in bodies:
        if kind == KIND_FRAME:
            out.append(body)
            continue
        for entry in split_batch(body):
            frame = parts.add(origin, entry, NOW) if isinstance(entry, tuple) else entry
            if frame is not None:
                out.append(frame)
    return out


def test_frames_share_a_batch_while_it_fits_and_keep_their_order() -> None:
    frames = frames_of([100] * 30)
    bodies, _ = pack(frames, 1000, 0)
    assert [kind for kind, _ in bodies] == [KIND_BATCH] * 4
    assert all(len(body) <= 1000 for _, body in bodies)
    assert unpacked(bodies) == frames


def test_a_lone_frame_goes_as_a_frame_and_a_frame_that_fits_is_never_cut() -> None:
    small, big = frames_of([60, 990])
    assert pack([small], 1000, 0) == ([(KIND_FRAME, small)], 0)
    bodies, next_id = pack([small, big, small], 1000, 0)
    assert bodies == [(KIND_FRAME, small), (KIND_FRAME, big), (KIND_FRAME, small)]
    assert next_id == 0  # no frame was cut


def test_frames_too_large_for_a_datagram_are_cut_into_parts_that_fill_each_datagram() -> None:
    frames = frames_of([1442] * 20)
    bodies, next_id = pack(frames, 1390, 65530)
    assert next_id == (65530 + 20) & 0xFFFF  # one id per cut frame, wrapping
    assert all(kind == KIND_BATCH and len(body) <= 1390 for kind, body in bodies)
    assert len(bodies) == 21  # not 40: the tail of one frame shares a datagram with the next
    assert unpacked(bodies) == frames


def test_a_lone_large_frame_takes_two_datagrams_and_small_ones_fill_the_second() -> None:
    big, small = frames_of([1442, 100])
    bodies, _ = pack([big, small], 1390, 7)
    assert len(bodies) == 2
    part, frame = split_batch(bodies[1][1])
    assert isinstance(part, tuple)
    assert part[:3] == (7, 1382, 1442)
    assert frame == small
    assert unpacked(bodies) == [big, small]


def test_a_budget_too_small_for_a_part_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot carry a part"):
        pack(frames_of([100]), 60, 0)


def test_a_batch_datagram_stays_within_the_mesh_bound_with_a_tag() -> None:
    codec = CrosscastCodec(SECRET)
    frames = frames_of([106] * 40 + [1442] * 3)
    bodies, _ = pack(frames, MESH_DATAGRAM_MAX - codec.overhead, 0)
    datagrams = [
        codec.seal(kind, ORIGIN, seq, 0, NOW_MS, body) for seq, (kind, body) in enumerate(bodies)
    ]
    assert all(len(d) <= MESH_DATAGRAM_MAX for d in datagrams)
    assert MESH_DATAGRAM_MAX - len(datagrams[0]) < 108  # as full as 106-byte frames allow
    decoded = [CrosscastCodec(SECRET).decode(d, NOW) for d in datagrams]
    assert unpacked([(env.kind, env.body) for env in decoded]) == frames


def part_entry(frame_id: int, offset: int, total: int, data: bytes) -> bytes:
    return struct.pack("!HHHH", PART_FLAG | (6 + len(data)), frame_id, offset, total) + data


@pytest.mark.parametrize(
    "body",
    [
        part_entry(1, 0, 4, b"abc")[:-1],  # truncated
        part_entry(1, 2, 4, b"abc"),  # overruns its total
        struct.pack("!HHHH", PART_FLAG | 6, 1, 0, 4),  # no data
    ],
    ids=["truncated", "overrun", "empty"],
)
def test_a_part_that_does_not_add_up_is_a_bad_batch(body: bytes) -> None:
    with pytest.raises(EnvelopeError) as info:
        split_batch(body)
    assert info.value.reason == "bad-batch"


def test_reassembly_puts_parts_together_in_any_order_and_ignores_a_repeat() -> None:
    r = Reassembly()
    assert r.add(ORIGIN, (3, 4, 10, b"efghij"), NOW) is None
    assert r.add(ORIGIN, (3, 4, 10, b"efghij"), NOW) is None
    assert r.add(ORIGIN + 1, (3, 0, 10, b"ABCD"), NOW) is None  # another origin's frame 3
    assert r.add(ORIGIN, (3, 0, 10, b"abcd"), NOW) == b"abcdefghij"
    assert r.add(ORIGIN + 1, (3, 4, 10, b"EFGHIJ"), NOW) == b"ABCDEFGHIJ"
    assert (r.overflowed, r.contradicted) == (0, 0)


@pytest.mark.parametrize(
    "second",
    [(3, 4, 11, b"efghij"), (3, 2, 10, b"cdefghij")],
    ids=["other-total", "overlap"],
)
def test_parts_that_contradict_each_other_drop_the_frame(second: Part) -> None:
    r = Reassembly()
    assert r.add(ORIGIN, (3, 0, 10, b"abcd"), NOW) is None
    assert r.add(ORIGIN, second, NOW) is None
    assert r.contradicted == 1
    assert r.expire(NOW + 10) == 0  # nothing left held


def test_reassembly_is_bounded_in_count_and_time() -> None:
    r = Reassembly()
    for i in range(MAX_PENDING + 5):
        assert r.add(ORIGIN, (i, 0, 100, b"x" * 50), NOW + i * 0.001) is None
    assert r.overflowed == 5  # the oldest gave way
    assert r.add(ORIGIN, (0, 50, 100, b"y" * 50), NOW) is None  # frame 0 is gone: held anew
    assert r.expire(NOW + PART_HOLD - 0.01) == 0
    assert r.expire(NOW + PART_HOLD + 1) == MAX_PENDING


@pytest.mark.parametrize(
    "body",
    [b"", b"\x00", b"\x00\x00", b"\x00\x05abc", b"\x00\x01a\x00", b"\x00\x01a\x00\x02b"],
    ids=["empty", "half-length", "zero-length", "truncated", "trailing-byte", "short-last"],
)
def test_a_batch_whose_lengths_do_not_add_up_is_refused(body: bytes) -> None:
    with pytest.raises(EnvelopeError) as info:
        split_batch(body)
    assert info.value.reason == "bad-batch"
