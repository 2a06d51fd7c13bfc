"""The bench's traffic generator: paced UDP broadcast frames written through an AF_PACKET TX ring.

It owns the payload format the sink reads (magic, run id, sequence number, send time) and the
one process that sends it. Frames are real Ethernet/IPv4/UDP broadcasts with valid checksums:
the frame is built once (`crosscast.net.frames.build_udp_frame`) and copied once into every slot
of a PACKET_TX_RING (`crosscast.net.ring.TxRing`, TPACKET_V2, mmap); per frame only the 24-byte
header and the UDP checksum change, the checksum updated from the precomputed sum of the
constant part (RFC 1624). Frames due in one millisecond are filled into the ring and handed to
the kernel with one `send()`, so Python costs a few microseconds per frame and one system call
per batch: the generator is not the bottleneck below about 100k pps (its ceiling is what the
bench's kernel-path row shows).

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
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from crosscast.net import frames
from crosscast.net.bpf import DROP_ALL
from crosscast.net.packet import open_packet_socket
from crosscast.net.ring import TxRing, ring_geometry, set_qdisc_bypass

MAGIC = b"CCB1"
# magic, run id, sequence number, send time (CLOCK_REALTIME ns): what the sink reads back.
HEADER = struct.Struct("!4sIQQ")
HEADER_LEN = HEADER.size  # 24 bytes, so the smallest payload the bench sends (64 B) has room
_U16 = struct.Struct("!H")

SLOTS = 1024  # TX ring slots: more than one millisecond at any rate the bench offers
ETH_UDP_OFFSET = frames.ETH_HLEN + frames.IP_MIN_HLEN  # the UDP header in a built frame
PAYLOAD_OFFSET = ETH_UDP_OFFSET + frames.UDP_HLEN
TICK = 0.001  # seconds between batches: frames due in one tick leave together
MAX_BATCH = 256  # frames per send(): bounded so a late tick cannot hog the ring (< SLOTS)


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


class Sender:
    """The generator's TX ring on one interface, with the template of the current payload size."""

    def __init__(self, iface: str) -> None:
        # Protocol 0: it receives nothing. Blocking, so that a flush can wait for the frames.
        self.sock = open_packet_socket(iface, DROP_ALL, protocol=0, ignore_outgoing=False)
        self.sock.setblocking(True)
        with contextlib.suppress(OSError):  # the bench measures relays, not the sender's qdisc
            set_qdisc_bypass(self.sock)
        self.ring = TxRing.attach(self.sock, ring_geometry(SLOTS))
        self.template: Template | None = None

    def load(self, template: Template) -> None:
        """Use `template` from now on: copied into every slot once, so that per frame only its
        header and checksum are written."""
        self.ring.flush(wait=True)
        self.ring.fill(template.frame)
        self.template = template

    def send(self, run_id: int, first_seq: int, count: int) -> None:
        """Stamp `count` frames with sequence numbers from `first_seq` and transmit them; back
        once they have all left (a flush that waits), so every slot is free for the next call."""
        template = self.template
        if template is None:
            raise RuntimeError("load() a template first")
        ring, length, now_ns = self.ring, len(template.frame), time.time_ns
        m, reserve, commit = ring.mapping, ring.reserve, ring.commit
        for seq in range(first_seq, first_seq + count):
            at = reserve()
            if at is None:  # every slot is free after a waiting flush, and count <= MAX_BATCH
                raise RuntimeError(f"{count} frames do not fit a ring of {SLOTS} slots")
            stamp(m, at, template, run_id, seq, now_ns())
            commit(length)
        ring.flush(wait=True)

    def close(self) -> None:
        self.ring.close()
        self.sock.close()


def run_trial(sender: Sender, run_id: int, rate: int, seconds: float) -> dict[str, float]:
    """Send rate * seconds frames, paced in batches of what is due each millisecond."""
    total = max(1, round(rate * seconds))
    sent = 0
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    while sent < total:
        n = min(due(rate, time.monotonic() - start, total) - sent, MAX_BATCH)
        if n > 0:
            sender.send(run_id, sent, n)
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
    sender = Sender(args.iface)
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
            if sender.template is not templates[size]:
                sender.load(templates[size])
            print(json.dumps(run_trial(sender, run_id, rate, seconds)), flush=True)
    sender.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
