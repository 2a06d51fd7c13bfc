"""The mesh socket: one UDP socket on the mesh port, to and from the other relays.

Owns that socket and nothing else: it reads datagrams (draining on each wake-up) and writes
one datagram to each peer. Whether a datagram is acceptable is the engine's business; whether
its sender is a current peer is checked here, before the engine spends anything on it.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterable

from crosscast.net.packet import SO_SNDBUFFORCE
from crosscast.relay.capture import DRAIN_LIMIT, SO_RCVBUFFORCE, StartupError, set_buffer

MAX_DATAGRAM = 65535
# Datagrams to a peer whose address does not answer ARP (a Swarm task that just went away, still
# in DNS) wait in the kernel's neighbour queue for ~3 s, charged to this one socket, up to
# net.ipv4.neigh.*.unres_qlen_bytes (208 KiB by default) per such peer. With the default send
# buffer (also 208 KiB) a single silent peer fills it and every send, to healthy peers too,
# fails with EAGAIN (found by `crosscast bench --soak`). 4 MiB leaves room for ~18 of them.
SNDBUF = 4 << 20


class MeshSocket:
    def __init__(self, port: int, rcvbuf: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind(("0.0.0.0", port))
        except OSError as e:
            self.sock.close()
            raise StartupError(f"cannot listen on mesh port {port}/udp: {e.strerror}") from None
        set_buffer(self.sock, SO_RCVBUFFORCE, socket.SO_RCVBUF, rcvbuf)
        set_buffer(self.sock, SO_SNDBUFFORCE, socket.SO_SNDBUF, SNDBUF)
        self.sock.setblocking(False)
        self.counters: Counter[tuple[str, ...]] = Counter()

    def receive(self) -> list[tuple[bytes, str]]:
        out = []
        recvfrom = self.sock.recvfrom
        for _ in range(DRAIN_LIMIT):
            try:
                data, (host, _port) = recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                break
            except OSError:
                # An ICMP error for an earlier send (peer gone) surfaces on the next receive; it
                # names no peer, so it is a receive error, not a send error of some peer.
                self.counters["mesh_receive_errors",] += 1
                continue
            out.append((data, host))
        return out

    def send(self, datagram: bytes, peers: Iterable[str]) -> None:
        sendto = self.sock.sendto
        for peer in peers:
            try:
                sendto(datagram, (peer, self.port))
            except OSError:
                self.counters["mesh_send_errors", peer] += 1
            else:
                self.counters["mesh_sent", peer] += 1

    def close(self) -> None:
        self.sock.close()
