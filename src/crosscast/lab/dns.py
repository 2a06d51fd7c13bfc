"""Docker's embedded DNS, faked: `tasks.<service>` answered from a table the test changes.

Built on dnspython (a runtime dependency), so `crosscast demo` works from a plain install. The
answer is a pure function of the query and the table (`FakeSwarmDns.answer`); the server is one
UDP socket created inside a namespace and a thread that reads it.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Callable, Iterable, Mapping

import dns.exception
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from crosscast.lab import registry
from crosscast.lab.topologies import DOCKER_DNS
from crosscast.net import netns

_POLL = 0.05  # seconds; how soon a server thread notices close()


class FakeSwarmDns:
    """Answers `tasks.<svc>` (any name you set) with a mutable list of A records.

    `serve_in(ns)` starts a server thread on 127.0.0.11:53 inside namespace `ns` (its socket is
    created there; the thread just reads it). One table serves every namespace, so `set()`
    changes the answer everywhere at once, as when Swarm schedules another task. Unknown names
    get NXDOMAIN; records have TTL 0 so resolvers never cache a stale task list.
    """

    def __init__(self, records: Mapping[str, Iterable[str]] | None = None) -> None:
        self._lock = threading.Lock()
        self._table: dict[str, list[str]] = {}
        for name, ips in (records or {}).items():
            self.set(name, ips)

    def set(self, name: str, ips: Iterable[str]) -> None:
        with self._lock:
            self._table[_key(name)] = list(ips)

    def answer(self, query: bytes) -> bytes | None:
        """The wire reply to one wire query; None for what is not a DNS query (ignored)."""
        try:
            request = dns.message.from_wire(query)
        except dns.exception.DNSException:
            return None
        reply = dns.message.make_response(request)
        for q in request.question:
            with self._lock:
                ips = self._table.get(_key(q.name.to_text()))
            if ips is None:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            elif q.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY) and ips:
                reply.answer.append(
                    dns.rrset.from_text_list(q.name, 0, dns.rdataclass.IN, dns.rdatatype.A, ips)
                )
        return reply.to_wire()

    def serve_in(self, ns: str, address: str = DOCKER_DNS, port: int = 53) -> None:
        """Serve the table on address:port (UDP) inside `ns` until teardown of its prefix.

        127.0.0.11 is not on lo by default, but 127.0.0.0/8 routes there, which suffices to
        bind it.
        """
        with netns.inside(ns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, port))
        server = _UdpServer(sock, self.answer, f"fake-dns-{ns}")
        registry.keep_server(ns, server)
        logging.getLogger(__name__).debug("fake DNS on %s:%d in %s", address, port, ns)


def _key(name: str) -> str:
    return name.rstrip(".").lower()


class _UdpServer:
    """A thread answering datagrams on one socket until close()."""

    def __init__(
        self, sock: socket.socket, answer: Callable[[bytes], bytes | None], name: str
    ) -> None:
        self._sock = sock
        self._answer = answer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], _POLL)
            if not ready:
                continue
            try:
                query, peer = self._sock.recvfrom(65535)
            except OSError:
                continue
            reply = self._answer(query)
            if reply is not None:
                with contextlib.suppress(OSError):  # the client went away: nothing to do
                    self._sock.sendto(reply, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()
