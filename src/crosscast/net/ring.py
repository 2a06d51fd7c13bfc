"""Memory-mapped packet rings (PACKET_RX_RING / PACKET_TX_RING, TPACKET_V2) for AF_PACKET sockets.

This module owns the kernel mechanism of the fast path and nothing above it: the ring geometry,
the `struct tpacket2_hdr` codec, attaching a ring to a socket somebody else opened and bound
(net/packet.py is the one packet-socket opener; this module never opens, binds or filters a
socket), reading received frames out of the shared memory and handing slots back, queueing frames
for transmission, and the kernel's own counters (PACKET_STATISTICS). It decides nothing about
frames.

Why a ring (issue 8): CPython's `recvmsg` on a packet socket costs a system call per frame plus an
`ioctl(SIOCGIFNAME)` to build a sender address the relay throws away, and every drain ends in a
failing `recvmsg` (EAGAIN). With an RX ring the kernel writes each frame into a slot of memory
shared with us and flips the slot's `tp_status` to TP_STATUS_USER; a drain reads slots until one
is still the kernel's, with no system call at all. The socket's fd stays the readiness signal
(poll says readable while the newest written slot is unreleased), so `loop.add_reader` works.

Geometry, chosen for bursts, not backlog (DEFAULT_RX_GEOMETRY):
- frame size 2048: a slot holds the 52-byte header area and the frame from offset 66
  (TPACKET_ALIGN(52 + 16) - 14), so 1982 bytes of frame: a 1500-MTU frame with an 802.1Q tag
  fits; the kernel strips the tag into `tp_vlan_tci` anyway. A larger frame (jumbo, GRO) is
  truncated by the kernel (tp_snaplen < tp_len; TP_STATUS_COPY only if PACKET_COPY_THRESH is set,
  which we never do): `drain` skips it and counts it in `RxRing.truncated`, never half a frame.
- 512 frames in 16 KiB blocks (order-2 allocations, which the kernel finds even on a fragmented
  machine; 8 frames a block, 64 blocks, 1 MiB). The number of frames is the latency bound: a
  full ring is 512 frames of work ahead of the newest one, 5 ms at a relay doing 100k pps and
  10 ms at 50k, and once the relay falls behind by that much the kernel drops (and counts)
  instead of queueing for hundreds of milliseconds as an 8 MiB SO_RCVBUF did. It is also more
  than the relay's longest scheduling gap on a busy 2-core machine at its usable rate (8 ms at
  64k pps: a few CFS time slices of the other processes). SO_RCVBUF does not bound the ring at
  all (only the copy path checks it). The whole mapping counts in the relay's RSS from the
  start, touched or not (the kernel maps its pages in at mmap time), which is why the ring is
  sized in frames and not generously in megabytes (1024 slots were 2 MiB, 7 % of the relay's
  RSS, per capture interface).
- TPACKET_V2, not V3: V2 wakes the reader per frame at low rates (latency of the kernel path) and
  lets one drain take everything queued at high rates; V3 hands over whole blocks on a block
  timeout (>= 1 ms of added latency at low rates) to save wake-ups we do not pay for anyway.

Measured with benchmarks/ring_bench.py: a veth pair between two namespaces, 106-byte frames
(64 bytes of UDP payload), CPython 3.11, a busy 2-core VM, Linux 6.18; median of 3 runs of 100k
frames; µs of user+sys CPU per frame in the measured process (getrusage), system calls per frame
from `strace -c -f`. On veth the sender's CPU includes the receiving side's softirq work.

Egress (TX), per frame:
- `sock.send(frame)` on a socket bound to the egress interface: 0.69 µs, 1 call (`sendto`);
- `sock.sendto(frame, (ifname, 0))`: 0.99 µs, 2 calls (CPython resolves the name with an
  `ioctl(SIOCGIFINDEX)` on every call: never pass an AF_PACKET address per frame);
- `send` with PACKET_QDISC_BYPASS: 0.70 µs, 1 call (veth has no qdisc to skip);
- TxRing, 32 frames queued then one `flush`: 1.00 µs, 0.03 calls; one frame per flush: 2.10 µs.
The system call is cheaper than the Python that fills a slot (a slice copy and two
`pack_into`s) and the kernel's per-frame transmit work is the same either way, so a plain `send`
on a bound socket is the cheapest egress from Python; TxRing pays off only where system calls
are dear (a kernel with heavy syscall mitigations) and several frames leave together.
PACKET_QDISC_BYPASS (`set_qdisc_bypass`) skips the qdisc of a real NIC but also the packet taps
(tcpdump on the relay no longer sees relayed frames), and a full NIC queue then drops instead of
pushing back.

Ingress (RX), with a TxRing in the other namespace blasting 100k frames as fast as it can:
- RxRing.drain: 0.84 µs, 0.003 calls (one poll per ~350 frames);
- `recv_into` a preallocated buffer, until EAGAIN: 1.06 µs, 1.0 calls;
- `recvmsg` with PACKET_AUXDATA until EAGAIN (today's capture): 1.70 µs, 2.0 calls (recvmsg +
  the ioctl(SIOCGIFNAME) of the sender address).
With 1442-byte frames (one run): ring 1.02 µs, recv_into 1.79, recvmsg 2.51 (the copy out of the
kernel grows with the frame; the ring copies once, from shared memory). py-spy (500 Hz) on the
64-byte receivers: recvmsg spends 60 % of its samples inside `recvmsg`,
recv_into 52 % inside `recv_into`, the ring reader 2 % in `drain` and 92 % waiting in poll. At a
paced 2,000 frames/s (every frame its own wake-up) all three cost 17-26 µs a frame, almost all of
it the wake-up itself (poll returning, the scheduler); the ring saves the failing receive (3.0 ->
1.0 calls per frame against recv_into, 4.0 -> 1.0 against recvmsg), not the wake-up.

Memory ordering: the kernel writes a frame, then (after a write barrier) its `tp_status`. We read
the status and then the frame with ordinary loads, which x86-64 keeps in order; a weakly ordered
CPU (arm64) needs a read barrier there that pure Python cannot issue. Releasing writes
TP_STATUS_KERNEL after the frame has been copied out, which is ordered on every CPU we run on.
"""

