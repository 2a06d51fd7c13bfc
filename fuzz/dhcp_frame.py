"""Frames the lease client captures (topology/leases/client.py): dhcp.parse_reply_frame.

Contract: ValueError (FrameError from the framing, or parse_reply's) is bad input; anything else
is a crash.
"""

from crosscast.topology.leases import dhcp

EXPECTED = (ValueError,)


def one_input(data: bytes) -> None:
    dhcp.parse_reply_frame(data)
