"""The DHCP client of `crosscast lease`: DISCOVER/OFFER/REQUEST/ACK, the ARP probe, renewal.

Owns the exchange and its timers for one MAC over one `Link`; time comes from an injected
clock and transaction ids from an injected source, so tests drive it with a fake link, a fake
server and a fake clock. Encoding and decoding are `dhcp`'s; the socket is the link's.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from crosscast.topology.leases import dhcp
from crosscast.topology.leases.binding import IPv4, LeaseError
from crosscast.topology.leases.link import Link


@dataclass(frozen=True)
class Timing:
    exchange_timeout: float = 3.0  # per DISCOVER or REQUEST
    retries: int = 2  # retransmissions after the first try
    probe_count: int = 3  # ARP probes (RFC 5227 PROBE_NUM)
    probe_window: float = 1.0  # total time the probes take and we listen for conflicts
    max_declines: int = 3  # offers found in use (and declined) before we give up


DEFAULT_TIMING = Timing()


@dataclass(frozen=True)
class Acked:
    """What a DHCPACK granted."""

    ip: IPv4
    prefix: int
    gateway: IPv4 | None
    dns: tuple[IPv4, ...]
    server_id: IPv4
    server_mac: str
    lease_time: int


class DhcpClient:
    """The client side of DORA for one MAC over one Link; time comes from `clock`."""

    def __init__(
        self,
        link: Link,
        mac: str,
        hostname: str,
        *,
        timing: Timing = DEFAULT_TIMING,
        clock: Callable[[], float] = time.monotonic,
        new_xid: Callable[[], int] = lambda: secrets.randbits(32),
        notify: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.link = link
        self.mac = mac
        self.hostname = hostname
        self.timing = timing
        self.clock = clock
        self.new_xid = new_xid
        self.notify = notify
        self.dropped = 0  # frames that were not an answer to us

    def _exchange(
        self, message: bytes, xid: int, wanted: tuple[dhcp.MessageType, ...], what: str
    ) -> tuple[dhcp.Reply, str] | None:
        """Send `message` (retransmitting) until a reply of a wanted type for `xid` comes.
        Each retransmission is reported (`what` names the message): a silent wait of several
        seconds looks like a hang."""
        frame = dhcp.client_frame(message, self.mac)
        for attempt in range(1 + self.timing.retries):
            if attempt:
                self.notify(
                    f"no answer to {what} within {self.timing.exchange_timeout:g} s:"
                    f" sending it again ({attempt}/{self.timing.retries})"
                )
            self.link.send(frame)
            deadline = self.clock() + self.timing.exchange_timeout
            while (left := deadline - self.clock()) > 0:
                raw = self.link.recv(left)
                if raw is None:
                    break
                try:
                    reply, server_mac = dhcp.parse_reply_frame(raw)
                except ValueError:
                    self.dropped += 1
                    continue
                if reply.xid != xid or reply.chaddr != self.mac or reply.message_type not in wanted:
                    self.dropped += 1
                    continue
                return reply, server_mac
        return None

    def _acked(self, reply: dhcp.Reply, server_mac: str) -> Acked:
        if reply.prefix_length is None:
            raise LeaseError(f"the DHCPACK for {reply.yiaddr} has no subnet mask")
        if reply.server_id is None:
            raise LeaseError(f"the DHCPACK for {reply.yiaddr} has no server identifier")
        return Acked(
            ip=reply.yiaddr,
            prefix=reply.prefix_length,
            gateway=reply.router,
            dns=reply.dns,
            server_id=reply.server_id,
            server_mac=server_mac,
            lease_time=reply.lease_time if reply.lease_time is not None else 0,
        )

    def in_use(self, ip: IPv4) -> str | None:
        """ARP-probe `ip` (RFC 5227, sender IP 0.0.0.0): the MAC of whoever holds it, or None.

        The probe goes out from the interface's own MAC, not the container's: in a namespace
        topology the container's eth0 already sits on the bridge with the container's MAC, so
        the bridge would forward replies addressed to that MAC to it, never up to us. A reply
        from the container's MAC is the container holding its own address: no conflict.
        """
        probe = dhcp.build_arp_probe(self.link.mac, ip)
        start = self.clock()
        step = self.timing.probe_window / self.timing.probe_count
        for i in range(self.timing.probe_count):
            self.link.send(probe)
            until = start + step * (i + 1)
            while (left := until - self.clock()) > 0:
                raw = self.link.recv(left)
                if raw is None:
                    break
                try:
                    arp = dhcp.parse_arp_frame(raw)
                except ValueError:
                    continue
                if dhcp.is_conflict(arp, ip, {self.mac, self.link.mac}):
                    return arp.sender_mac
        return None

    def obtain(self) -> Acked:
        """DISCOVER, OFFER, REQUEST, ACK, then make sure nobody else answers for the address."""
        wait = self.timing.exchange_timeout * (1 + self.timing.retries)
        for _round in range(self.timing.max_declines):
            xid = self.new_xid()
            got = self._exchange(
                dhcp.build_discover(xid, self.mac, hostname=self.hostname),
                xid,
                (dhcp.MessageType.OFFER,),
                "DHCPDISCOVER",
            )
            if got is None:
                raise LeaseError(
                    f"no DHCPOFFER within {wait:g} s (no DHCP server on this VLAN,"
                    " or its pool is exhausted)"
                )
            offer, _ = got
            if offer.server_id is None:
                raise LeaseError(f"the DHCPOFFER of {offer.yiaddr} has no server identifier")
            got = self._exchange(
                dhcp.build_request(
                    xid, self.mac, offer.yiaddr, server_id=offer.server_id, hostname=self.hostname
                ),
                xid,
                (dhcp.MessageType.ACK, dhcp.MessageType.NAK),
                f"DHCPREQUEST for {offer.yiaddr}",
            )
            if got is None:
                raise LeaseError(f"no DHCPACK for offered {offer.yiaddr} within {wait:g} s")
            reply, server_mac = got
            if reply.message_type is dhcp.MessageType.NAK:
                why = f": {reply.message}" if reply.message else ""
                raise LeaseError(f"the server refused offered {offer.yiaddr} (DHCPNAK{why})")
            acked = self._acked(reply, server_mac)
            # RFC 2131 section 4.4.1: check the address before using it; DECLINE if taken.
            holder = self.in_use(acked.ip)
            if holder is None:
                return acked
            self.notify(f"{acked.ip} is already in use by {holder}: declined, asking again")
            self._send_decline(acked)
        raise LeaseError(
            f"every address offered was in use ({self.timing.max_declines} declined);"
            " the pool overlaps hosts with static addresses"
        )

    def _send_decline(self, acked: Acked) -> None:
        message = dhcp.build_decline(self.new_xid(), self.mac, acked.ip, acked.server_id)
        self.link.send(dhcp.client_frame(message, self.mac))

    def renew(self, ip: IPv4) -> Acked | None:
        """INIT-REBOOT REQUEST for `ip`: its ACK, None when no server answered.

        A NAK raises LeaseError: the address is no longer ours to use.
        """
        xid = self.new_xid()
        got = self._exchange(
            dhcp.build_request(xid, self.mac, ip, hostname=self.hostname),
            xid,
            (dhcp.MessageType.ACK, dhcp.MessageType.NAK),
            f"DHCPREQUEST renewing {ip}",
        )
        if got is None:
            return None
        reply, server_mac = got
        if reply.message_type is dhcp.MessageType.NAK:
            why = f": {reply.message}" if reply.message else ""
            raise LeaseError(f"the server refused to renew {ip} (DHCPNAK{why})")
        if reply.yiaddr != ip:
            raise LeaseError(f"the server acknowledged {reply.yiaddr} instead of {ip}")
        return self._acked(reply, server_mac)

    def release(self, ip: IPv4, server_id: IPv4, server_mac: str) -> None:
        """DHCPRELEASE, unicast to the server as RFC 2131 section 4.4.6 asks; it has no reply."""
        message = dhcp.build_release(self.new_xid(), self.mac, ip, server_id)
        self.link.send(
            dhcp.client_frame(message, self.mac, src_ip=ip, dst_ip=server_id, dst_mac=server_mac)
        )
