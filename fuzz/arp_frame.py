"""ARP frames the lease client's address-conflict probe captures: dhcp.parse_arp_frame.

Contract: ValueError is bad input; anything else is a crash.
"""

import ipaddress

from crosscast.topology.leases import dhcp

EXPECTED = (ValueError,)
PROBED = ipaddress.IPv4Address("10.0.1.7")


def one_input(data: bytes) -> None:
    dhcp.is_conflict(dhcp.parse_arp_frame(data), PROBED, {"02:11:22:33:44:55"})