from __future__ import annotations

import contextlib
import mmap
import socket
import struct
import sys
from dataclasses import dataclass

from crosscast.net.packet import SOL_PACKET, TP_STATUS_CSUMNOTREADY

__all__ = [
    "DEFAULT_RX_GEOMETRY",
    "DEFAULT_TX_GEOMETRY",
    "HEADER",
    "PAGE_SIZE",
    "RX_DATA_OFFSET",
    "TP_STATUS_CSUMNOTREADY",
    "TX_DATA_OFFSET",
    "Geometry",
    "RxFrame",
    "RxRing",
    "TxRing",
    "packet_statistics",
    "ring_geometry",
    "set_qdisc_bypass",
]

PACKET_RX_RING = 5  # linux/if_packet.h
PACKET_STATISTICS = 6  # linux/if_packet.h
PACKET_VERSION = 10  # linux/if_packet.h
PACKET_TX_RING = 13  # linux/if_packet.h
PACKET_LOSS = 14  # linux/if_packet.h: skip a malformed TX slot instead of stopping the ring
PACKET_QDISC_BYPASS = 20  # linux/if_packet.h (Linux >= 3.14)
TPACKET_V2 = 1  # linux/if_packet.h: enum tpacket_versions

# tp_status bits, linux/if_packet.h. Receive side:
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1 << 0  # the slot holds a frame for us
TP_STATUS_COPY = 1 << 1  # too big for the slot, full copy queued on the socket (copy_thresh)
TP_STATUS_LOSING = 1 << 2  # the kernel dropped frames since PACKET_STATISTICS was last read
TP_STATUS_VLAN_VALID = 1 << 4  # tp_vlan_tci holds the 802.1Q tag stripped from the frame
TP_STATUS_VLAN_TPID_VALID = 1 << 6  # tp_vlan_tpid holds its TPID
TP_STATUS_CSUM_VALID = 1 << 7  # the checksum was verified by the NIC
# Transmit side:
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 1 << 0
TP_STATUS_SENDING = 1 << 1
TP_STATUS_WRONG_FORMAT = 1 << 2

