"""Per-frame cost of the ways to send and receive on an AF_PACKET socket (root, Linux).

Builds two throw-away namespaces joined by a veth pair, then measures each method in its own
process, by itself (µs of user+sys CPU per frame from getrusage, wall rate) and again under
`strace -c -f` (system calls per frame). It backs the figures in crosscast/net/ring.py's
docstring; it gates nothing.

    sudo .venv/bin/python benchmarks/ring_bench.py [--count 100000] [--payload 64] [--no-strace]

TX methods (in namespace A, frames to B, nobody listening): `send` on a bound socket, `sendto`
with the interface in the address, `send` with PACKET_QDISC_BYPASS, TxRing flushed every 32
frames and every frame. RX methods (in namespace B, while a TxRing in A blasts `--count` frames,
and then at a paced 2,000 frames/s where every frame is its own wake-up): RxRing.drain,
`recv_into` until EAGAIN, `recvmsg` with PACKET_AUXDATA until EAGAIN (today's capture).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import secrets
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crosscast.net import netns, ring
from crosscast.net.bpf import DEFAULT_SNAPLEN, DROP_ALL, RET_K
from crosscast.net.packet import AUXDATA_SPACE, open_packet_socket

MAC_A = bytes.fromhex("02000000000a")
PAYLOAD = int(os.environ.get("RING_BENCH_PAYLOAD", "64"))  # children inherit --payload
END = b"\xee" * 8  # payload prefix of the end-of-run marker frames
IDLE = 1.0  # seconds without a frame after which a receiver gives up
TX_METHODS = ("send", "sendto", "send-bypass", "txring-32", "txring-1")
RX_METHODS = ("rxring", "recv_into", "recvmsg")
HOT_CALLS = ("sendto", "sendmsg", "ioctl", "recvfrom", "recvmsg", "poll", "select", "write")


def frame(payload: bytes) -> bytes:
    """A broadcast Ethernet/IPv4/UDP frame (checksums are irrelevant: nobody parses it)."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0, 64, 17, 0,
                     bytes((10, 0, 0, 1)), bytes((10, 0, 0, 255)))  # fmt: skip
    udp = struct.pack("!HHHH", 5076, 5076, 8 + len(payload), 0)
    return b"\xff" * 6 + MAC_A + b"\x08\x00" + ip + udp + payload


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def tx_socket() -> socket.socket:
    """Bound to eth0 with protocol 0: it sends, and receives nothing."""
    s = open_packet_socket("eth0", DROP_ALL, protocol=0, ignore_outgoing=False)
    s.setblocking(True)
    return s


def run_tx(method: str, count: int) -> dict[str, float]:
    s = tx_socket()
    data = frame(bytes(PAYLOAD))
    t0, c0 = time.perf_counter(), cpu()
    if method in ("send", "send-bypass"):
        if method == "send-bypass":
            ring.set_qdisc_bypass(s)
        send = s.send
        for _ in range(count):
            send(data)
    elif method == "sendto":
        sendto, address = s.sendto, ("eth0", 0)
        for _ in range(count):
            sendto(data, address)
    else:
        batch = int(method.split("-")[1])
        tx = ring.TxRing.attach(s)
        sent = 0
        while sent < count:
            n = min(batch, count - sent)
            queued = sum(tx.queue(data) for _ in range(n))
            tx.flush()
            sent += queued
            if queued < n:  # slots still in flight: wait for the kernel to free them
                select.select([], [s], [], 0.01)
    wall, used = time.perf_counter() - t0, cpu() - c0
    return {"frames": count, "cpu_us": used / count * 1e6, "pps": count / wall}


