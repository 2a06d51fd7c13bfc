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
  that old too and left more queued (it stopped at DRAIN_LIMIT): a late wake-up after a
  scheduling gap on a busy machine relays what it finds, however often that happens, and
  drains (up to DRAIN_LIMIT) even when it would have read one datagram, since what queued
  behind an old datagram is old too. The relay catches up at once, and the socket's buffer
  (--rcvbuf) only has to hold a burst. What the kernel itself drops when the buffer is
  full is read from SO_MEMINFO (`mesh_socket_drops`).

How it writes: segmentation offload (UDP GSO, Linux 4.18). The datagrams one drain makes for a
peer are mostly of one size (a BATCH fills the budget, a run of PARTs fills it exactly), and the
kernel's UDP path through a VXLAN overlay costs about 5 us per datagram on the sender. So a run
of equal-size datagrams (the last may be shorter) goes to each peer in one `sendmsg` with
UDP_SEGMENT: the stack is traversed once for the run and the datagrams on the wire are the same
ones, each with its own headers, so any receiver (an older crosscast, SnowSignal) sees nothing
new. Measured on the bench's overlay: 1.1 us per 1422-byte datagram in runs of 8, against 5.3
with one `sendto` each. What the kernel refuses is sent again one datagram at a time, and the
socket remembers (counted in `mesh_gso_refused`): segments over the path MTU (EINVAL: a
SnowSignal-format datagram of a full-size frame, which the kernel must fragment) are not
offloaded from that size up, and a route that cannot offload at all (EIO: no checksum offload,
IPsec) turns offload off. A kernel without UDP_SEGMENT is found at start-up. The receiving side
sets UDP_GRO: a run that arrives whole is read in one `recvmsg` and cut back into datagrams here.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterable, Sequence

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
SOL_UDP = 17  # IPPROTO_UDP
UDP_SEGMENT = 103  # linux/udp.h: u16 segment size of a send (GSO)
UDP_GRO = 104  # linux/udp.h: receive coalesced runs; the cmsg is the int segment size
GSO_MAX_SEGMENTS = 64  # linux/udp.h UDP_MAX_SEGMENTS: 1 << 6 (newer kernels allow more)
GSO_MAX_BYTES = 65535 - 20 - 8  # one IPv4 datagram's payload
_TIMESPEC = struct.Struct("=qq")  # struct timespec: tv_sec, tv_nsec
_INT = struct.Struct("=i")
_U16 = struct.Struct("=H")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) + socket.CMSG_SPACE(_INT.size)
_MEMINFO = struct.Struct(f"={SK_MEMINFO_DROPS + 1}I")
# Datagrams to a peer whose address does not answer ARP (a Swarm task that just went away, still
# in DNS) wait in the kernel's neighbour queue for ~3 s, charged to this one socket, up to
# net.ipv4.neigh.*.unres_qlen_bytes (208 KiB by default) per such peer. With the default send
# buffer (also 208 KiB) a single silent peer fills it and every send, to healthy peers too,
# fails with EAGAIN (found by `crosscast bench --soak`). 4 MiB leaves room for ~18 of them.
SNDBUF = 4 << 20


