"""Mesh datagrams built straight from the documented wire formats (not from relay.envelope),
so the hostile-mesh tests also catch a relay that drifts from its own specification.

crosscast envelope (ARCHITECTURE / envelope.py docstring): 32-byte header "!2sBBBBHQQQ" =
magic b"CX", version 1, flags (bit 0: tag present), kind (1 frame, 2 probe), hops, reserved,
origin u64, seq u64, timestamp_ms u64; then the body; then HMAC-SHA256(secret, all before) when
flags bit 0 is set. Kind 3 (batch): the body is one or more frames, each preceded by its
length as a big-endian u16. SnowSignal: b"SS" + the Ethernet frame.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time

HEADER = struct.Struct("!2sBBBBHQQQ")
KIND_FRAME = 1
KIND_BATCH = 3


def batch_body(frames: list[bytes]) -> bytes:
    """The body of a kind-3 envelope carrying `frames`."""
    return b"".join(struct.pack("!H", len(f)) + f for f in frames)


def crosscast_envelope(
    frame: bytes,
    secret: bytes | None,
    origin: int,
    seq: int,
    *,
    hops: int = 0,
    timestamp_ms: int | None = None,
    kind: int = KIND_FRAME,
    version: int = 1,
) -> bytes:
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    flags = 1 if secret is not None else 0
    data = HEADER.pack(b"CX", version, flags, kind, hops, 0, origin, seq, ts) + frame
    if secret is not None:
        data += hmac.new(secret, data, hashlib.sha256).digest()
    return data


def snowsignal_datagram(frame: bytes) -> bytes:
    return b"SS" + frame
