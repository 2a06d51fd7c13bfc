"""Hardening (issue 9) with real traffic in namespaces: rate limits and fairness, fragmented
datagrams in router mode and across the mesh, SIGHUP, a renumbered segment, link flaps with
peer churn, and SIGTERM under load.

Router mode as in test_router_rules.py: VLAN n is bridge brN in one router namespace, isolated
by the router's firewall, so only relay rules cross. The only timings that gate a test are the
behavioural bounds the issue names (the rate limit's count over the measured duration, "within a
second" polled with a deadline of a few seconds, SIGTERM's 2 s, RSS within 10 MB); every figure
is printed (pytest -s shows them).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crosscast import lab
from crosscast.net import netns
from crosscast.net.packet import SOL_PACKET
from integration import routerlab
from integration.routerlab import Sockets

pytestmark = pytest.mark.root

BASE = 227  # VLAN n is 10.227.n.0/24
RATE, BURST = 500, 50
FLOOD_PORT, STEADY_PORT = 9000, 9001
BIG_PORT = 9100
BIG = 4000  # bytes of UDP payload: three IPv4 fragments on a 1500-byte link
FULL = 1472  # bytes of UDP payload: a full-size frame on a 1500-byte link
PACKET_VNET_HDR = 15  # linux/if_packet.h
VNET_HDR_LEN = 10  # struct virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start, _offset
VIRTIO_NET_HDR_GSO_UDP_L4 = 5  # linux/virtio_net.h
GRACE = 2.0  # seconds SIGTERM may take under load

# A packet-socket sender as fast as Python goes: one prebuilt frame, the payload's last 8 bytes
# a counter (distinct frames for the duplicate window), UDP checksum 0 ("none", RFC 768) so the
# counter needs no checksum update. Prints: start end sent.
FLOOD = """
import socket, struct, sys, time
from crosscast.net.frames import build_udp_frame, ip_from_str, mac_from_str
iface, mac, src, dst, port, seconds, tag = sys.argv[1:]
frame = bytearray(build_udp_frame(
    src_mac=mac_from_str(mac), dst_mac=b"\\xff" * 6, src_ip=ip_from_str(src),
    dst_ip=ip_from_str(dst), src_port=40000, dst_port=int(port), payload=tag.encode() + bytes(8)))
frame[40:42] = b"\\0\\0"
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
n, start = 0, time.time()
end = start + float(seconds)
while True:
    struct.pack_into("!Q", frame, len(frame) - 8, n)
    try:
        s.send(frame)
    except OSError:
        pass
    n += 1
    if n & 255 == 0 and time.time() >= end:
        break
print(start, time.time(), n, flush=True)
"""


def flood(host: lab.Host, dst: str, port: int, seconds: float, tag: bytes) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", FLOOD, host.iface, host.mac, host.ip, dst, str(port),
            str(seconds), tag.decode()]  # fmt: skip
    return subprocess.Popen(netns.exec_argv(host.ns, argv), stdout=subprocess.PIPE, text=True)


def flood_result(proc: subprocess.Popen[str]) -> tuple[float, float, int]:
    out, _ = proc.communicate(timeout=60)
    start, end, sent = out.split()
    return float(start), float(end), int(sent)


def token(what: str) -> bytes:
    return f"{what}-{secrets.token_hex(4)}".encode()


SO_TIMESTAMPNS = 35  # asm-generic/socket.h: each datagram's kernel arrival time
_TIMESPEC = struct.Struct("@qq")


def timestamped_listener(ns: str, port: int) -> socket.socket:
    """A UDP listener that records kernel arrival times, with room for a few seconds of flood."""
    sock = lab.udp_listener(ns, port)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    return sock


def arrival_times(sock: socket.socket, tag: bytes) -> list[float]:
    """Arrival times of the queued datagrams starting with `tag` (reads until empty)."""
    out = []
    while True:
        try:
            data, anc, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(_TIMESPEC.size))
        except BlockingIOError:
            return out
        if data.startswith(tag):
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                    out.append(sec + nsec / 1e9)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def sh(ns: str, *argv: str) -> None:
    netns.run(list(argv), ns=ns)


@pytest.fixture(scope="module")
def vlans() -> Iterator[lab.RoutedVlans]:
    prefix = lab.unique_prefix("cch")
    with routerlab.torn_down(prefix):
        v = lab.RoutedVlans.build(prefix, n_vlans=3, hosts_per_vlan=2, relay_hosts=False,
                                  base=BASE)  # fmt: skip
        routerlab.isolate_vlans(v.router, ("br1", "br2", "br3"))
        yield v


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    with Sockets() as s:
        yield s


def relay(v: lab.RoutedVlans, tmp_path: Path, *args: str, name: str = "relay") -> lab.RelayProcess:
    return routerlab.start_relay(v.router, list(args), tmp_path / f"{name}.log", log_level="info")


def bcast(v: lab.RoutedVlans, vlan: int) -> str:
    return v.vlans[vlan].broadcast


def sender(v: lab.RoutedVlans, vlan: int, port: int, index: int = 0) -> Callable[[bytes], None]:
    """Send one broadcast from host `index` of VLAN `vlan` to its segment's `port`."""
    host = v.hosts[vlan][index]
    return lambda payload: lab.send_broadcast(host.ns, bcast(v, vlan), port, payload)


