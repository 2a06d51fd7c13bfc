"""Captured Ethernet/IPv4/UDP frames: net/frames.py's validation (by offsets, and the full
parse), then what the engine does with a valid one (the incremental rewrite for an egress).

Contract: FrameError (a ValueError) is bad input; anything else is a crash.
"""

from crosscast.net.frames import FrameError, checksum_delta, rewrite_incremental, udp_offset

EXPECTED = (FrameError,)

MACS = b"\xff" * 6 + b"\x02" * 6


def one_input(data: bytes) -> None:
    frame, u = udp_offset(data)
    old = int.from_bytes(frame[30:34], "big")
    delta = checksum_delta(old, 0x0A0002FF)
    rewrite_incremental(frame, u, MACS, (0x0A0002FF).to_bytes(4, "big"), delta, complete=True)