def blast(count: int, rate: float) -> None:
    """The RX generator: `count` frames through a TxRing (paced at `rate` if > 0), then ENDs."""
    s = tx_socket()  # plain sends (with a TX ring on it, send() would mean "flush the ring")
    data = frame(bytes(PAYLOAD))
    if rate > 0:
        gap, due = 1.0 / rate, time.perf_counter()
        for _ in range(count):
            s.send(data)
            due += gap
            with contextlib.suppress(ValueError):
                time.sleep(max(0.0, due - time.perf_counter()))
    else:
        tx = ring.TxRing.attach(tx_socket())
        sent = 0
        while sent < count:
            while sent < count and tx.queue(data):
                sent += 1
            tx.flush()
            select.select([], [tx], [], 0.001)
    time.sleep(0.2)
    for _ in range(3):
        s.send(frame(END + bytes(PAYLOAD - len(END))))


def run_rx(method: str, ready: Path) -> dict[str, float]:
    s = open_packet_socket(
        "eth0",
        ((RET_K, 0, 0, DEFAULT_SNAPLEN),),  # everything: IPv6 is off, nothing else talks
        auxdata=method == "recvmsg",
        buffer_size=None if method == "rxring" else 1 << 20,
    )
    end_at = 14 + 28  # where the payload starts
    got = wakeups = 0
    poller = select.poll()
    poller.register(s, select.POLLIN)
    rx = None
    if method == "rxring":
        rx = ring.RxRing.attach(s)
    buf = bytearray(65536)
    view = memoryview(buf)
    ready.write_text("ready")
    c0 = t0 = None
    last = 0.0
    done = False
    while not done:
        if not poller.poll(IDLE * 1000):
            break
        if c0 is None:
            c0, t0 = cpu(), time.perf_counter()
        wakeups += 1
        frames: list[bytes] = []
        if rx is not None:
            frames = [f[0] for f in rx.drain()]
        elif method == "recv_into":
            with contextlib.suppress(BlockingIOError):
                while True:
                    n = s.recv_into(buf)
                    frames.append(bytes(view[:n]))
        else:
            with contextlib.suppress(BlockingIOError):
                while True:
                    data, _anc, _flags, _addr = s.recvmsg(65535, AUXDATA_SPACE)
                    frames.append(data)
        before = got
        for f in frames:
            if f[end_at : end_at + len(END)] == END:
                done = True
            else:
                got += 1
        if got > before:
            last = time.perf_counter()
    used = cpu() - (c0 or 0.0)
    wall = last - (t0 or 0.0)
    drops = ring.packet_statistics(s)[1]
    return {
        "frames": got,
        "cpu_us": used / max(got, 1) * 1e6,
        "pps": got / wall,
        "wakeups_per_frame": wakeups / max(got, 1),
        "kernel_drops": drops,
    }


# ---------------------------------------------------------------------------------------------
# The driver: namespaces, one process per measurement, strace


def setup(prefix: str) -> tuple[str, str]:
    a, b = f"{prefix}-a", f"{prefix}-b"
    for ns in (a, b):
        netns.add(ns)
    netns.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b],
              ns=a)  # fmt: skip
    for ns, mac in ((a, MAC_A), (b, bytes.fromhex("02000000000b"))):
        netns.run(["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"], ns=ns)
        netns.run(["ip", "link", "set", "eth0", "address", mac.hex(":"), "up"], ns=ns)
    return a, b


def strace_calls(path: Path) -> dict[str, int]:
    calls = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if m:
            calls[m.group(2)] = int(m.group(1))
    return calls


def child(ns: str, argv: list[str], trace: Path | None) -> subprocess.Popen[str]:
    cmd = [sys.executable, __file__, *argv]
    if trace is not None and trace.suffix == ".spy":  # a py-spy profile (raw, for flamegraphs)
        py_spy = Path(sys.executable).with_name("py-spy")
        cmd = [str(py_spy), "record", "-r", "500", "-f", "raw", "-o", str(trace), "--", *cmd]
    elif trace is not None:
        cmd = ["strace", "-c", "-f", "-o", str(trace), *cmd]
    return subprocess.Popen(netns.exec_argv(ns, cmd), stdout=subprocess.PIPE, text=True)


