"""The capture's ring geometry per interface (pure: no socket)."""

from __future__ import annotations

import pytest

from crosscast.net.ring import DEFAULT_RX_GEOMETRY, RX_DATA_OFFSET
from crosscast.relay.capture import PROBE_SLOTS, RING_BYTES, ring_for


def test_a_1500_byte_interface_gets_the_default_ring() -> None:
    assert ring_for(1500) == DEFAULT_RX_GEOMETRY
    assert DEFAULT_RX_GEOMETRY.size == RING_BYTES


@pytest.mark.parametrize("mtu", [1500, 9000, 65535])
def test_every_slot_holds_a_whole_tagged_frame(mtu: int) -> None:
    assert ring_for(mtu).frame_size >= RX_DATA_OFFSET + 14 + 4 + mtu


def test_a_jumbo_interface_gets_fewer_larger_slots_in_the_same_memory() -> None:
    ring = ring_for(9000)
    assert ring.frame_nr < DEFAULT_RX_GEOMETRY.frame_nr
    assert ring.size == RING_BYTES


@pytest.mark.parametrize("mtu", [1500, 9000])
def test_an_interface_only_probes_arrive_on_gets_a_small_ring(mtu: int) -> None:
    small, full = ring_for(mtu, probes_only=True), ring_for(mtu)
    assert small.frame_nr == PROBE_SLOTS
    assert small.size * 32 <= full.size
    # A probe (an envelope with a tag, well under 200 bytes) fits a slot whole.
    assert small.frame_size >= RX_DATA_OFFSET + 14 + 200
