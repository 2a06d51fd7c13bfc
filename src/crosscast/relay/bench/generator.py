"""The bench's traffic generator: paced UDP broadcast frames written through an AF_PACKET TX ring.

It owns the payload format the sink reads (magic, run id, sequence number, send time) and the
one process that sends it. Frames are real Ethernet/IPv4/UDP broadcasts with valid checksums:
the frame is built once (`crosscast.net.frames.build_udp_frame`) and copied into every slot of
a PACKET_TX_RING (TPACKET_V2, mmap); per frame only the 24-byte header and the UDP checksum
change, the checksum updated from the precomputed sum of the constant part (RFC 1624). Frames
due in one millisecond are filled into the ring and handed to the kernel with one `send()`, so
Python costs a few microseconds per frame and one system call per batch: the generator is not
the bottleneck below about 100k pps (its ceiling is what the bench's kernel-path row shows).

Run as a process inside the sender's namespace (`python -m crosscast.relay.bench.generator`);
it reads commands on stdin and answers each with one JSON line on stdout:
`run RUN_ID RATE SECONDS` -> {"sent": N, "elapsed": S}; `quit` (or EOF) ends it.
It must not know anything about relays or topologies.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import resource
import socket
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from crosscast.net import frames

MAGIC = b"CCB1"
# magic, run id, sequence number, send time (CLOCK_REALTIME ns): what the sink reads back.
HEADER = struct.Struct("!4sIQQ")
HEADER_LEN = HEADER.size  # 24 bytes, so the smallest payload the bench sends (64 B) has room
_U16 = struct.Struct("!H")
_U32 = struct.Struct("=I")  # tpacket2_hdr fields are host-endian

SOL_PACKET = 263  # linux/socket.h
PACKET_VERSION = 10  # linux/if_packet.h
PACKET_TX_RING = 13  # linux/if_packet.h
PACKET_QDISC_BYPASS = 20  # linux/if_packet.h
TPACKET_V2 = 1  # linux/if_packet.h (enum tpacket_versions)
TP_STATUS_AVAILABLE = 0  # linux/if_packet.h
TP_STATUS_SEND_REQUEST = 1  # linux/if_packet.h
# TPACKET_V2 TX without PACKET_TX_HAS_OFF: data starts at TPACKET2_HDRLEN - sizeof(sockaddr_ll)
# = TPACKET_ALIGN(sizeof(struct tpacket2_hdr)) = 32 (net/packet/af_packet.c, tpacket_fill_skb).
TX_DATA_OFFSET = 32
FRAME_SIZE = 2048  # one ring slot: room for a 1514-byte frame after the 32-byte header
BLOCK_SIZE = 16384  # a multiple of the page size holding 8 slots
BLOCK_COUNT = 128  # 1024 slots: more than one millisecond at any rate the bench offers
ETH_UDP_OFFSET = frames.ETH_HLEN + frames.IP_MIN_HLEN  # the UDP header in a built frame
PAYLOAD_OFFSET = ETH_UDP_OFFSET + frames.UDP_HLEN
TICK = 0.001  # seconds between batches: frames due in one tick leave together
MAX_BATCH = 256  # frames per send(): bounded so a late tick cannot hog the ring


@dataclass(frozen=True)
class Template:
    """One broadcast frame of the trial's size, and the checksum sum of its constant part."""

    frame: bytes
    # One's-complement sum (modulo 0xFFFF) of the pseudo header and UDP segment with the magic
    # in place, run id, sequence number and send time zero and the checksum field ignored.
    base_sum: int

    @property
    def payload_len(self) -> int:
        return len(self.frame) - PAYLOAD_OFFSET


def build_template(src_mac: str, src_ip: str, dst_ip: str, port: int, payload_len: int) -> Template:
    """A broadcast frame from (src_mac, src_ip) to dst_ip:port with a zeroed bench header."""
    if payload_len < HEADER_LEN:
        raise ValueError(f"payload must be at least {HEADER_LEN} bytes, not {payload_len}")
    src, dst = frames.ip_from_str(src_ip), frames.ip_from_str(dst_ip)
    frame = frames.build_udp_frame(
        src_mac=frames.mac_from_str(src_mac),
        dst_mac=b"\xff" * 6,
        src_ip=src,
        dst_ip=dst,
        src_port=port,
        dst_port=port,
        payload=MAGIC + bytes(payload_len - len(MAGIC)),
    )
    # The frame's checksum field is the complement of the whole sum; its complement is the sum.
    checksum: int = _U16.unpack_from(frame, ETH_UDP_OFFSET + 6)[0]
    return Template(frame, 0xFFFF - checksum)


