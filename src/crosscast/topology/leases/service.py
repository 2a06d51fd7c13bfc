"""Lease, renew and release a named container's address: the store and the client together.

`lease` returns the stored binding renewed with the server (or kept, when no server answers),
or a new lease; `release` gives the address back and forgets it. The link opener, the clocks
and the notices are injected, so the tests run without sockets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from crosscast.topology.leases.binding import Binding, LeaseError, Target, UsageError
from crosscast.topology.leases.client import DEFAULT_TIMING, Acked, DhcpClient, Timing
from crosscast.topology.leases.link import Link, open_packet_link
from crosscast.topology.leases.output import iso
from crosscast.topology.leases.store import LeaseStore
from crosscast.topology.model import mac_for_name


@dataclass(frozen=True)
class Outcome:
    binding: Binding
    action: str  # "leased", "renewed", "kept"


def lease(
    name: str,
    target: Target | None,
    store: LeaseStore,
    *,
    rebind: bool = False,
    timing: Timing = DEFAULT_TIMING,
    now: Callable[[], float] = time.time,
    clock: Callable[[], float] = time.monotonic,
    open_link: Callable[[Target], Link] | None = None,
    notify: Callable[[str], None] = lambda _line: None,
) -> Outcome:
    """The stored binding for `name`, renewed with the server; a new lease if there is none."""
    stored = store.get(name)
    if stored is not None and target is not None and target.vlan != stored.vlan and not rebind:
        raise UsageError(
            f"{name} holds {stored.ip} on VLAN {stored.vlan}, not VLAN {target.vlan}:"
            " release it first or pass --rebind"
        )
    if target is None:
        if stored is None:
            raise UsageError(f"no lease recorded for {name}: say which VLAN (--vlan)")
        target = Target(stored.vlan, stored.interface, stored.netns)
    mac = mac_for_name(name)
    link = open_link(target) if open_link is not None else open_packet_link(target, mac)
    try:
        client = DhcpClient(link, mac, name, timing=timing, clock=clock, notify=notify)
        if stored is not None and stored.vlan == target.vlan:
            try:
                acked = client.renew(stored.ip)
            except LeaseError:
                if not rebind:
                    raise
                notify(f"{stored.ip} can no longer be renewed for {name}: asking for a new lease")
            else:
                if acked is None:
                    notify(
                        f"no DHCP server answered on {target.interface}: keeping the stored"
                        f" binding {stored.ip} for {name} (expires {iso(stored.expires_at)})"
                    )
                    return Outcome(stored, "kept")
                binding = _binding(name, mac, target, acked, now())
                store.put(binding)
                return Outcome(binding, "renewed")
        acked = client.obtain()
    finally:
        close = getattr(link, "close", None)
        if close is not None:
            close()
    binding = _binding(name, mac, target, acked, now())
    store.put(binding)
    return Outcome(binding, "leased")


def release(
    name: str,
    store: LeaseStore,
    *,
    target: Target | None = None,
    open_link: Callable[[Target], Link] | None = None,
    notify: Callable[[str], None] = lambda _line: None,
) -> Binding:
    """Give `name`'s address back (DHCPRELEASE) and forget the binding."""
    stored = store.get(name)
    if stored is None:
        raise LeaseError(f"no lease recorded for {name}")
    where = target or Target(stored.vlan, stored.interface, stored.netns)
    try:
        link = (open_link or open_packet_link)(where)
    except UsageError as exc:
        notify(f"DHCPRELEASE not sent ({exc}); the server will let the lease expire")
    else:
        try:
            DhcpClient(link, stored.mac, name).release(
                stored.ip, stored.server_id, stored.server_mac
            )
        finally:
            close = getattr(link, "close", None)
            if close is not None:
                close()
    store.delete(name)
    return stored


def _binding(name: str, mac: str, target: Target, acked: Acked, at: float) -> Binding:
    return Binding(
        name=name,
        mac=mac,
        ip=acked.ip,
        prefix=acked.prefix,
        gateway=acked.gateway,
        vlan=target.vlan,
        server_id=acked.server_id,
        server_mac=acked.server_mac,
        lease_time=acked.lease_time,
        obtained_at=at,
        interface=target.interface,
        netns=target.netns,
        dns=acked.dns,
    )