# -- rate limits and fairness ---------------------------------------------------------------


def test_a_flooded_rule_delivers_its_limit_and_another_rule_loses_nothing(
    vlans: lab.RoutedVlans, sockets: Sockets, tmp_path: Path
) -> None:
    r = relay(
        vlans, tmp_path,
        *lab.rule_args(f"flood from br1 to br2 port {FLOOD_PORT} rate {RATE}/s burst {BURST}",
                       f"steady from br3 to br2 port {STEADY_PORT}"),
    )  # fmt: skip
    try:
        flooded = sockets.add(timestamped_listener(vlans.hosts[2][0].ns, FLOOD_PORT))
        steady = sockets.udp(vlans.hosts[2][1].ns, STEADY_PORT)
        tag, steady_tag = token("flood"), token("steady")
        proc = flood(vlans.hosts[1][0], bcast(vlans, 1), FLOOD_PORT, 3.0, tag)
        time.sleep(0.5)  # the steady sender starts inside the flood
        send_steady = sender(vlans, 3, STEADY_PORT)
        for i in range(100):
            send_steady(steady_tag + b"#%d" % i)
            time.sleep(0.01)  # 100 datagrams at 100/s
        start, end, sent = flood_result(proc)
        time.sleep(1.0)  # what the relay still had queued
        arrivals = sorted(arrival_times(flooded, tag))
        got = {d for d, _ in lab.collect(steady, 1.0) if d.startswith(steady_tag)}
    finally:
        r.stop()
    offered = sent / (end - start)
    duration = arrivals[-1] - arrivals[0] if arrivals else 0.0
    # Over the measured duration (kernel arrival times at the receiver) the bucket can pass its
    # burst plus the rate; 20 ms of slack (ten frames at 500/s) for the jitter between the
    # relay's clock reading and the arrival, at either end: on a loaded machine the relay is
    # descheduled between the two for 10-17 ms now and then (one frame over a 10 ms slack).
    bound = BURST + RATE * (duration + 0.02)
    print(f"\nflood offered {sent} frames in {end - start:.2f} s ({offered:,.0f}/s); "
          f"delivered {len(arrivals)} in {duration:.2f} s (bound {bound:.0f}); "
          f"steady delivered {len(got)}/100")  # fmt: skip
    assert offered > 4 * RATE, "the sender did not flood"
    assert len(arrivals) <= bound, r.tail()
    assert len(arrivals) >= RATE // 2, "the limited rule relayed (almost) nothing\n" + r.tail()
    assert len(got) == 100, r.tail()
    assert "rate-limit" in r.text()


# -- fragmented datagrams ------------------------------------------------------------------


def test_a_4000_byte_broadcast_crosses_whole_in_router_mode(
    vlans: lab.RoutedVlans, sockets: Sockets, tmp_path: Path
) -> None:
    r = relay(vlans, tmp_path, *lab.rule_args(f"big from br1 to br2 port {BIG_PORT}"))
    try:
        listener = sockets.udp(vlans.hosts[2][0].ns, BIG_PORT)
        tag = token("big")
        send = sender(vlans, 1, BIG_PORT)
        got = lab.send_until_received(lambda t: send(t.ljust(BIG, b".")), listener, tag)
    finally:
        r.stop()
    assert got is not None, r.tail()
    data, source = got
    assert len(data) == BIG
    assert source == vlans.hosts[1][0].ip


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[tuple[lab.RoutedVlans, lab.RoutedVlans]]:
    prefix_a, prefix_b = lab.unique_prefix("ccfa"), lab.unique_prefix("ccfb")
    with routerlab.torn_down(prefix_a, prefix_b):
        a = lab.RoutedVlans.build(prefix_a, n_vlans=2, hosts_per_vlan=1, relay_hosts=False,
                                  base=228)  # fmt: skip
        b = lab.RoutedVlans.build(prefix_b, n_vlans=2, hosts_per_vlan=1, relay_hosts=False,
                                  base=229)  # fmt: skip
        for node in (a, b):
            routerlab.isolate_vlans(node.router, ("br1", "br2"))
        routerlab.join_routers(a.router, b.router, "10.230.0.1", "10.230.0.2")
        yield a, b