PAGE_SIZE = mmap.PAGESIZE
TPACKET_ALIGNMENT = 16  # linux/if_packet.h
ETH_HLEN = 14  # linux/if_ether.h

# struct tpacket2_hdr (32 bytes: tp_status, tp_len, tp_snaplen, tp_mac, tp_net, tp_sec, tp_nsec,
# tp_vlan_tci, tp_vlan_tpid, 4 bytes of padding), then at TPACKET_ALIGN(32) = 32 the struct
# sockaddr_ll the kernel fills in: family, protocol, ifindex, hatype, then sll_pkttype at +10.
# One precompiled unpack reads everything a drain needs, sll_pkttype included.
HEADER = struct.Struct("=IIIHHIIHH4x10xB")
_STATUS = struct.Struct("=I")
# The byte of tp_status (a native u32) that holds TP_STATUS_USER: a drain tests that one byte
# of a slot before it unpacks the header of a ready one.
_USER_BYTE = 0 if sys.byteorder == "little" else 3
_TX_LENGTHS = struct.Struct("=II")  # tp_len, tp_snaplen (after the 4-byte tp_status)
_TPACKET_REQ = struct.Struct("=IIII")  # struct tpacket_req: block size/nr, frame size/nr
_TPACKET_STATS = struct.Struct("=II")  # struct tpacket_stats: tp_packets, tp_drops
_SOCKADDR_LL_SIZE = 20


def _align(n: int) -> int:
    return (n + TPACKET_ALIGNMENT - 1) & ~(TPACKET_ALIGNMENT - 1)


TPACKET2_HDRLEN = _align(32) + _SOCKADDR_LL_SIZE  # 52, as the kernel computes it
# Where the kernel puts a received frame in its slot (af_packet.c, tpacket_rcv, no tp_reserve):
# the network header at TPACKET_ALIGN(hdrlen + 16), the 14-byte Ethernet header just before it.
RX_DATA_OFFSET = _align(TPACKET2_HDRLEN + 16) - ETH_HLEN  # 66
# Where the kernel reads a frame to send (tpacket_fill without PACKET_TX_HAS_OFF).
TX_DATA_OFFSET = TPACKET2_HDRLEN - _SOCKADDR_LL_SIZE  # 32

# (frame, tp_status, tp_vlan_tci, sll_pkttype, tp_sec, tp_nsec): a plain tuple, because one is
# built per frame and a NamedTuple's constructor costs several times as much.
RxFrame = tuple[bytes, int, int, int, int, int]


@dataclass(frozen=True)
class Geometry:
    """The shape of one ring: `frame_nr` slots of `frame_size` bytes in blocks of `block_size`."""

    frame_size: int
    frame_nr: int
    block_size: int

    @property
    def frames_per_block(self) -> int:
        return self.block_size // self.frame_size

    @property
    def block_nr(self) -> int:
        return self.frame_nr // self.frames_per_block

    @property
    def size(self) -> int:
        """Bytes of the mapping."""
        return self.block_size * self.block_nr

    @property
    def rx_capacity(self) -> int:
        """The longest received frame a slot holds whole."""
        return self.frame_size - RX_DATA_OFFSET

    @property
    def tx_capacity(self) -> int:
        """The longest frame a slot can send."""
        return self.frame_size - TX_DATA_OFFSET

    def request(self) -> bytes:
        """The `struct tpacket_req` for PACKET_RX_RING / PACKET_TX_RING."""
        return _TPACKET_REQ.pack(self.block_size, self.block_nr, self.frame_size, self.frame_nr)


