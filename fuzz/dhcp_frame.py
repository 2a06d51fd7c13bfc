"""Frames the lease client captures (topology/leases.py): dhcp.parse_udp_frame, then parse_reply.

Contract: ValueError is bad input; anything else is a crash.
"""

from crosscast.topology import dhcp

EXPECTED = (ValueError,)


def one_input(data: bytes) -> None:
    dhcp.parse_reply(dhcp.parse_udp_frame(data).payload)
