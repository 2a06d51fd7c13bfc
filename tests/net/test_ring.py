"""Unit tests of crosscast.net.ring: the slot codec, the geometry rules, and the drain / queue
logic over an anonymous mapping laid out as the kernel lays out a ring (no socket, no root)."""

from __future__ import annotations

import mmap
import struct

import pytest

from crosscast.net.ring import (
    HEADER,
    PAGE_SIZE,
    RX_DATA_OFFSET,
    TP_STATUS_AVAILABLE,
    TP_STATUS_CSUMNOTREADY,
    TP_STATUS_KERNEL,
    TP_STATUS_SEND_REQUEST,
    TP_STATUS_USER,
    TP_STATUS_VLAN_VALID,
    TPACKET2_HDRLEN,
    TX_DATA_OFFSET,
    Geometry,
    RxRing,
    TxRing,
    ring_geometry,
)

PACKET_BROADCAST = 1  # linux/if_packet.h (sll_pkttype)
PACKET_OTHERHOST = 3
SMALL = ring_geometry(8, frame_size=2048, block_size=PAGE_SIZE)


def write_slot(
    m: mmap.mmap,
    geometry: Geometry,
    index: int,
    frame: bytes,
    *,
    status: int = TP_STATUS_USER,
    snaplen: int | None = None,
    tci: int = 0,
    pkttype: int = PACKET_BROADCAST,
    sec: int = 0,
    nsec: int = 0,
) -> None:
    """Fill slot `index` as tpacket_rcv does: tpacket2_hdr, sockaddr_ll, the frame at tp_mac."""
    off = index * geometry.frame_size
    snap = len(frame) if snaplen is None else snaplen
    hdr = struct.pack(
        "=IIIHHIIHH4x", status, len(frame), snap, RX_DATA_OFFSET, RX_DATA_OFFSET + 14,
        sec, nsec, tci, 0x8100 if tci else 0,
    )  # fmt: skip
    sll = struct.pack("=HHiHBB8s", 17, 0x0300, 2, 1, pkttype, 6, b"\x02" * 6)
    m[off : off + 32] = hdr
    m[off + 32 : off + 52] = sll
    m[off + RX_DATA_OFFSET : off + RX_DATA_OFFSET + snap] = frame[:snap]


def status_of(m: mmap.mmap, geometry: Geometry, index: int) -> int:
    value: int = struct.unpack_from("=I", m, index * geometry.frame_size)[0]
    return value


def frame_no(n: int, size: int = 60) -> bytes:
    return b"\xff" * 6 + b"\x02" * 6 + b"\x88\xb5" + n.to_bytes(4, "big") + bytes(size - 18)


@pytest.fixture
def rx() -> RxRing:
    return RxRing(mmap.mmap(-1, SMALL.size), SMALL)


# --- the slot layout ----------------------------------------------------------------------------


def test_header_offsets_are_the_kernels() -> None:
    # TPACKET2_HDRLEN = TPACKET_ALIGN(sizeof(struct tpacket2_hdr)) + sizeof(struct sockaddr_ll)
    assert TPACKET2_HDRLEN == 52
    # tpacket_rcv: netoff = TPACKET_ALIGN(52 + 16) = 80, macoff = netoff - 14
    assert RX_DATA_OFFSET == 66
    # tpacket_fill: data = slot + tp_hdrlen - sizeof(struct sockaddr_ll)
    assert TX_DATA_OFFSET == 32
    # the header unpack ends at sll_pkttype: 32 (tpacket2_hdr) + 10 (family..hatype) + 1
    assert HEADER.size == 43


def test_header_parses_every_field_of_a_synthetic_slot() -> None:
    m = mmap.mmap(-1, SMALL.size)
    status = TP_STATUS_USER | TP_STATUS_VLAN_VALID
    write_slot(m, SMALL, 0, frame_no(7), tci=(5 << 13) | 42, pkttype=PACKET_OTHERHOST,
               sec=1_700_000_000, nsec=123_456_789, status=status)  # fmt: skip
    fields = HEADER.unpack_from(m, 0)
    assert fields == (
        TP_STATUS_USER | TP_STATUS_VLAN_VALID, 60, 60, 66, 80,
        1_700_000_000, 123_456_789, (5 << 13) | 42, 0x8100, PACKET_OTHERHOST,
    )  # fmt: skip


