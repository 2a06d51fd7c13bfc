"""Mesh wire formats: the SnowSignal envelope and crosscast's own authenticated envelope.

This module owns the bytes that travel between relays over the mesh, and the per-origin
anti-replay state of the receiving side. It is pure: bytes in, values out; the time is passed in
as ``now`` (``time.time()`` seconds) and never read here. It opens no sockets, does no logging
and never looks inside the relayed Ethernet frame (validating that is the caller's job: whatever
comes from the mesh is untrusted even when its tag is good).

SnowSignal format (SnowSignal 0.1.4.2, for interoperability)::

    b"SS" + the whole Ethernet frame

crosscast format (all integers big-endian; the header is 32 bytes)::

    offset  size  field         meaning
    ------  ----  ------------  ----------------------------------------------------------------
         0     2  magic         b"CX"
         2     1  version       1
         3     1  flags         bit 0: a tag is present; other bits 0 when sent, ignored on receipt
         4     1  kind          1 = FRAME (body is an Ethernet frame), 2 = PROBE (body is the
                                sender's mesh port, u16), 3 = BATCH (body is one or more
                                entries, each a u16 length word and that many bytes: a
                                frame, or with bit 15 of the word set a PART, below)
         5     1  hops          relays this datagram has crossed; at most HOP_LIMIT (crosscast
                                never forwards mesh to mesh, so it sends 0, and its engine
                                drops what arrives with HOP_LIMIT or more)
         6     2  reserved      0 when sent, ignored on receipt
         8     8  origin        random u64 naming the relay process that first sent the frame
        16     8  seq           per-origin sequence number (SequenceCounter)
        24     8  timestamp_ms  sender's wall clock, milliseconds since the Unix epoch
        32     n  body          depends on kind
      32+n    32  tag           HMAC-SHA256(secret, every byte before the tag); only if flags bit 0

A BATCH carries the frames one relay captured in one wake-up for the mesh, so that a burst
costs one datagram, one system call per peer and one HMAC instead of one per frame. The sender
never waits to fill one: it batches only what one drain already holds, keeps each datagram at
or under mesh_datagram_max(--mesh-mtu) (MESH_DATAGRAM_MAX for a 1500-byte path MTU: minus
IPv4, UDP and a VXLAN overlay's 50 bytes), and sends a lone frame as a FRAME.

A frame too large for one datagram (a full-size frame plus the envelope on a 1500-byte path, or
any on a Docker overlay's 1450) is cut into PARTs, so that no mesh datagram ever needs IP
fragmentation of its own, which an underlay or a stateful firewall may drop. A PART entry is
the u16 frame id (per origin, wrapping), the u16 offset of its bytes in the frame, the u16
total length of the frame, then the bytes. The parts fill datagrams like frames do, so the
tail of one cut frame shares a datagram with the head of the next: a drain of full-size frames
costs about one datagram per frame (`pack`). The receiver puts the frame back together
(`Reassembly`, bounded: MAX_PENDING frames, PART_HOLD seconds) and relays it whole, so a
segment behind a relay sees the frames its sender sent, not fragments. A relay older than
PARTs drops such a BATCH as "bad-batch": both ends of a mesh need this version for frames
that do not fit a datagram.

A BATCH whose lengths do not add up exactly to its body is dropped whole ("bad-batch"); each
frame in a good one is then validated on its own, like the body of a FRAME. The SnowSignal
format has no batch: it stays one frame per datagram.

Authenticated mode (a shared secret is configured): every datagram must carry a valid tag, its
timestamp must be within ``max_age`` seconds of ``now`` (either direction, to allow for clock
skew) and its (origin, seq) must pass an RFC 4303-style sliding anti-replay window. The window
is updated only after the tag has verified, so a forged datagram can neither be accepted nor
move the window forward and make later genuine datagrams look old.

Unauthenticated mode (no secret): a datagram with a tag is refused (the two ends are
misconfigured, and silently accepting it would hide that), and there is NO freshness or replay
check: without a secret anyone can forge any origin and sequence number, so such a check would
only give a false sense of safety. Duplicates on an unauthenticated mesh are the job of the
relay's short duplicate window, not of this module.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

SNOWSIGNAL_MAGIC = b"SS"  # SnowSignal 0.1.4.2 udp_relay_transmit.py: b"SS" + packet.raw
CROSSCAST_MAGIC = b"CX"
VERSION = 1
KIND_FRAME = 1  # body = an Ethernet frame to relay
KIND_PROBE = 2  # body = the sender's mesh port (segment probe)
KIND_BATCH = 3  # body = (u16 length + Ethernet frame) repeated, one or more times
KINDS = frozenset({KIND_FRAME, KIND_PROBE, KIND_BATCH})


def mesh_datagram_max(path_mtu: int = 1500) -> int:
    """The largest mesh datagram (UDP payload) for a path MTU of `path_mtu`: minus 20 (IPv4),
    8 (UDP) and 50 (VXLAN: outer Ethernet, IPv4, UDP, VXLAN), so a datagram is never
    fragmented, on a Docker overlay network either."""
    return path_mtu - 20 - 8 - 50


MESH_DATAGRAM_MAX = mesh_datagram_max(1500)
HOP_LIMIT = 4  # above it the codec rejects the datagram; at it the engine drops it
TAG_LEN = 32  # HMAC-SHA256 digest size
FLAG_TAG = 0x01

# magic, version, flags, kind, hops, reserved, origin, seq, timestamp_ms
_HEADER = struct.Struct("!2sBBBBHQQQ")
HEADER_LEN = _HEADER.size  # 32, as documented above

_U64_MAX = 2**64 - 1

# Every EnvelopeError.reason, so a caller can pre-register its drop counters.
ENVELOPE_ERROR_REASONS = (
    "short",
    "bad-magic",
    "bad-version",
    "bad-kind",
    "hop-limit",
    "unauthenticated",
    "unexpected-tag",
    "bad-tag",
    "stale",
    "replay",
    "bad-batch",
)


class EnvelopeError(ValueError):
    """A datagram from the mesh that must be dropped; ``reason`` is a short counter label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode_snowsignal(frame: bytes) -> bytes:
    """Wrap an Ethernet frame the way SnowSignal does."""
    if not frame:
        raise ValueError("cannot encode an empty frame")
    return SNOWSIGNAL_MAGIC + frame