def ring_geometry(frames: int, frame_size: int = 2048, block_size: int = 4 * PAGE_SIZE) -> Geometry:
    """A geometry the kernel accepts with at least `frames` slots (rounded up to whole blocks).

    The kernel's rules (af_packet.c, packet_set_ring): the block size is a multiple of the page
    size, the frame size a multiple of 16 and large enough for the header; frames never straddle
    blocks. We also want the block size to be a multiple of the frame size, so that slot i is at
    i * frame_size and a drain needs no per-block arithmetic.
    """
    if frames < 1:
        raise ValueError(f"a ring needs at least one frame, not {frames}")
    if frame_size % TPACKET_ALIGNMENT or frame_size < RX_DATA_OFFSET + ETH_HLEN:
        raise ValueError(
            f"frame size {frame_size} must be a multiple of {TPACKET_ALIGNMENT} "
            f"and at least {RX_DATA_OFFSET + ETH_HLEN}"
        )
    if block_size < PAGE_SIZE or block_size % PAGE_SIZE:
        raise ValueError(f"block size {block_size} must be a multiple of the page size {PAGE_SIZE}")
    if block_size % frame_size:
        raise ValueError(f"block size {block_size} must be a multiple of frame size {frame_size}")
    per_block = block_size // frame_size
    blocks = -(-frames // per_block)
    return Geometry(frame_size=frame_size, frame_nr=blocks * per_block, block_size=block_size)


DEFAULT_RX_GEOMETRY = ring_geometry(512)  # see the module docstring: bursts, not backlog
DEFAULT_TX_GEOMETRY = ring_geometry(256)  # more than one drain's frames for one egress


def packet_statistics(sock: socket.socket) -> tuple[int, int]:
    """(frames seen, frames dropped) since the last call: reading resets the kernel's counters.

    With a ring, "seen" includes the dropped ones (the kernel adds drops to tp_packets for V1/V2)
    and "dropped" counts frames that found the ring full: overload, made visible.
    """
    raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size)
    packets, drops = _TPACKET_STATS.unpack(raw)
    return packets, drops


def set_qdisc_bypass(sock: socket.socket) -> None:
    """Send straight to the driver, skipping the qdisc (and the packet taps; see the docstring)."""
    sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)


def _map_ring(sock: socket.socket, option: int, geometry: Geometry) -> mmap.mmap:
    # PACKET_VERSION must precede the ring (the kernel refuses to change it under a ring). One
    # socket maps one ring here: with both rings on one socket the kernel insists on a single
    # mapping of both, so the relay gives its transmit ring a socket of its own.
    sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
    sock.setsockopt(SOL_PACKET, option, geometry.request())
    try:
        return mmap.mmap(
            sock.fileno(), geometry.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
        )
    except BaseException:
        _unset_ring(sock, option)
        raise


def _unset_ring(sock: socket.socket, option: int) -> None:
    # A request with no blocks frees the ring (allowed once nothing maps it any more).
    with contextlib.suppress(OSError):
        sock.setsockopt(SOL_PACKET, option, _TPACKET_REQ.pack(0, 0, 0, 0))


def _socket_of(sock: socket.socket | None) -> socket.socket:
    if sock is None:
        raise ValueError("this ring was built over a bare mapping: it has no socket")
    return sock


class _Ring:
    """What both rings are: a mapping laid out as a geometry, on a socket (None in tests)."""

    _OPTION = 0  # PACKET_RX_RING or PACKET_TX_RING

    def __init__(
        self, mapping: mmap.mmap, geometry: Geometry, sock: socket.socket | None = None
    ) -> None:
        """A ring over `mapping` laid out as `geometry` (tests pass an anonymous mapping)."""
        self.sock = sock
        self.geometry = geometry
        self._map = mapping
        self._next = 0  # the slot we read or write next

    def fileno(self) -> int:
        """The socket's fd: readable while a frame waits in an RX ring, writable for a TX one."""
        return _socket_of(self.sock).fileno()

    def close(self) -> None:
        """Unmap the ring and free it; the socket (the caller's) goes back to plain I/O."""
        if self._map.closed:
            return
        self._map.close()
        if self.sock is not None:
            _unset_ring(self.sock, self._OPTION)