def result(out: str) -> dict[str, float]:
    """The child's JSON line (py-spy prints its own lines on the same stdout)."""
    line = next(x for x in reversed(out.splitlines()) if x.startswith("{"))
    return dict(json.loads(line))


def measure_tx(a: str, method: str, count: int, trace: Path | None) -> dict[str, float]:
    proc = child(a, ["tx", method, str(count)], trace)
    out, _ = proc.communicate()
    return result(out)


def measure_rx(
    a: str, b: str, method: str, count: int, rate: float, trace: Path | None, tmp: Path
) -> dict[str, float]:
    ready = tmp / f"ready-{secrets.token_hex(4)}"
    rx = child(b, ["rx", method, str(ready)], trace)
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    gen = child(a, ["gen", str(count), str(rate)], None)
    gen.communicate()
    out, _ = rx.communicate()
    return result(out)


def per_frame(calls: dict[str, int], frames: float) -> str:
    hot = {k: v / frames for k, v in calls.items() if k in HOT_CALLS and v / frames >= 0.0005}
    total = sum(hot.values())
    return f"{total:.3f} (" + ", ".join(f"{k} {v:.3f}" for k, v in sorted(hot.items())) + ")"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--payload", type=int, default=PAYLOAD, help="UDP payload bytes")
    parser.add_argument("--paced", type=int, default=4_000, help="frames of the paced RX run")
    parser.add_argument("--no-strace", action="store_true")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of RX here")
    args = parser.parse_args()
    if args.payload != PAYLOAD:  # the module constant is read at import: start again with it
        os.environ["RING_BENCH_PAYLOAD"] = str(args.payload)
        os.execv(sys.executable, [sys.executable, *sys.argv])  # noqa: S606 (our own argv)
    prefix = "rb" + secrets.token_hex(2)
    a, b = setup(prefix)
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            print(f"TX, {args.count} frames of {len(frame(bytes(PAYLOAD)))} bytes")
            for method in TX_METHODS:
                r = measure_tx(a, method, args.count, None)
                line = f"  {method:12} {r['cpu_us']:6.2f} µs/frame {r['pps']:9.0f} frames/s"
                if not args.no_strace:
                    trace = tmp / "trace"
                    measure_tx(a, method, args.count, trace)
                    line += "  syscalls/frame " + per_frame(strace_calls(trace), args.count)
                print(line, flush=True)
            for label, count, rate in (
                ("blast", args.count, 0.0),
                ("paced 2000/s", args.paced, 2000.0),
            ):
                print(f"RX, {label}, {count} frames")
                for method in RX_METHODS:
                    r = measure_rx(a, b, method, count, rate, None, tmp)
                    line = (
                        f"  {method:12} {r['cpu_us']:6.2f} µs/frame {r['pps']:9.0f} frames/s "
                        f"got {r['frames']:.0f} wake-ups/frame {r['wakeups_per_frame']:.3f} "
                        f"kernel drops {r['kernel_drops']:.0f}"
                    )
                    if not args.no_strace:
                        trace = tmp / "trace"
                        t = measure_rx(a, b, method, count, rate, trace, tmp)
                        line += "  syscalls/frame " + per_frame(strace_calls(trace), t["frames"])
                    if args.profile is not None:
                        args.profile.mkdir(parents=True, exist_ok=True)
                        spy = args.profile / f"rx-{method}-{label.split()[0]}.spy"
                        measure_rx(a, b, method, count, rate, spy, tmp)
                    print(line, flush=True)
    finally:
        for ns in (a, b):
            netns.delete(ns)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "tx":
        print(json.dumps(run_tx(sys.argv[2], int(sys.argv[3]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "rx":
        print(json.dumps(run_rx(sys.argv[2], Path(sys.argv[3]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "gen":
        blast(int(sys.argv[2]), float(sys.argv[3]))
    else:
        os.umask(0o022)
        main()
