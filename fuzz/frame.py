"""Captured Ethernet/IPv4/UDP frames: net/frames.py parse_udp_frame, then what the engine does
with a valid one (fingerprint, rewrite for an egress).

Contract: FrameError (a ValueError) is bad input; anything else is a crash.
"""

from crosscast.net.frames import FrameError, fingerprint, parse_udp_frame, rewrite_for_egress

EXPECTED = (FrameError,)


def one_input(data: bytes) -> None:
    f = parse_udp_frame(data)
    fingerprint(f)
    rewrite_for_egress(f, src_mac=b"\x02" * 6, dst_ip=0x0A0002FF, ttl=1, fix_udp_checksum=True)
