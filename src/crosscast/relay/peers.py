"""The mesh peer set, pure: which relays this relay sends to.

Owns the rules that turn configured peer names and their last lookups into a set of IPv4
addresses (the I/O that performs the lookups is `crosscast.relay.discovery`):

- an IP literal is a peer as it is, without a lookup;
- a name may have several A records (Swarm ``tasks.<service>``, a Kubernetes headless service):
  each address is a peer;
- a name that does not exist, or has no A record, contributes no peer (the task is gone);
- a name whose lookup fails (timeout, server failure) keeps the addresses it had before;
- this relay's own addresses are never peers;
- with no names at all, the relay talks to itself, as SnowSignal does, so one node can be tested.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass


def select_peers(
    static: Iterable[str], discovered: Iterable[str], own: Iterable[str]
) -> frozenset[str]:
    """The peers to send to: static and discovered addresses, minus this relay's own."""
    return frozenset(static).union(discovered).difference(own)


@dataclass(frozen=True, slots=True)
class PeerChange:
    added: frozenset[str]
    removed: frozenset[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


def ip_literal(name: str) -> str | None:
    """The canonical form of ``name`` if it is an IP address, else None."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return None