class RxRing(_Ring):
    """A TPACKET_V2 receive ring on an open, bound AF_PACKET socket (the caller keeps the socket).

    `drain()` after each readiness event of `fileno()`; `close()` unmaps the ring and returns the
    socket to plain receives.
    """

    _OPTION = PACKET_RX_RING

    def __init__(
        self, mapping: mmap.mmap, geometry: Geometry, sock: socket.socket | None = None
    ) -> None:
        super().__init__(mapping, geometry, sock)
        self.truncated = 0  # frames longer than a slot, skipped
        self.skipped = 0  # slots given up on (see _gone)
        self.late = 0  # frames received before `oldest`, handed back unread
        self.bytes = 0  # of the frames drained
        self._behind = False  # the last drain found a frame older than `oldest`, and more after
        self._stalled = -1  # the slot the last drain stopped at while its successor was ready

    @classmethod
    def attach(cls, sock: socket.socket, geometry: Geometry = DEFAULT_RX_GEOMETRY) -> RxRing:
        """Put a receive ring on `sock` (open and bound, any filter already attached)."""
        # Frames queued on the socket before the ring existed would keep poll() readable while
        # drain() finds nothing; packet_set_ring purges that queue as it switches to the ring.
        return cls(_map_ring(sock, PACKET_RX_RING, geometry), geometry, sock)

    def drain(self, limit: int = 0, oldest: float = 0.0) -> list[RxFrame]:
        """Every frame ready in the ring (at most `limit`, 0 = one ring's worth), in arrival order.

        Each frame is copied out and its slot handed back to the kernel at once; no system call.
        A frame the kernel received before `oldest` (seconds since the epoch, the clock of
        tp_sec/tp_nsec) has waited too long to be worth relaying: when the previous drain found
        such a frame too and stopped at its limit with more ready (the reader is behind a
        backlog, not just woken late after a scheduling gap), its slot is handed back unread
        and it is counted in `late`. That bounds the wait in time whatever the frame size and
        the relay's rate (a full ring is 512 frames of work), and lets an overloaded relay
        catch up at the cost of a header read per stale frame; a reader that keeps up, however
        late it is woken, loses nothing.
        """
        m = self._map
        unpack = HEADER.unpack_from
        release = _STATUS.pack_into
        size = self.geometry.frame_size
        count = self.geometry.frame_nr
        i = first = self._next
        stalled, self._stalled = self._stalled, -1  # what the previous drain stopped at
        out: list[RxFrame] = []
        append = out.append
        nbytes = 0
        behind, stale, caught_up = self._behind, False, False
        for _ in range(limit or count):
            off = i * size
            if not m[off + _USER_BYTE] & TP_STATUS_USER:
                # Past a slot read this drain, the next one not ready is the end of what the
                # kernel wrote; only a drain that finds nothing asks whether a slot is stuck.
                if i != first or not self._gone(i, stalled):
                    caught_up = True
                    break
                self.skipped += 1
                i = first = i + 1 if i + 1 < count else 0
                continue
            status, length, snaplen, mac, _net, sec, nsec, tci, _tpid, pkttype = unpack(m, off)
            if snaplen != length:
                self.truncated += 1
            else:
                old = sec + nsec * 1e-9 < oldest
                stale |= old
                if old and behind:
                    self.late += 1
                else:
                    start = off + mac
                    append((m[start : start + snaplen], status, tci, pkttype, sec, nsec))
                    nbytes += snaplen
            release(m, off, TP_STATUS_KERNEL)
            i += 1
            if i == count:
                i = 0
        self._next = i
        self.bytes += nbytes
        self._behind = stale and not caught_up
        return out

    def _gone(self, i: int, stalled: int) -> bool:
        """Slot `i` is not ready: True to give up on it, because the kernel has moved past it.

        Normally the next slot is not ready either. It can be, briefly, when two CPUs deliver
        at once (a slot's copy finishes after the next one's). It can also be for good: under
        py-spy (ptrace) on Linux 6.18 we once saw a slot the kernel had counted as received and
        moved past never turn TP_STATUS_USER, which left the reader waiting for ever with the fd
        readable. So a slot found not ready by two drains in a row while its successor is ready
        is skipped (counted in `skipped`). Were it only slow, it is read one turn of the ring
        later: it then holds up the kernel's writing when the kernel wraps around to it, never
        the reader. Only a drain that has read nothing yet asks (the slot after the last one
        read is normally just not written yet), so a slot stuck behind frames that one drain
        read is skipped by the second drain after it.
        """
        nxt = i + 1 if i + 1 < self.geometry.frame_nr else 0
        if not _STATUS.unpack_from(self._map, nxt * self.geometry.frame_size)[0] & TP_STATUS_USER:
            return False
        if stalled == i:
            return True
        self._stalled = i
        return False


