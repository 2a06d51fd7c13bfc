"""The topology model: frozen dataclasses describing one edge device, and nothing else.

This module owns the shape of a topology (VLANs, bridges, Docker networks, router, containers,
devices, firewall exceptions, relay rules) and the deterministic container MAC. It does no I/O
and no validation of files: `crosscast.topology.load` turns YAML into these objects.
"""

from __future__ import annotations

import hashlib


def mac_for_name(name: str) -> str:
    """The stable MAC of container `name`: 02 (locally administered, unicast) + sha256(name)[:5].

    The same name gives the same MAC on every host and after every reboot, so the DHCP server
    hands the same lease back; `crosscast lease` and `topology apply` both use it.
    """
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))
