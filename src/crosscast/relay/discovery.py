"""Peer discovery, the I/O half of the peer set: DNS look-ups of the configured names.

Owns the resolver (dnspython's asyncio resolver, injectable) and the refresh that applies the
pure rules of `crosscast.relay.peers`. It must not sleep or start tasks of its own: the service
calls ``Discovery.refresh()`` on its schedule (every 10 s) and applies the change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from crosscast.relay.peers import PeerChange, ip_literal, select_peers

logger = logging.getLogger(__name__)


class Resolver(Protocol):
    async def resolve(self, name: str) -> list[str]:
        """IPv4 addresses (A records) of ``name``.

        Returns [] when the name does not exist or has no A record; raises LookupError when the
        answer is unknown (timeout, server failure).
        """
        ...


class DnsResolver:
    """A Resolver over dnspython's asyncio resolver.

    With ``nameservers=None`` it reads /etc/resolv.conf (in a Swarm task that names Docker's
    embedded server, 127.0.0.11). A name with a dot is looked up exactly as written, so
    ``tasks.relay`` can never turn into ``tasks.relay.corp.example`` through the search list; a
    single-label name uses the search list the way the C library does (a Kubernetes service
    name in the same namespace). Construction raises dnspython's NoResolverConfiguration when
    there is no usable resolv.conf: a start-up error, not a run-time one.
    """

    def __init__(
        self, timeout: float = 2.0, *, nameservers: list[str] | None = None, port: int = 53
    ) -> None:
        # dnspython is imported here, not at the top: it costs 5 MB of RSS, and a relay whose
        # peers are all IP literals never builds a resolver (see `needs_dns`).
        import dns.asyncresolver

        self._resolver = dns.asyncresolver.Resolver(configure=nameservers is None)
        if nameservers is not None:
            # port first: the nameservers setter binds each address to the current port
            self._resolver.port = port
            self._resolver.nameservers = nameservers
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout
        self._resolver.cache = None

    async def resolve(self, name: str) -> list[str]:
        import dns.exception
        import dns.resolver

        try:
            answer = await self._resolver.resolve(name, "A", search="." not in name.rstrip("."))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            # Timeout, NoNameservers (SERVFAIL/REFUSED everywhere), YXDOMAIN, a malformed name...
            raise LookupError(f"cannot resolve {name}: {exc}") from exc
        return sorted({rdata.address for rdata in answer})


def needs_dns(names: Iterable[str]) -> bool:
    """Whether any of the configured peer names is a name to look up, not an IP literal."""
    return any(ip_literal(n.strip()) is None for n in names if n.strip())


class LazyResolver:
    """A Resolver made on first use: for a relay whose peers are all IP literals, which then
    never loads dnspython (a reload that adds a name to look up still gets a resolver)."""

    def __init__(self, factory: Callable[[], Resolver]) -> None:
        self._factory = factory
        self._resolver: Resolver | None = None

    async def resolve(self, name: str) -> list[str]:
        if self._resolver is None:
            self._resolver = self._factory()
        return await self._resolver.resolve(name)


class Discovery:
    """Keeps ``peers`` up to date from a list of names; ``refresh()`` re-resolves them."""

    def __init__(
        self,
        names: Sequence[str],
        own_addresses: Callable[[], Iterable[str]],
        resolver: Resolver,
        self_address: Callable[[], str | None],
    ) -> None:
        self._own_addresses = own_addresses
        self._resolver = resolver
        self._self_address = self_address
        self._literals: list[str] = []
        self._names: list[str] = []
        for entry in dict.fromkeys(n.strip() for n in names if n.strip()):
            literal = ip_literal(entry)
            if literal is None:
                self._names.append(entry)
            else:
                self._literals.append(literal)
        # The addresses each name resolved to last time it resolved at all.
        self._resolved: dict[str, frozenset[str]] = {name: frozenset() for name in self._names}
        self._failing: set[str] = set()  # names whose last lookup failed: warn once, not every 10 s
        self.peers: frozenset[str] = frozenset()

    async def refresh(self) -> PeerChange:
        """Resolve every name (concurrently), update ``peers`` and say what changed."""
        if not self._literals and not self._names:
            own = self._self_address()
            new = frozenset() if own is None else frozenset({own})
        else:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._lookup(name)) for name in self._names]
            for name, task in zip(self._names, tasks, strict=True):
                addresses = task.result()
                if addresses is not None:
                    self._resolved[name] = addresses
            discovered = frozenset().union(*self._resolved.values())
            new = select_peers(self._literals, discovered, self._own_addresses())
        change = PeerChange(added=new - self.peers, removed=self.peers - new)
        self.peers = new
        if change:
            logger.info(
                "mesh peers now %s (added %s, removed %s)",
                sorted(new) or "none",
                sorted(change.added) or "none",
                sorted(change.removed) or "none",
            )
        return change

    async def _lookup(self, name: str) -> frozenset[str] | None:
        """The addresses of ``name``, or None when the lookup failed and the old ones stand."""
        try:
            addresses = frozenset(await self._resolver.resolve(name))
        except LookupError as exc:
            log = logger.debug if name in self._failing else logger.warning
            log("keeping the previous peers of %s: %s", name, exc)
            self._failing.add(name)
            return None
        if name in self._failing:
            self._failing.discard(name)
            logger.info("%s resolves again", name)
        return addresses