def stamp(
    buf: bytearray | memoryview | mmap.mmap,
    offset: int,
    template: Template,
    run_id: int,
    seq: int,
    now_ns: int,
) -> None:
    """Write the bench header and the matching UDP checksum into the frame at `offset` of `buf`
    (which already holds a copy of `template.frame`)."""
    HEADER.pack_into(buf, offset + PAYLOAD_OFFSET, MAGIC, run_id, seq, now_ns)
    # 2**16 is 1 modulo 0xFFFF, so an integer's 16-bit words sum to the integer itself modulo
    # 0xFFFF: the header's fields add to the checksum as they are (the trick of frames.py).
    # RFC 768: a sum of "negative zero" gives 0xFFFF, never 0 (0 would mean "no checksum").
    total = template.base_sum + run_id + seq + now_ns
    _U16.pack_into(buf, offset + ETH_UDP_OFFSET + 6, 0xFFFF - total % 0xFFFF)


def due(rate: int, elapsed: float, total: int) -> int:
    """How many frames should have been sent `elapsed` seconds into a trial at `rate`."""
    return min(total, int(elapsed * rate) + 1)


class TxRing:
    """A PACKET_TX_RING on one interface: fill slots, then one send() transmits them all."""

    def __init__(self, iface: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        with contextlib.suppress(OSError):  # the bench measures relays, not the sender's qdisc
            self.sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        req = struct.pack("IIII", BLOCK_SIZE, BLOCK_COUNT, FRAME_SIZE, self.slots)
        self.sock.setsockopt(SOL_PACKET, PACKET_TX_RING, req)
        self.ring = mmap.mmap(self.sock.fileno(), BLOCK_SIZE * BLOCK_COUNT)
        self.sock.bind((iface, 0))
        self.head = 0
        self.template: Template | None = None

    @property
    def slots(self) -> int:
        return BLOCK_SIZE * BLOCK_COUNT // FRAME_SIZE

    def load(self, template: Template) -> None:
        """Copy the template into every slot once; per frame only the header changes."""
        self.flush()
        self.template = template
        length = len(template.frame)
        for slot in range(self.slots):
            base = slot * FRAME_SIZE
            self.ring[base + TX_DATA_OFFSET : base + TX_DATA_OFFSET + length] = template.frame
            _U32.pack_into(self.ring, base + 4, length)  # tp_len

    def send(self, run_id: int, first_seq: int, count: int) -> None:
        """Stamp `count` frames with sequence numbers from `first_seq` and transmit them."""
        template = self.template
        if template is None:
            raise RuntimeError("load() a template first")
        ring, slots, head, now_ns = self.ring, self.slots, self.head, time.time_ns
        for seq in range(first_seq, first_seq + count):
            slot = head * FRAME_SIZE
            if _U32.unpack_from(ring, slot)[0] != TP_STATUS_AVAILABLE:
                self.flush()
            stamp(ring, slot + TX_DATA_OFFSET, template, run_id, seq, now_ns())
            _U32.pack_into(ring, slot, TP_STATUS_SEND_REQUEST)
            head = (head + 1) % slots
        self.head = head
        self.flush()

    def flush(self) -> None:
        # A blocking send() on a TX ring returns once every requested slot has gone out.
        self.sock.send(b"")

    def close(self) -> None:
        self.ring.close()
        self.sock.close()


def run_trial(ring: TxRing, run_id: int, rate: int, seconds: float) -> dict[str, float]:
    """Send rate * seconds frames, paced in batches of what is due each millisecond."""
    total = max(1, round(rate * seconds))
    sent = 0
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    while sent < total:
        n = min(due(rate, time.monotonic() - start, total) - sent, MAX_BATCH)
        if n > 0:
            ring.send(run_id, sent, n)
            sent += n
            continue
        next_at = start + sent / rate
        time.sleep(max(0.0, min(TICK, next_at - time.monotonic())))
    elapsed = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    # The generator's own CPU: user space is its Python, system time mostly the kernel's work
    # of carrying the broadcasts (in the sender's context, up to the receivers' sockets).
    return {
        "sent": sent,
        "elapsed": elapsed,
        "cpu_user": after.ru_utime - before.ru_utime,
        "cpu_system": after.ru_stime - before.ru_stime,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="crosscast bench generator (one per sender)")
    p.add_argument("--iface", default="eth0")
    p.add_argument("--src-mac", required=True)
    p.add_argument("--src-ip", required=True)
    p.add_argument("--dst-ip", required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    ring = TxRing(args.iface)
    templates: dict[int, Template] = {}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "run":  # run RUN_ID RATE SECONDS PAYLOAD_LEN
            run_id, rate, seconds, size = (
                int(words[1]),
                int(words[2]),
                float(words[3]),
                int(words[4]),
            )
            if size not in templates:
                templates[size] = build_template(
                    args.src_mac, args.src_ip, args.dst_ip, args.port, size
                )
            if ring.template is not templates[size]:
                ring.load(templates[size])
            print(json.dumps(run_trial(ring, run_id, rate, seconds)), flush=True)
    ring.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
