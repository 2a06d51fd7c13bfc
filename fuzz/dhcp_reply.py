"""DHCP replies (OFFER, ACK, NAK) from a server: topology/leases/dhcp.py parse_reply.

Contract: ValueError is bad input (dhcp.py documents no narrower type); anything else is a crash.
"""

from crosscast.topology.leases.dhcp import parse_reply

EXPECTED = (ValueError,)


def one_input(data: bytes) -> None:
    parse_reply(data)
