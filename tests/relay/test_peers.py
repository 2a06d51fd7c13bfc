"""Unit tests of the mesh peer set (crosscast.relay.peers): a fake resolver, and one real DNS server
on loopback for DnsResolver."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from crosscast.relay.discovery import Discovery, DnsResolver
from crosscast.relay.peers import PeerChange, select_peers

OWN = "10.0.9.1"


class FakeResolver:
    """Answers from a dict that a test edits between refreshes; records every lookup."""

    def __init__(self, zone: dict[str, list[str] | LookupError]) -> None:
        self.zone = zone
        self.lookups: list[str] = []

    async def resolve(self, name: str) -> list[str]:
        self.lookups.append(name)
        answer = self.zone.get(name, [])
        if isinstance(answer, LookupError):
            raise answer
        return list(answer)


def discovery(
    names: list[str], resolver: FakeResolver, self_address: str | None = OWN
) -> Discovery:
    return Discovery(
        names,
        own_addresses=lambda: [OWN, "127.0.0.1"],
        resolver=resolver,
        self_address=lambda: self_address,
    )


def refresh(disco: Discovery) -> PeerChange:
    return asyncio.run(disco.refresh())


# --- select_peers ------------------------------------------------------------------------------


def test_select_peers_removes_own_addresses() -> None:
    peers = select_peers(["10.0.0.2", OWN], ["10.0.0.3", OWN], [OWN])
    assert peers == frozenset({"10.0.0.2", "10.0.0.3"})


# --- Discovery ---------------------------------------------------------------------------------


def test_tasks_name_expands_to_several_peers_without_own_address() -> None:
    resolver = FakeResolver({"tasks.relay": ["10.0.9.2", OWN, "10.0.9.3"]})
    disco = discovery(["tasks.relay"], resolver)
    change = refresh(disco)
    assert disco.peers == frozenset({"10.0.9.2", "10.0.9.3"})
    assert change == PeerChange(added=frozenset({"10.0.9.2", "10.0.9.3"}), removed=frozenset())


def test_task_appearing_on_the_next_refresh_is_added() -> None:
    resolver = FakeResolver({"tasks.relay": ["10.0.9.2"]})
    disco = discovery(["tasks.relay"], resolver)
    refresh(disco)
    resolver.zone["tasks.relay"] = ["10.0.9.2", "10.0.9.4"]
    change = refresh(disco)
    assert change == PeerChange(added=frozenset({"10.0.9.4"}), removed=frozenset())
    assert disco.peers == frozenset({"10.0.9.2", "10.0.9.4"})


def test_task_disappearing_on_the_next_refresh_is_removed() -> None:
    resolver = FakeResolver({"tasks.relay": ["10.0.9.2", "10.0.9.4"]})
    disco = discovery(["tasks.relay"], resolver)
    refresh(disco)
    resolver.zone["tasks.relay"] = ["10.0.9.2"]
    change = refresh(disco)
    assert change == PeerChange(added=frozenset(), removed=frozenset({"10.0.9.4"}))
    assert disco.peers == frozenset({"10.0.9.2"})


def test_unchanged_refresh_reports_no_change() -> None:
    resolver = FakeResolver({"tasks.relay": ["10.0.9.2"]})
    disco = discovery(["tasks.relay"], resolver)
    refresh(disco)
    assert not refresh(disco)


def test_lookup_failure_keeps_the_previous_addresses() -> None:
    resolver = FakeResolver({"tasks.relay": ["10.0.9.2", "10.0.9.3"]})
    disco = discovery(["tasks.relay"], resolver)
    refresh(disco)
    resolver.zone["tasks.relay"] = LookupError("timeout")
    change = refresh(disco)
    assert disco.peers == frozenset({"10.0.9.2", "10.0.9.3"})
    assert not change


def test_lookup_failure_of_one_name_does_not_affect_another() -> None:
    resolver = FakeResolver({"a.example": ["10.0.1.2"], "b.example": ["10.0.2.2"]})
    disco = discovery(["a.example", "b.example"], resolver)
    refresh(disco)
    resolver.zone["a.example"] = LookupError("SERVFAIL")
    resolver.zone["b.example"] = ["10.0.2.3"]
    refresh(disco)
    assert disco.peers == frozenset({"10.0.1.2", "10.0.2.3"})


def test_name_that_no_longer_exists_removes_its_addresses() -> None:
    resolver = FakeResolver({"tasks.relay": ["10.0.9.2"]})
    disco = discovery(["tasks.relay"], resolver)
    refresh(disco)
    resolver.zone["tasks.relay"] = []
    change = refresh(disco)
    assert disco.peers == frozenset()
    assert change.removed == frozenset({"10.0.9.2"})


def test_no_names_means_talking_to_itself() -> None:
    disco = discovery([], FakeResolver({}))
    refresh(disco)
    assert disco.peers == frozenset({OWN})


def test_no_names_and_no_self_address_means_no_peers() -> None:
    disco = discovery([], FakeResolver({}), self_address=None)
    refresh(disco)
    assert disco.peers == frozenset()


def test_ip_literals_pass_through_without_a_lookup() -> None:
    resolver = FakeResolver({})
    disco = discovery(["10.0.5.5", "relay.example"], resolver)
    resolver.zone["relay.example"] = ["10.0.6.6"]
    refresh(disco)
    assert disco.peers == frozenset({"10.0.5.5", "10.0.6.6"})
    assert resolver.lookups == ["relay.example"]


def test_own_address_given_as_a_literal_is_not_a_peer() -> None:
    disco = discovery([OWN, "10.0.5.5"], FakeResolver({}))
    refresh(disco)
    assert disco.peers == frozenset({"10.0.5.5"})


# --- DnsResolver against a real DNS server on loopback -----------------------------------------


class ZoneResolver(BaseResolver):  # type: ignore[misc]  # dnslib ships no type hints
    """tasks.relay. has two A records, broken.example. fails, everything else is NXDOMAIN."""

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname)
        if qname == "tasks.relay." and request.q.qtype == QTYPE.A:
            for address in ("10.0.9.3", "10.0.9.2"):
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(address), ttl=5))
        elif qname == "broken.example.":
            reply.header.rcode = RCODE.SERVFAIL
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@pytest.fixture(scope="module")  # stopping serve_forever waits out its 0.5 s poll: pay it once
def dns_port() -> Iterator[int]:
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data")
    # port 0: the kernel picks a free port, so parallel runs cannot collide
    server = DNSServer(ZoneResolver(), address="127.0.0.1", port=0, logger=quiet)
    server.start_thread()
    try:
        yield server.server.server_address[1]
    finally:
        server.stop()
        server.server.server_close()
        server.thread.join(timeout=5)


def test_dns_resolver_returns_every_a_record(dns_port: int) -> None:

    resolver = DnsResolver(nameservers=["127.0.0.1"], port=dns_port)
    assert asyncio.run(resolver.resolve("tasks.relay")) == ["10.0.9.2", "10.0.9.3"]


def test_dns_resolver_returns_nothing_for_nxdomain(dns_port: int) -> None:

    resolver = DnsResolver(nameservers=["127.0.0.1"], port=dns_port)
    assert asyncio.run(resolver.resolve("gone.example")) == []


def test_dns_resolver_raises_lookup_error_on_server_failure(dns_port: int) -> None:

    resolver = DnsResolver(nameservers=["127.0.0.1"], port=dns_port)
    with pytest.raises(LookupError, match=r"broken\.example"):
        asyncio.run(resolver.resolve("broken.example"))
