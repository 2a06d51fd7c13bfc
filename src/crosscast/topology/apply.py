"""Build and remove a topology on this host or in network namespaces (being written)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from ipaddress import IPv4Address

from crosscast.topology.model import Topology


def apply_topology(
    topology: Topology, *, netns_prefix: str | None, leases: Mapping[str, IPv4Address]
) -> int:
    print("apply: not available yet", file=sys.stderr)
    return 2


def destroy_topology(topology: Topology, *, netns_prefix: str | None) -> int:
    print("destroy: not available yet", file=sys.stderr)
    return 2