def test_big_broadcasts_cross_the_mesh_in_datagrams_that_fit_the_path(
    two_nodes: tuple[lab.RoutedVlans, lab.RoutedVlans], sockets: Sockets, tmp_path: Path
) -> None:
    a, b = two_nodes
    ra = routerlab.start_relay(
        a.router, [*lab.rule_args(f"out from br1 to mesh port {BIG_PORT}"),
                   "--other-relays", "10.230.0.2"], tmp_path / "a.log", log_level="info",
    )  # fmt: skip
    rb = routerlab.start_relay(
        b.router, [*lab.rule_args(f"in from mesh to br2 port {BIG_PORT}"),
                   "--other-relays", "10.230.0.1"], tmp_path / "b.log", log_level="info",
    )  # fmt: skip
    try:
        with netns.inside(b.router):
            underlay = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        sockets.add(underlay)
        # The relay hands the kernel a run of datagrams at once (UDP GSO), which crosses the
        # veth whole: each frame read comes with a virtio_net_hdr that gives its segment size.
        underlay.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        underlay.bind(("ul0", 0))
        underlay.setblocking(False)
        listener = sockets.udp(b.hosts[2][0].ns, BIG_PORT)
        receiver = b.hosts[2][0]
        with netns.inside(receiver.ns):
            wire = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        sockets.add(wire)
        wire.bind((receiver.iface, 0))
        wire.setblocking(False)
        host = a.hosts[1][0]
        got = lab.send_until_received(
            lambda t: lab.send_broadcast(host.ns, a.vlans[1].broadcast, BIG_PORT,
                                         t.ljust(BIG, b".")),
            listener, token("bigmesh"),
        )  # fmt: skip
        # A full-size frame (1472 bytes of payload) does not fit one mesh datagram with the
        # envelope: it crosses in two, and the far segment gets the frame itself, not fragments.
        full = lab.send_until_received(
            lambda t: lab.send_broadcast(host.ns, a.vlans[1].broadcast, BIG_PORT,
                                         t.ljust(FULL, b".")),
            listener, token("fullmesh"),
        )  # fmt: skip
        seen = []
        while True:
            try:
                frame = wire.recv(65536)
            except BlockingIOError:
                break
            if frame[23] == 17 and b"fullmesh" in frame:
                seen.append(frame)
        mesh_frames = []
        while True:
            try:
                frame = underlay.recv(65536)
            except BlockingIOError:
                break
            _flags, gso_type, _hlen, gso_size = struct.unpack_from("=BBHH", frame)
            frame = frame[VNET_HDR_LEN:]
            if frame[12:14] == b"\x08\x00" and frame[23] == 17:
                # On a wire it is one datagram per segment: the headers and gso_size bytes each.
                segment = gso_size if gso_type == VIRTIO_NET_HDR_GSO_UDP_L4 else len(frame) - 42
                mesh_frames.append((frame, segment))
    finally:
        ra.stop()
        rb.stop()
    assert got is not None, ra.tail() + rb.tail()
    assert len(got[0]) == BIG
    assert full is not None, ra.tail() + rb.tail()
    assert len(full[0]) == FULL
    assert seen, "the full-size frame was not seen on the far segment"
    assert all(len(f) == 14 + 20 + 8 + FULL for f in seen)
    assert all(int.from_bytes(f[20:22], "big") & 0x3FFF == 0 for f in seen)  # no fragment
    assert mesh_frames, "no mesh datagram seen on the underlay"
    # No mesh datagram is an IP fragment (flags MF or offset set), and each fits 1500 bytes.
    assert all(int.from_bytes(f[20:22], "big") & 0x3FFF == 0 for f, _ in mesh_frames)
    largest = max(20 + 8 + segment for _, segment in mesh_frames)
    assert largest <= 1500
    runs = sum(len(f) - 42 > segment for f, segment in mesh_frames)
    print(f"\nlargest mesh datagram: {largest} bytes of IP; {runs} runs sent segmented")