def gso_runs(datagrams: Sequence[bytes], largest: int = MAX_DATAGRAM) -> list[Sequence[bytes]]:
    """`datagrams` in order, cut into runs one segmented send can carry: every datagram of a
    run but the last is as long as the first, the last is not longer, and a run has at most
    GSO_MAX_SEGMENTS datagrams and GSO_MAX_BYTES bytes. A datagram longer than `largest` is
    a run of its own."""
    runs: list[Sequence[bytes]] = []
    i, n = 0, len(datagrams)
    while i < n:
        size = len(datagrams[i])
        end = (
            i + 1
            if size > largest
            else min(n, i + GSO_MAX_SEGMENTS, i + GSO_MAX_BYTES // (size or 1))
        )
        j = i + 1
        while j < end and len(datagrams[j]) == size:
            j += 1
        if j < end and len(datagrams[j]) < size:
            j += 1  # a shorter one may close the run
        runs.append(datagrams[i:j])
        i = j
    return runs


def _offload_probe(sock: socket.socket) -> int:
    """MAX_DATAGRAM when the kernel knows UDP_SEGMENT, else 0 (no segmented sends)."""
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return 0
    return MAX_DATAGRAM


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
        with contextlib.suppress(OSError):  # before Linux 5.0 each datagram is read alone
            self.sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        self.sock.setblocking(False)
        self.gso_max = _offload_probe(self.sock)  # longest datagram sent segmented; 0: none
        self.counters: Counter[tuple[str, ...]] = Counter()
        self._woke = float("-inf")  # when the previous receive() ran
        self._drops = 0  # sk_drops already counted
        self._behind = False  # the last wake-up found a datagram older than max_wait, and more

    def receive(self) -> list[tuple[bytes, str]]:
        """The datagrams of one wake-up (see the module docstring): (data, sender address)."""
        now = time.time()  # CLOCK_REALTIME, the clock of SO_TIMESTAMPNS
        busy = now - self._woke < BUSY_GAP
        self._woke = now
        oldest = now - self.max_wait
        out: list[tuple[bytes, str]] = []
        recvmsg = self.sock.recvmsg
        unpack = _TIMESPEC.unpack
        late = 0
        behind, stale, caught_up = self._behind, False, False
        limit = DRAIN_LIMIT if busy else 1
        for i in range(DRAIN_LIMIT):
            if i >= limit or len(out) >= DRAIN_LIMIT:
                break  # (a coalesced run can bring many at once)
            try:
                data, ancillary, _flags, (host, _port) = recvmsg(MAX_DATAGRAM, _ANCILLARY)
            except BlockingIOError:
                caught_up = True
                break
            except OSError:
                # An ICMP error for an earlier send (peer gone) surfaces on the next receive; it
                # names no peer, so it is a receive error, not a send error of some peer.
                self.counters["mesh_receive_errors",] += 1
                continue
            segment, received = 0, now
            for level, kind, value in ancillary:
                if kind == SO_TIMESTAMPNS and level == socket.SOL_SOCKET:
                    sec, nsec = unpack(value)
                    received = sec + nsec * 1e-9
                elif kind == UDP_GRO and level == SOL_UDP:
                    segment = _INT.unpack(value)[0]
            run = 0 < segment < len(data)  # a coalesced run of datagrams of `segment` bytes
            if received < oldest:
                # A late wake-up: what queued behind this datagram waited as long, so drain.
                stale, limit = True, DRAIN_LIMIT
                if behind:
                    late += -(-len(data) // segment) if run else 1
                    continue
            if run:
                out.extend((data[k : k + segment], host) for k in range(0, len(data), segment))
            else:
                out.append((data, host))
        self._behind = stale and not caught_up
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

    def send(self, datagrams: Sequence[bytes], peers: Iterable[str]) -> None:
        """Each of `datagrams`, in order, to each peer: a run of them in one segmented send."""
        if len(datagrams) == 1:  # a drain of one frame: a sendto per peer, nothing to join
            datagram = datagrams[0]
            for peer in peers:
                try:
                    self.sock.sendto(datagram, (peer, self.port))
                except OSError:
                    self.counters["mesh_send_errors", peer] += 1
                else:
                    self.counters["mesh_sent", peer] += 1
            return
        runs = [(run, b"".join(run)) for run in gso_runs(datagrams, self.gso_max)]
        for peer in peers:
            address = (peer, self.port)
            sent = 0
            for run, joined in runs:
                sent += self._send_run(run, joined, address)
            if sent:
                self.counters["mesh_sent", peer] += sent
            if sent < len(datagrams):
                self.counters["mesh_send_errors", peer] += len(datagrams) - sent

    def _send_run(self, run: Sequence[bytes], joined: bytes, address: tuple[str, int]) -> int:
        """Send `run` (its datagrams `joined`) to `address`; how many of them went."""
        size = len(run[0])
        if len(run) > 1 and size <= self.gso_max:
            try:
                self.sock.sendmsg([joined], [(SOL_UDP, UDP_SEGMENT, _U16.pack(size))], 0, address)
                return len(run)
            except OSError as e:
                if e.errno == errno.EINVAL:  # segments over the path MTU: not from this size up
                    self.gso_max = size - 1
                elif e.errno in (errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                    self.gso_max = 0  # the route cannot offload at all
                else:
                    return 0
                self.counters["mesh_gso_refused",] += 1
        sent = 0
        for datagram in run:
            try:
                self.sock.sendto(datagram, address)
            except OSError:
                continue
            sent += 1
        return sent

    def close(self) -> None:
        self.sock.close()
