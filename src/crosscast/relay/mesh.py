"""The mesh socket: one UDP socket on the mesh port, to and from the other relays.

Owns that socket and nothing else: it reads datagrams and writes one datagram to each peer.
Whether a datagram is acceptable is the engine's business; whether its sender is a current peer
is checked by the service, before the engine spends anything on it.

How it reads (issue 8):
- Adaptive drain. A drain that reads until EAGAIN ends every wake-up with a failing system call,
  which at low rates (every datagram its own wake-up) is one call in four. So a wake-up reads a
  single datagram unless the previous wake-up was less than BUSY_GAP ago, and only then drains
  (up to DRAIN_LIMIT datagrams). Readiness is level-triggered, so nothing is left behind: a
  second datagram queued behind the first wakes the loop again at once, and that wake-up, coming
  right after the first, drains.
- Bounded waiting. When the relay cannot keep up, datagrams queue in the socket; in the
  crosscast format one datagram carries a whole drain's frames (a dozen 64-byte frames), so a
  receive buffer small enough to bound the wait for batched small frames starves one-frame
  datagrams of full-size frames, and one big enough for those queues small frames for tens of
  ms. The bound is therefore in time, not bytes: SO_TIMESTAMPNS stamps each datagram when the
  kernel received it, and one that waited longer than MAX_WAIT (shared with the capture's
  ring) while the relay is behind is dropped unread, counted as `mesh_late` at the cost of one
  receive, instead of being relayed late. "Behind" means the previous wake-up found a datagram
  that old too: a single late wake-up after a scheduling gap on a busy machine relays what it
  finds. The relay catches up at once, and the socket's buffer (--rcvbuf) only has to hold a
  burst. What the kernel itself drops when the buffer is full is read from SO_MEMINFO
  (`mesh_socket_drops`).
"""

from __future__ import annotations

import socket
import struct
import time
from collections import Counter
from collections.abc import Iterable

from crosscast.net.packet import SO_SNDBUFFORCE
from crosscast.relay.capture import (
    MAX_WAIT,
    SO_RCVBUFFORCE,
    StartupError,
    set_buffer,
)

MAX_DATAGRAM = 65535
# Datagrams per wake-up. A drain is relayed as a whole (the engine decides all of it, then it is
# sent), so its last frame's processing delays its first: the capture's 256 frames are about
# 1.5 ms of work, but 256 batched datagrams of 64-byte frames are ~3,000 frames, ~15 ms, which
# under overload came on top of the 10 ms wait (mesh p99 22.9 ms at 64 B, bench 2026-12-03).
# 32 datagrams are at most a few hundred frames; a busy socket wakes the loop again at once.
DRAIN_LIMIT = 32
BUSY_GAP = 0.0005  # seconds: a wake-up this soon after the previous one drains the socket
SO_TIMESTAMPNS = 35  # asm-generic/socket.h (SCM_TIMESTAMPNS is the same number)
SO_MEMINFO = 55  # asm-generic/socket.h: u32[SK_MEMINFO_VARS]
SK_MEMINFO_DROPS = 8  # linux/sock_diag.h: the index of sk_drops
_TIMESPEC = struct.Struct("=qq")  # struct timespec: tv_sec, tv_nsec
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
_MEMINFO = struct.Struct(f"={SK_MEMINFO_DROPS + 1}I")
# Datagrams to a peer whose address does not answer ARP (a Swarm task that just went away, still
# in DNS) wait in the kernel's neighbour queue for ~3 s, charged to this one socket, up to
# net.ipv4.neigh.*.unres_qlen_bytes (208 KiB by default) per such peer. With the default send
# buffer (also 208 KiB) a single silent peer fills it and every send, to healthy peers too,
# fails with EAGAIN (found by `crosscast bench --soak`). 4 MiB leaves room for ~18 of them.
SNDBUF = 4 << 20


class MeshSocket:
    def __init__(self, port: int, rcvbuf: int, *, max_wait: float = MAX_WAIT) -> None:
        self.port = port
        self.max_wait = max_wait
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind(("0.0.0.0", port))
        except OSError as e:
            self.sock.close()
            raise StartupError(f"cannot listen on mesh port {port}/udp: {e.strerror}") from None
        set_buffer(self.sock, SO_RCVBUFFORCE, socket.SO_RCVBUF, rcvbuf)
        set_buffer(self.sock, SO_SNDBUFFORCE, socket.SO_SNDBUF, SNDBUF)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.counters: Counter[tuple[str, ...]] = Counter()
        self._woke = float("-inf")  # when the previous receive() ran
        self._drops = 0  # sk_drops already counted
        self._behind = False  # the last wake-up found a datagram older than max_wait

    def receive(self) -> list[tuple[bytes, str]]:
        """The datagrams of one wake-up (see the module docstring): (data, sender address)."""
        now = time.time()  # CLOCK_REALTIME, the clock of SO_TIMESTAMPNS
        busy = now - self._woke < BUSY_GAP
        self._woke = now
        oldest = now - self.max_wait
        out = []
        recvmsg = self.sock.recvmsg
        unpack = _TIMESPEC.unpack
        late = 0
        behind, stale = self._behind, False
        for _ in range(DRAIN_LIMIT if busy else 1):
            try:
                data, ancillary, _flags, (host, _port) = recvmsg(MAX_DATAGRAM, _ANCILLARY)
            except BlockingIOError:
                break
            except OSError:
                # An ICMP error for an earlier send (peer gone) surfaces on the next receive; it
                # names no peer, so it is a receive error, not a send error of some peer.
                self.counters["mesh_receive_errors",] += 1
                continue
            if ancillary:
                sec, nsec = unpack(ancillary[0][2])
                if sec + nsec * 1e-9 < oldest:
                    stale = True
                    if behind:
                        late += 1
                        continue
            out.append((data, host))
        self._behind = stale
        if late:
            self.counters["mesh_late",] += late
        return out

    def count_socket_drops(self) -> None:
        """Add what the kernel dropped since the last call because the receive buffer was full
        (off the packet path: one getsockopt, called once a tick)."""
        raw = self.sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO.size)
        dropped = _MEMINFO.unpack(raw)[SK_MEMINFO_DROPS]
        if dropped != self._drops:
            self.counters["mesh_socket_drops",] += (dropped - self._drops) & 0xFFFF_FFFF  # u32
            self._drops = dropped

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