# -- SIGHUP ----------------------------------------------------------------------------------


RULES_FILE = "rules:\n  - {{name: hup, from: br1, to: br2, ports: [{port}]}}\n"


def test_sighup_reloads_a_changed_rules_file_and_refuses_a_broken_one(
    vlans: lab.RoutedVlans, sockets: Sockets, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_FILE.format(port=9200))
    r = relay(vlans, tmp_path, "--rules-file", str(rules))
    try:
        listeners = {
            "9200": sockets.udp(vlans.hosts[2][0].ns, 9200),
            "9201": sockets.udp(vlans.hosts[2][0].ns, 9201),
        }
        assert lab.send_until_received(sender(vlans, 1, 9200), listeners["9200"], token("a"))
        rules.write_text(RULES_FILE.format(port=9201))
        r.proc.send_signal(signal.SIGHUP)
        lab.wait_for_log(r.log, "reloaded: 1 rules", 5.0, r.proc)
        assert lab.send_until_received(sender(vlans, 1, 9201), listeners["9201"], token("b"))
        old = token("old")
        sender(vlans, 1, 9200)(old)
        assert lab.receive(listeners["9200"], routerlab.QUIET_WINDOW, lab.tagged(old)) is None

        rules.write_text("rules:\n  - {name: hup, from: br1, to: br2, ports: [99999]}\n")
        r.proc.send_signal(signal.SIGHUP)
        lab.wait_for_log(r.log, "reload refused", 5.0, r.proc)
        assert r.alive()
        assert lab.send_until_received(sender(vlans, 1, 9201), listeners["9201"], token("c"))
    finally:
        status = r.stop()
    assert status == 0, r.tail()
    refused = [line for line in r.text().splitlines() if "reload refused" in line]
    assert len(refused) == 1
    assert "99999" in refused[0]


# -- late wake-ups ----------------------------------------------------------------------------


def test_a_relay_woken_late_again_and_again_relays_every_frame(
    vlans: lab.RoutedVlans, sockets: Sockets, tmp_path: Path
) -> None:
    # A busy machine that runs the relay late, frame after frame, at a low rate (a GPS fix, a
    # discovery): each frame waits in the ring longer than the 10 ms bound, but nothing queues
    # behind it, so each is relayed. (Dropping them as "late" is for a relay behind a backlog.)
    r = relay(vlans, tmp_path, *lab.rule_args("late from br1 to br2 port 9500"))
    try:
        listener = sockets.udp(vlans.hosts[2][0].ns, 9500)
        assert lab.send_until_received(sender(vlans, 1, 9500), listener, token("warm"))
        tag = token("late")
        for n in range(5):
            r.proc.send_signal(signal.SIGSTOP)
            try:
                sender(vlans, 1, 9500)(tag + b"#%d" % n)
                time.sleep(0.03)  # the frame waits in the ring for 30 ms or more
            finally:
                r.proc.send_signal(signal.SIGCONT)
            time.sleep(0.05)
        got = sorted(d for d, _ in lab.collect(listener, 1.0) if d.startswith(tag))
    finally:
        r.stop()
    assert got == [tag + b"#%d" % n for n in range(5)], r.tail()
    assert "capture_late" not in r.text()


# -- a renumbered segment ----------------------------------------------------------------------


def test_a_renumbered_egress_gets_its_new_broadcast_address_within_a_second(
    tmp_path: Path, sockets: Sockets
) -> None:
    prefix = lab.unique_prefix("ccn")
    with routerlab.torn_down(prefix):
        v = lab.RoutedVlans.build(prefix, n_vlans=2, hosts_per_vlan=1, relay_hosts=False,
                                  base=231)  # fmt: skip
        routerlab.isolate_vlans(v.router, ("br1", "br2"))
        r = relay(v, tmp_path, *lab.rule_args("renum from br1 to br2 port 9400"))
        host2 = v.hosts[2][0]
        listener = sockets.udp(host2.ns, 9400)
        assert lab.send_until_received(sender(v, 1, 9400), listener, token("before"))
        # VLAN 2 becomes 10.231.112.0/20 (broadcast 10.231.127.255): router and host.
        renumbered = time.monotonic()
        sh(v.router, "ip", "addr", "flush", "dev", "br2")
        sh(v.router, "ip", "addr", "add", "10.231.112.1/20", "brd", "+", "dev", "br2")
        sh(host2.ns, "ip", "addr", "flush", "dev", "eth0")
        sh(host2.ns, "ip", "addr", "add", "10.231.112.11/20", "brd", "+", "dev", "eth0")
        sniffer = sockets.sniffer(host2.ns)
        deadline = renumbered + 5.0
        seen = None
        n = 0
        while seen is None and time.monotonic() < deadline:
            n += 1
            sender(v, 1, 9400)(b"renum#%d" % n)
            seen = sniffer.wait_for(lambda f: f.ip_dst == "10.231.127.255", 0.05)
        elapsed = time.monotonic() - renumbered
        got = lab.receive(listener, 2.0, lab.tagged(b"renum"))
        r.stop()
    print(f"\nrenumbered segment served with its new broadcast after {elapsed:.2f} s")
    assert seen is not None, r.tail()
    assert got is not None  # the host on the new subnet accepts it
    assert "interface br2 is now 10.231.112.1/20 (broadcast 10.231.127.255)" in r.text()