def decode_snowsignal(data: bytes) -> bytes:
    """Return the Ethernet frame inside a SnowSignal datagram (not validated: untrusted)."""
    if not data.startswith(SNOWSIGNAL_MAGIC):
        raise EnvelopeError("short" if len(data) < len(SNOWSIGNAL_MAGIC) else "bad-magic")
    if len(data) == len(SNOWSIGNAL_MAGIC):
        raise EnvelopeError("short")
    return data[len(SNOWSIGNAL_MAGIC) :]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One crosscast mesh datagram, decoded."""

    kind: int
    origin: int
    seq: int
    hops: int
    timestamp_ms: int
    body: bytes


class SequenceCounter:
    """Hands out the sequence numbers of one origin: 0, 1, 2, ...

    A u64 counter at thousands of datagrams a second does not wrap in the life of a process;
    the origin id changes on every restart, so numbering starts again at 0 safely.
    """

    __slots__ = ("_next",)

    def __init__(self, start: int = 0) -> None:
        if not 0 <= start <= _U64_MAX:
            raise ValueError(f"sequence start {start} is not a u64")
        self._next = start

    def next(self) -> int:
        seq = self._next
        if seq > _U64_MAX:
            raise OverflowError("sequence numbers exhausted; restart with a new origin")
        self._next = seq + 1
        return seq


class _ReplayWindow:
    """RFC 4303 section 3.4.3 sliding window for one origin.

    ``top`` is the highest sequence number accepted; bit i of ``bitmap`` is set when ``top - i``
    has been accepted.
    """

    __slots__ = ("bitmap", "last_heard", "top")

    def __init__(self, seq: int, now: float) -> None:
        self.top = seq
        self.bitmap = 1
        self.last_heard = now

    def is_replay(self, seq: int, size: int) -> bool:
        if seq > self.top:
            return False
        offset = self.top - seq
        return offset >= size or bool((self.bitmap >> offset) & 1)

    def accept(self, seq: int, size: int, now: float) -> None:
        if seq > self.top:
            shift = seq - self.top
            self.bitmap = 1 if shift >= size else ((self.bitmap << shift) | 1) & ((1 << size) - 1)
            self.top = seq
        else:
            self.bitmap |= 1 << (self.top - seq)
        self.last_heard = now


_LEN = struct.Struct("!H")


PART_FLAG = 0x8000  # in a BATCH entry's length word: the entry is a PART of a larger frame
_PART = struct.Struct("!HHHH")  # length word | PART_FLAG, frame id, offset, total
_PART_FIELDS = struct.Struct("!HHH")
PART_HEADER = _PART_FIELDS.size  # after the length word: frame id, offset, total
MIN_PART = 64  # bytes of frame: a datagram with less room left starts a new one instead
Part = tuple[int, int, int, bytes]  # (frame id, offset, total length, bytes) of one PART


def pack(frames: list[bytes], budget: int, next_id: int) -> tuple[list[tuple[int, bytes]], int]:
    """The (kind, body) of each datagram that carries `frames`, in order, and the next frame id.

    Consecutive frames share a BATCH body while it stays within `budget` bytes; a lone frame is
    a FRAME. A frame too large for a datagram of its own is cut into PARTs under one new frame
    id (u16, wrapping): the first fills the room the current datagram has left, the last leaves
    room for the frames after it. So a drain of full-size frames, on a mesh path whose MTU
    cannot carry a frame plus envelope, costs about one datagram per frame, not two. A frame
    that fits a datagram is never cut.
    """
    if budget < _PART.size + MIN_PART:
        raise ValueError(f"a mesh datagram budget of {budget} bytes cannot carry a part")
    if len(frames) == 1 and len(frames[0]) + _LEN.size <= budget:
        return [(KIND_FRAME, frames[0])], next_id  # a drain of one frame: what the loop gives
    out: list[tuple[int, bytes]] = []
    group: list[bytes] = []  # entries, each with its length word
    lone: bytes | None = None  # the group's frame when the group is that one whole frame
    size = 0

    def flush() -> None:
        nonlocal group, lone, size
        if lone is not None and len(group) == 1:
            out.append((KIND_FRAME, lone))
        else:
            out.append((KIND_BATCH, b"".join(group)))
        group, lone, size = [], None, 0

    for frame in frames:
        n = len(frame) + _LEN.size
        if n <= budget:
            if group and size + n > budget:
                flush()
            if not group:
                lone = frame
            group.append(_LEN.pack(len(frame)) + frame)
            size += n
            continue
        frame_id, next_id = next_id, (next_id + 1) & 0xFFFF
        total, offset = len(frame), 0
        while offset < total:
            room = budget - size - _PART.size
            if room < MIN_PART:
                flush()
                continue
            chunk = frame[offset : offset + room]
            word = PART_FLAG | (PART_HEADER + len(chunk))
            group.append(_PART.pack(word, frame_id, offset, total) + chunk)
            size += _PART.size + len(chunk)
            offset += len(chunk)
            if offset < total:
                flush()
    if group:
        flush()
    return out, next_id


def split_batch(body: bytes) -> list[bytes | Part]:
    """The entries of a BATCH body in order, each a frame or a PART (not validated:
    untrusted); EnvelopeError("bad-batch") when it is empty, holds an empty frame or part, a
    part that overruns its total, or lengths that do not add up to the body exactly."""
    entries: list[bytes | Part] = []
    i, n = 0, len(body)
    while i < n:
        if i + 2 > n:
            raise EnvelopeError("bad-batch")
        length = body[i] << 8 | body[i + 1]
        i += 2
        if length & PART_FLAG:
            length &= ~PART_FLAG
            if length <= PART_HEADER or i + length > n:
                raise EnvelopeError("bad-batch")
            frame_id, offset, total = _PART_FIELDS.unpack_from(body, i)
            data = body[i + PART_HEADER : i + length]
            if offset + len(data) > total:
                raise EnvelopeError("bad-batch")
            entries.append((frame_id, offset, total, data))
        else:
            if not length or i + length > n:
                raise EnvelopeError("bad-batch")
            entries.append(body[i : i + length])
        i += length
    if not entries:
        raise EnvelopeError("bad-batch")
    return entries


class _Hmac:
    """HMAC-SHA256 tags under one secret: authenticated mode's half of the codec.

    RFC 2104 with both padded keys hashed once: a tag is two copies of a prepared SHA-256
    state, two updates and two digests (OpenSSL's, through hashlib), about half the time of
    `hmac.new(...).digest()`, which pads and hashes the key again for every datagram.
    """

    __slots__ = ("_equal", "_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        # Lazy: hashlib and hmac cost about 1 MB of RSS, and only a mesh with a secret needs them.
        import hashlib
        import hmac

        block = hashlib.sha256().block_size
        key = hashlib.sha256(secret).digest() if len(secret) > block else secret
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        self._equal = hmac.compare_digest

    def tag(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def verify(self, data: bytes, tag: bytes) -> bool:
        """Whether `tag` is the tag of `data` (compared in constant time)."""
        return self._equal(self.tag(data), tag)


def parse_secret(secret: bytes) -> bytes:
    """The mesh secret from the contents of its file (settings reads the file).

    One trailing newline is stripped, because editors and ``echo`` add one. An empty secret is
    a ValueError: it would authenticate nothing.
    """
    if secret.endswith(b"\r\n"):
        secret = secret[:-2]
    elif secret.endswith(b"\n"):
        secret = secret[:-1]
    if not secret:
        raise ValueError("the secret is empty")
    return secret


class CrosscastCodec:
    """Encodes and decodes crosscast envelopes; in authenticated mode, also rejects replays.

    One codec serves all peers of a relay: the replay state is kept per origin. An origin's state
    is kept for ``2 * max_age`` seconds after it was last heard: a datagram stays fresh until its
    timestamp is ``max_age`` old, and a sender's clock may run up to ``max_age`` ahead, so any
    datagram the state has accepted is stale before the state is forgotten. At most
    ``max_origins`` origins are tracked (memory stays bounded); when the table is full of live
    origins the one heard least recently is forgotten. Only holders of the secret can create
    origins, so reaching that cap means a peer misbehaves, not an outsider.
    """

    def __init__(
        self,
        secret: bytes | None,
        *,
        max_age: float = 30.0,
        window: int = 1024,
        max_origins: int = 4096,
    ) -> None:
        if secret is not None and not secret:
            raise ValueError("the mesh secret must not be empty")
        if max_age <= 0:
            raise ValueError(f"max_age must be positive, not {max_age}")
        if window < 1:
            raise ValueError(
                f"the replay window must hold at least 1 sequence number, not {window}"
            )
        if max_origins < 1:
            raise ValueError(f"max_origins must be at least 1, not {max_origins}")
        self._mac = _Hmac(secret) if secret is not None else None
        self._max_age_ms = max_age * 1000.0
        self._retention = 2.0 * max_age
        self._window = window
        self._max_origins = max_origins
        # origin -> window, least recently heard first
        self._origins: OrderedDict[int, _ReplayWindow] = OrderedDict()

    @property
    def authenticated(self) -> bool:
        return self._mac is not None

    @property
    def overhead(self) -> int:
        """Bytes a datagram adds to its body: the header, and the tag when authenticated."""
        return HEADER_LEN + (TAG_LEN if self._mac is not None else 0)

    @property
    def tracked_origins(self) -> int:
        """How many origins the replay table holds now (for tests and metrics)."""
        return len(self._origins)

    def encode(self, env: Envelope) -> bytes:
        if env.kind not in KINDS:
            raise ValueError(f"unknown envelope kind {env.kind}")
        if not 0 <= env.hops <= HOP_LIMIT:
            raise ValueError(f"hop count {env.hops} is outside 0..{HOP_LIMIT}")
        for name in ("origin", "seq", "timestamp_ms"):
            value = getattr(env, name)
            if not 0 <= value <= _U64_MAX:
                raise ValueError(f"envelope {name} {value} is not a u64")
        return self.seal(env.kind, env.origin, env.seq, env.hops, env.timestamp_ms, env.body)

    def seal(
        self, kind: int, origin: int, seq: int, hops: int, timestamp_ms: int, body: bytes
    ) -> bytes:
        """`encode` without the checks or the Envelope, for a sender whose values are known good
        (the engine: its own origin, a SequenceCounter's seq, hops 0, a KIND_* constant)."""
        flags = FLAG_TAG if self._mac is not None else 0
        data = _HEADER.pack(
            CROSSCAST_MAGIC, VERSION, flags, kind, hops, 0, origin, seq, timestamp_ms
        )
        data += body
        if self._mac is not None:
            data += self._mac.tag(data)
        return data

    def decode(self, data: bytes, now: float) -> Envelope:
        """Decode one datagram received at ``now``; raise EnvelopeError to drop it."""
        return Envelope(*self.open(data, now))

    def open(self, data: bytes, now: float) -> tuple[int, int, int, int, int, bytes]:
        """`decode` as a plain tuple (kind, origin, seq, hops, timestamp_ms, body), for the
        engine's per-datagram path."""
        if len(data) < HEADER_LEN:
            raise EnvelopeError("short")
        magic, version, flags, kind, hops, _reserved, origin, seq, timestamp_ms = (
            _HEADER.unpack_from(data)
        )
        if magic != CROSSCAST_MAGIC:
            raise EnvelopeError("bad-magic")
        if version != VERSION:
            raise EnvelopeError("bad-version")
        if kind not in KINDS:
            raise EnvelopeError("bad-kind")
        if hops > HOP_LIMIT:
            raise EnvelopeError("hop-limit")
        has_tag = flags & FLAG_TAG
        if self._mac is None:
            if has_tag:
                raise EnvelopeError("unexpected-tag")
            return kind, origin, seq, hops, timestamp_ms, data[HEADER_LEN:]
        if not has_tag:
            raise EnvelopeError("unauthenticated")
        if len(data) < HEADER_LEN + TAG_LEN:
            raise EnvelopeError("short")
        signed, tag = data[:-TAG_LEN], data[-TAG_LEN:]
        if not self._mac.verify(signed, tag):
            raise EnvelopeError("bad-tag")
        # From here on the datagram is genuine; only its freshness is in question.
        if abs(now * 1000.0 - timestamp_ms) > self._max_age_ms:
            raise EnvelopeError("stale")
        self._check_and_record(origin, seq, now)
        return kind, origin, seq, hops, timestamp_ms, signed[HEADER_LEN:]

    def _check_and_record(self, origin: int, seq: int, now: float) -> None:
        self._evict_expired(now)
        state = self._origins.get(origin)
        if state is None:
            while len(self._origins) >= self._max_origins:
                self._origins.popitem(last=False)
            self._origins[origin] = _ReplayWindow(seq, now)
            return
        if state.is_replay(seq, self._window):
            raise EnvelopeError("replay")
        state.accept(seq, self._window, now)
        self._origins.move_to_end(origin)

    def _evict_expired(self, now: float) -> None:
        # Least recently heard first, so stop at the first origin still within retention.
        while self._origins:
            oldest = next(iter(self._origins.values()))
            if now - oldest.last_heard <= self._retention:
                return
            self._origins.popitem(last=False)


PART_HOLD = 1.0  # seconds the parts of an incomplete frame are kept
MAX_PENDING = 64  # incomplete frames at once (at most 64 x 9,216 bytes)


class Reassembly:
    """The receiving side of PARTs: frames put back together from the parts that `pack` cut
    them into, per (origin, frame id). Bounded in count and time: an incomplete frame is
    dropped after PART_HOLD seconds (`expire`) or, when MAX_PENDING are waiting, to make room
    for a new one; the caller counts both. Parts that contradict each other (another total, an
    overlap) drop the frame. A repeated part is ignored.
    """

    __slots__ = ("_pending", "contradicted", "overflowed")

    def __init__(self) -> None:
        # key -> (deadline, total, {offset: bytes}, bytes held); insertion order is age order
        self._pending: OrderedDict[int, tuple[float, int, dict[int, bytes], int]] = OrderedDict()
        self.overflowed = 0  # incomplete frames given up to make room
        self.contradicted = 0  # frames given up because their parts disagree

    def add(self, origin: int, part: Part, now: float) -> bytes | None:
        """The whole frame when `part` completes it, else None."""
        frame_id, offset, total, data = part
        key = origin << 16 | frame_id
        entry = self._pending.get(key)
        if entry is None:
            if len(data) == total:  # a frame of one part (not what pack sends, but whole)
                return data
            if len(self._pending) >= MAX_PENDING:
                self._pending.popitem(last=False)
                self.overflowed += 1
            self._pending[key] = (now + PART_HOLD, total, {offset: data}, len(data))
            return None
        deadline, expected, chunks, held = entry
        if total != expected:
            del self._pending[key]
            self.contradicted += 1
            return None
        if offset in chunks:
            return None
        chunks[offset] = data
        held += len(data)
        if held < total:
            self._pending[key] = (deadline, total, chunks, held)
            return None
        del self._pending[key]
        pieces, at = [], 0
        for o in sorted(chunks):
            if o != at:
                break
            pieces.append(chunks[o])
            at += len(chunks[o])
        if at != total or held != total:  # a gap, an overlap or an overrun
            self.contradicted += 1
            return None
        return b"".join(pieces)

    def expire(self, now: float) -> int:
        """Drop the incomplete frames older than PART_HOLD; how many."""
        pending, n = self._pending, 0
        while pending:
            key = next(iter(pending))
            if pending[key][0] > now:
                break
            del pending[key]
            n += 1
        return n

    def clear(self) -> int:
        n = len(self._pending)
        self._pending.clear()
        return n