class TxRing(_Ring):
    """A TPACKET_V2 transmit ring on an open AF_PACKET socket bound to the egress interface.

    `queue()` frames (a copy into shared memory each, no system call), then `flush()` once: one
    `send` hands every queued frame to the driver. A sender that builds its frames in place (the
    bench's generator stamps a few bytes into a template) uses `reserve()` and `commit()`
    instead of `queue()`. The socket should be one of its own (see `_map_ring`); bound with
    protocol 0 it receives nothing, so it costs nothing on receive.
    """

    _OPTION = PACKET_TX_RING

    def __init__(
        self, mapping: mmap.mmap, geometry: Geometry, sock: socket.socket | None = None
    ) -> None:
        super().__init__(mapping, geometry, sock)
        self.full = 0  # frames refused because every slot was still in flight
        self.rejected = 0  # frames refused for their length
        self.pending = 0  # queued since the last flush

    @classmethod
    def attach(cls, sock: socket.socket, geometry: Geometry = DEFAULT_TX_GEOMETRY) -> TxRing:
        """Put a transmit ring on `sock` (open and bound to the egress interface)."""
        # A slot the kernel cannot send (too short for the device, say) is skipped and freed
        # rather than stopping the ring with TP_STATUS_WRONG_FORMAT until we notice.
        sock.setsockopt(SOL_PACKET, PACKET_LOSS, 1)
        return cls(_map_ring(sock, PACKET_TX_RING, geometry), geometry, sock)

    @property
    def mapping(self) -> mmap.mmap:
        """The shared memory the frames go into (for `reserve`)."""
        return self._map

    def queue(self, frame: bytes) -> bool:
        """Copy `frame` into the next free slot; False (and counted) when it does not fit."""
        n = len(frame)
        if n < ETH_HLEN or n > self.geometry.tx_capacity:
            self.rejected += 1
            return False
        start = self.reserve()
        if start is None:
            return False
        self._map[start : start + n] = frame
        self.commit(n)
        return True

    def fill(self, frame: bytes) -> None:
        """Copy `frame` into every slot, for a sender that then changes only a few bytes of each
        frame in place (`reserve`, write, `commit`) instead of copying it whole. Every slot must
        be free (nothing in flight: after a waiting flush)."""
        n = len(frame)
        if n < ETH_HLEN or n > self.geometry.tx_capacity:
            raise ValueError(f"a frame of {n} bytes does not fit a slot")
        m, size = self._map, self.geometry.frame_size
        for off in range(0, size * self.geometry.frame_nr, size):
            m[off + TX_DATA_OFFSET : off + TX_DATA_OFFSET + n] = frame

    def reserve(self) -> int | None:
        """Where the next frame goes: its offset in `mapping`, to be written there (at most
        `geometry.tx_capacity` bytes) and handed over with `commit`; None, counted in `full`,
        while the kernel still owns that slot (sending is slower than queueing)."""
        off = self._next * self.geometry.frame_size
        if _STATUS.unpack_from(self._map, off)[0] != TP_STATUS_AVAILABLE:
            self.full += 1
            return None
        return off + TX_DATA_OFFSET

    def commit(self, length: int) -> None:
        """Queue the slot `reserve` returned, now holding a frame of `length` bytes."""
        off = self._next * self.geometry.frame_size
        # tp_len before tp_status: the kernel may take the slot as soon as the status says so.
        _TX_LENGTHS.pack_into(self._map, off + 4, length, length)
        _STATUS.pack_into(self._map, off, TP_STATUS_SEND_REQUEST)
        self._next = (self._next + 1) % self.geometry.frame_nr
        self.pending += 1

    def flush(self, wait: bool = False) -> int:
        """Send everything queued with one system call; the number of bytes the kernel took.

        By default (MSG_DONTWAIT) the kernel hands the frames to the driver and returns without
        waiting for them to leave, so the event loop never blocks here; slots free up as frames
        complete. `wait` (on a blocking socket) returns once every queued frame has left and
        its slot is free again. It raises what `send` raises (ENOBUFS from a full device queue,
        ENETDOWN); the frames not taken stay queued for the next flush.
        """
        if not self.pending:
            return 0
        taken = _socket_of(self.sock).send(b"", 0 if wait else socket.MSG_DONTWAIT)
        self.pending = 0
        return taken