# -- churn -------------------------------------------------------------------------------------


def test_link_flaps_and_peer_churn_under_load_leave_it_relaying_with_flat_rss(
    vlans: lab.RoutedVlans, sockets: Sockets, tmp_path: Path
) -> None:
    # Peers: addresses on a dummy link in the router namespace (nothing answers there), listed
    # in a config file that changes every second, each change followed by SIGHUP.
    netns.run(["ip", "link", "add", "peers0", "type", "veth", "peer", "name", "peers1"],
              ns=vlans.router, check=False)  # fmt: skip
    sh(vlans.router, "ip", "addr", "replace", "10.232.0.1/24", "dev", "peers0")
    sh(vlans.router, "ip", "link", "set", "peers0", "up")
    config = tmp_path / "relay.conf"
    config.write_text("other-relays = [10.232.0.2]\n")
    r = relay(
        vlans, tmp_path, "-c", str(config),
        *lab.rule_args("churn from br1 to br2,mesh port 9300", "back from mesh to br1 port 9301"),
    )  # fmt: skip
    try:
        listener = sockets.udp(vlans.hosts[2][0].ns, 9300)
        assert lab.send_until_received(sender(vlans, 1, 9300), listener, token("warm"))
        load = flood(vlans.hosts[1][1], bcast(vlans, 1), 9300, 14.0, token("load"))
        # Under load the duplicate window fills to its capacity (bounded memory, by design):
        # RSS is measured from there, so what it shows is growth the churn causes.
        time.sleep(2.0)
        rss_start = rss_kib(r.proc.pid)
        for i in range(10):
            config.write_text(f"other-relays = [10.232.0.{2 + i % 5}, 10.232.0.{3 + i % 4}]\n")
            r.proc.send_signal(signal.SIGHUP)
            bridge = ("br1", "br2")[i % 2]
            sh(vlans.router, "ip", "link", "set", bridge, "down")
            time.sleep(0.5)
            sh(vlans.router, "ip", "link", "set", bridge, "up")
            time.sleep(0.5)
            lab.drain(listener)
        flood_result(load)
        lab.drain(listener)
        after = lab.send_until_received(sender(vlans, 1, 9300), listener, token("after"))
        rss_end = rss_kib(r.proc.pid)
        assert r.alive(), r.tail()
    finally:
        status = r.stop()
    print(f"\nRSS {rss_start / 1024:.1f} MiB at start, {rss_end / 1024:.1f} MiB after 10 flaps")
    assert after is not None, r.tail()
    assert rss_end - rss_start <= 10 * 1024
    assert r.text().count("reloaded:") >= 5
    assert status == 0


def test_sigterm_under_load_exits_0_within_two_seconds(
    vlans: lab.RoutedVlans, tmp_path: Path
) -> None:
    r = relay(vlans, tmp_path, *lab.rule_args(f"term from br1 to br2,br3 port {FLOOD_PORT}"))
    load = flood(vlans.hosts[1][0], bcast(vlans, 1), FLOOD_PORT, 4.0, token("term"))
    try:
        time.sleep(1.0)  # the flood is on
        started = time.monotonic()
        os.kill(r.proc.pid, signal.SIGTERM)
        try:
            status = r.proc.wait(timeout=GRACE + 3)
        except subprocess.TimeoutExpired:
            status = None
        took = time.monotonic() - started
    finally:
        r.stop()
        flood_result(load)
    print(f"\nSIGTERM under load: exit {status} after {took:.2f} s")
    assert status == 0, r.tail()
    assert took <= GRACE, r.tail()