# --- geometry -------------------------------------------------------------------------------------


def test_geometry_rounds_frames_up_to_whole_blocks() -> None:
    g = ring_geometry(1000, frame_size=2048, block_size=4 * PAGE_SIZE)
    per_block = 4 * PAGE_SIZE // 2048
    assert g.frame_nr == -(-1000 // per_block) * per_block
    assert g.frame_nr >= 1000
    assert g.block_nr * g.frames_per_block == g.frame_nr
    assert g.size == g.block_nr * g.block_size


def test_geometry_request_is_a_tpacket_req() -> None:
    g = ring_geometry(16, frame_size=2048, block_size=PAGE_SIZE)
    per_block = PAGE_SIZE // 2048
    assert struct.unpack("=IIII", g.request()) == (PAGE_SIZE, 16 // per_block, 2048, 16)


def test_default_slot_holds_a_tagged_1500_mtu_frame() -> None:
    assert ring_geometry(1).rx_capacity >= 1514 + 4
    assert ring_geometry(1).tx_capacity >= 1514 + 4


@pytest.mark.parametrize(
    ("frames", "frame_size", "block_size"),
    [
        (0, 2048, PAGE_SIZE),  # no frames
        (8, 2000, PAGE_SIZE),  # not a multiple of TPACKET_ALIGNMENT
        (8, 64, PAGE_SIZE),  # too small for the header and an Ethernet header
        (8, 2048, PAGE_SIZE + 512),  # block not page aligned
        (8, 3072, 4 * PAGE_SIZE),  # block not a multiple of the frame: slots would not be i*size
    ],
)
def test_geometry_the_kernel_would_refuse_is_refused(
    frames: int, frame_size: int, block_size: int
) -> None:
    with pytest.raises(ValueError, match=r"frame|block"):
        ring_geometry(frames, frame_size=frame_size, block_size=block_size)


# --- drain ----------------------------------------------------------------------------------------


def test_drain_returns_ready_frames_in_order_with_their_metadata(rx: RxRing) -> None:
    m = rx._map
    write_slot(m, SMALL, 0, frame_no(0), pkttype=PACKET_BROADCAST, sec=5, nsec=6)
    write_slot(m, SMALL, 1, frame_no(1, 1514), status=TP_STATUS_USER | TP_STATUS_CSUMNOTREADY,
               pkttype=PACKET_OTHERHOST, tci=0)  # fmt: skip
    got = rx.drain()
    assert got == [
        (frame_no(0), TP_STATUS_USER, 0, PACKET_BROADCAST, 5, 6),
        (frame_no(1, 1514), TP_STATUS_USER | TP_STATUS_CSUMNOTREADY, 0, PACKET_OTHERHOST, 0, 0),
    ]
    assert all(isinstance(f[0], bytes) for f in got)


def test_drain_hands_every_slot_it_read_back_to_the_kernel(rx: RxRing) -> None:
    for i in range(3):
        write_slot(rx._map, SMALL, i, frame_no(i))
    rx.drain()
    assert [status_of(rx._map, SMALL, i) for i in range(3)] == [TP_STATUS_KERNEL] * 3


def test_drain_stops_at_the_first_slot_still_the_kernels(rx: RxRing) -> None:
    write_slot(rx._map, SMALL, 0, frame_no(0))
    write_slot(rx._map, SMALL, 2, frame_no(2))  # slot 1 is empty: slot 2 is not reached
    assert [f[0] for f in rx.drain()] == [frame_no(0)]
    assert status_of(rx._map, SMALL, 2) == TP_STATUS_USER


def test_drain_of_an_empty_ring_is_empty(rx: RxRing) -> None:
    assert rx.drain() == []


def test_drain_wraps_around_the_ring(rx: RxRing) -> None:
    seen = []
    for n in range(3 * SMALL.frame_nr + 3):  # the kernel writes slot n % frame_nr
        write_slot(rx._map, SMALL, n % SMALL.frame_nr, frame_no(n))
        if n % 5 == 4:
            seen += [f[0] for f in rx.drain()]
    seen += [f[0] for f in rx.drain()]
    assert seen == [frame_no(n) for n in range(3 * SMALL.frame_nr + 3)]


def test_drain_takes_at_most_limit_frames_and_resumes_after_them(rx: RxRing) -> None:
    for i in range(5):
        write_slot(rx._map, SMALL, i, frame_no(i))
    assert [f[0] for f in rx.drain(limit=2)] == [frame_no(0), frame_no(1)]
    assert [f[0] for f in rx.drain()] == [frame_no(2), frame_no(3), frame_no(4)]


def test_a_full_ring_is_drained_in_one_call(rx: RxRing) -> None:
    for i in range(SMALL.frame_nr):
        write_slot(rx._map, SMALL, i, frame_no(i))
    assert len(rx.drain()) == SMALL.frame_nr
    assert rx.drain() == []


def test_truncated_frame_is_skipped_counted_and_released(rx: RxRing) -> None:
    write_slot(rx._map, SMALL, 0, frame_no(0, 4000), snaplen=SMALL.rx_capacity)
    write_slot(rx._map, SMALL, 1, frame_no(1))
    assert [f[0] for f in rx.drain()] == [frame_no(1)]
    assert rx.truncated == 1
    assert status_of(rx._map, SMALL, 0) == TP_STATUS_KERNEL


def test_slot_not_ready_while_its_successor_is_is_waited_for_once(rx: RxRing) -> None:
    write_slot(rx._map, SMALL, 1, frame_no(1))  # slot 0 still being copied by another CPU
    assert rx.drain() == []
    write_slot(rx._map, SMALL, 0, frame_no(0))
    assert [f[0] for f in rx.drain()] == [frame_no(0), frame_no(1)]
    assert rx.skipped == 0


def test_slot_the_kernel_moved_past_for_good_is_skipped(rx: RxRing) -> None:
    write_slot(rx._map, SMALL, 1, frame_no(1))
    write_slot(rx._map, SMALL, 2, frame_no(2))
    assert rx.drain() == []
    assert [f[0] for f in rx.drain()] == [frame_no(1), frame_no(2)]
    assert rx.skipped == 1


def test_ring_without_a_socket_has_no_fileno(rx: RxRing) -> None:
    with pytest.raises(ValueError, match="no socket"):
        rx.fileno()


# --- queue (TX) -----------------------------------------------------------------------------------


@pytest.fixture
def tx() -> TxRing:
    return TxRing(mmap.mmap(-1, SMALL.size), SMALL)


def test_queue_writes_the_frame_where_the_kernel_reads_it(tx: TxRing) -> None:
    assert tx.queue(frame_no(3, 100))
    m, size = tx._map, SMALL.frame_size
    status, length, snaplen = struct.unpack_from("=III", m, 0)
    assert (status, length, snaplen) == (TP_STATUS_SEND_REQUEST, 100, 100)
    assert m[TX_DATA_OFFSET : TX_DATA_OFFSET + 100] == frame_no(3, 100)
    assert tx.queue(frame_no(4))
    assert m[size + TX_DATA_OFFSET : size + TX_DATA_OFFSET + 60] == frame_no(4)
    assert tx.pending == 2


def test_queue_refuses_when_every_slot_is_in_flight(tx: TxRing) -> None:
    for i in range(SMALL.frame_nr):
        assert tx.queue(frame_no(i))
    assert not tx.queue(frame_no(99))
    assert tx.full == 1
    struct.pack_into("=I", tx._map, 0, TP_STATUS_AVAILABLE)  # the kernel sent slot 0
    assert tx.queue(frame_no(99))


@pytest.mark.parametrize("length", [13, SMALL.tx_capacity + 1])
def test_queue_refuses_a_frame_of_impossible_length(tx: TxRing, length: int) -> None:
    assert not tx.queue(bytes(length))
    assert tx.rejected == 1
    assert tx.pending == 0


def test_flush_with_nothing_queued_makes_no_call(tx: TxRing) -> None:
    assert tx.flush() == 0  # no socket: a call would raise


def test_reserve_and_commit_queue_a_frame_written_in_place(tx: TxRing) -> None:
    at = tx.reserve()
    assert at == TX_DATA_OFFSET
    assert status_of(tx._map, SMALL, 0) == TP_STATUS_AVAILABLE  # nothing handed over yet
    tx.mapping[at : at + 60] = frame_no(5)
    tx.commit(60)
    assert struct.unpack_from("=III", tx._map, 0) == (TP_STATUS_SEND_REQUEST, 60, 60)
    assert tx.reserve() == SMALL.frame_size + TX_DATA_OFFSET
    assert tx.pending == 1


def test_reserve_while_the_kernel_owns_the_slot_is_none_and_counted(tx: TxRing) -> None:
    for _ in range(SMALL.frame_nr):
        tx.commit(60)
    assert tx.reserve() is None
    assert tx.full == 1


def test_fill_copies_the_frame_into_every_slot(tx: TxRing) -> None:
    tx.fill(frame_no(8, 100))
    for i in range(SMALL.frame_nr):
        start = i * SMALL.frame_size + TX_DATA_OFFSET
        assert tx._map[start : start + 100] == frame_no(8, 100)
        assert status_of(tx._map, SMALL, i) == TP_STATUS_AVAILABLE


@pytest.mark.parametrize("length", [13, SMALL.tx_capacity + 1])
def test_fill_refuses_a_frame_of_impossible_length(tx: TxRing, length: int) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        tx.fill(bytes(length))


def test_an_old_wait_does_not_make_a_later_slot_skipped(rx: RxRing) -> None:
    write_slot(rx._map, SMALL, 1, frame_no(1))
    assert rx.drain() == []  # waiting on slot 0
    write_slot(rx._map, SMALL, 0, frame_no(0))
    for n in range(2, SMALL.frame_nr):
        write_slot(rx._map, SMALL, n, frame_no(n))
    assert len(rx.drain()) == SMALL.frame_nr  # a whole turn: back at slot 0
    write_slot(rx._map, SMALL, 1, frame_no(1))  # slot 0 is slow again
    assert rx.drain() == []
    assert rx.skipped == 0


def test_an_old_frame_is_relayed_unless_the_reader_is_behind_a_backlog(rx: RxRing) -> None:
    write_slot(rx._map, SMALL, 0, frame_no(0), sec=100, nsec=0)
    assert [f[0] for f in rx.drain(oldest=100.5)] == [frame_no(0)]  # woken late, nothing after
    write_slot(rx._map, SMALL, 1, frame_no(1), sec=100, nsec=0)
    assert [f[0] for f in rx.drain(oldest=100.5)] == [frame_no(1)]  # late again: still relayed
    write_slot(rx._map, SMALL, 2, frame_no(2), sec=100, nsec=0)
    write_slot(rx._map, SMALL, 3, frame_no(3), sec=100, nsec=100)
    write_slot(rx._map, SMALL, 4, frame_no(4), sec=100, nsec=600_000_000)
    assert [f[0] for f in rx.drain(1, oldest=100.5)] == [frame_no(2)]  # late, and more ready
    assert [f[0] for f in rx.drain(oldest=100.5)] == [frame_no(4)]  # behind: 3 dropped
    assert rx.late == 1
    assert status_of(rx._map, SMALL, 3) == TP_STATUS_KERNEL
    assert rx.drain(oldest=100.5) == []  # caught up
    write_slot(rx._map, SMALL, 5, frame_no(5), sec=100, nsec=0)
    assert [f[0] for f in rx.drain(oldest=100.5)] == [frame_no(5)]  # late once more: relayed
