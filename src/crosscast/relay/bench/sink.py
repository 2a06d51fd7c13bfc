"""The bench's sink: receives the generator's datagrams and records when the kernel got each.

It owns the receiving process only: a UDP socket bound to the bench port in the receiver's
namespace, with SO_TIMESTAMPNS (the kernel's receive time, CLOCK_REALTIME, taken before the
sink reads the datagram, so a busy sink adds no latency to what it measures) and SO_RXQ_OVFL
(the socket's own drop counter, so a sink that could not keep up is visible). It drains the
socket in a tight loop and keeps, per datagram of the current run, the sequence number and the
latency (receive time minus the send time in the payload). Statistics are `stats`' business.

Run as a process inside the receiver's namespace (`python -m crosscast.relay.bench.sink`); it
reads commands on stdin and answers each with one JSON line on stdout:
`start RUN_ID` -> {"started": RUN_ID}; `stop PATH` -> writes the run's records to PATH (see
`write_records`) and answers {"received": N, "socket_drops": D}; `quit` (or EOF) ends it.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
from array import array
from collections.abc import Sequence
from pathlib import Path

from crosscast.relay.bench.generator import HEADER, HEADER_LEN, MAGIC

SO_TIMESTAMPNS = 35  # asm-generic/socket.h (SO_TIMESTAMPNS_OLD: a struct timespec)
SO_RXQ_OVFL = 40  # asm-generic/socket.h: a u32 count of datagrams the socket dropped
SO_RCVBUFFORCE = 33  # asm-generic/socket.h: root may exceed net.core.rmem_max
RCVBUF = 32 << 20  # bytes: a whole overload trial may queue while the sink catches up
_TIMESPEC = struct.Struct("=qq")
_U32 = struct.Struct("=I")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) + socket.CMSG_SPACE(_U32.size)
_DRAIN = 4096  # datagrams per drain before stdin is looked at again
_COUNT = struct.Struct("=Q")


def write_records(path: Path, seqs: array[int], latencies: array[int]) -> None:
    """The records file: a count, then the sequence numbers (u64), then the latencies (i64 ns),
    all in arrival order and host byte order."""
    with path.open("wb") as f:
        f.write(_COUNT.pack(len(seqs)))
        seqs.tofile(f)
        latencies.tofile(f)


def read_records(path: Path) -> tuple[array[int], array[int]]:
    """The (sequence numbers, latencies in ns) a sink wrote with `write_records`."""
    data = path.read_bytes()
    (n,) = _COUNT.unpack_from(data)
    seqs, latencies = array("Q"), array("q")
    seqs.frombytes(data[_COUNT.size : _COUNT.size + 8 * n])
    latencies.frombytes(data[_COUNT.size + 8 * n : _COUNT.size + 16 * n])
    return seqs, latencies


class Sink:
    """The receiving socket and the current run's records."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except PermissionError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        self.sock.bind(("", port))
        self.sock.setblocking(False)
        self.run_id = -1
        self.seqs: array[int] = array("Q")
        self.latencies: array[int] = array("q")
        self.drops = 0
        self.drops_at_start = 0

    def start(self, run_id: int) -> None:
        self.drain()  # what is still queued belongs to an earlier run
        self.run_id = run_id
        self.seqs, self.latencies = array("Q"), array("q")
        self.drops_at_start = self.drops

    def drain(self) -> int:
        """Read until the socket is empty (or _DRAIN datagrams); how many were read."""
        recvmsg = self.sock.recvmsg
        unpack_header = HEADER.unpack_from
        unpack_ts = _TIMESPEC.unpack
        run_id = self.run_id
        seqs, latencies = self.seqs, self.latencies
        n = 0
        while n < _DRAIN:
            try:
                data, ancdata, _flags, _addr = recvmsg(HEADER_LEN, _ANCILLARY)
            except BlockingIOError:
                break
            n += 1
            received = 0
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET:
                    if kind == SO_TIMESTAMPNS:
                        sec, nsec = unpack_ts(value)
                        received = sec * 1_000_000_000 + nsec
                    elif kind == SO_RXQ_OVFL:
                        self.drops = _U32.unpack(value)[0]
            if len(data) < HEADER_LEN or not received:
                continue
            magic, run, seq, sent = unpack_header(data)
            if magic == MAGIC and run == run_id:
                seqs.append(seq)
                latencies.append(received - sent)
        return n


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="crosscast bench sink (one per receiver)")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    sink = Sink(args.port)
    print(json.dumps({"ready": True}), flush=True)
    pending = b""
    stdin = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([sink.sock, stdin], [], [], 1.0)
        if sink.sock in ready:
            while sink.drain() == _DRAIN and not select.select([stdin], [], [], 0)[0]:
                pass
        if stdin not in ready:
            continue
        chunk = os.read(stdin, 4096)
        if not chunk:
            return 0
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            words = line.decode().split()
            if not words:
                continue
            if words[0] == "quit":
                return 0
            if words[0] == "start":
                sink.start(int(words[1]))
                print(json.dumps({"started": sink.run_id}), flush=True)
            elif words[0] == "stop":
                while sink.drain() == _DRAIN:
                    pass
                write_records(Path(words[1]), sink.seqs, sink.latencies)
                drops = sink.drops - sink.drops_at_start
                print(json.dumps({"received": len(sink.seqs), "socket_drops": drops}), flush=True)
                sink.run_id = -1


if __name__ == "__main__":
    sys.exit(main())
