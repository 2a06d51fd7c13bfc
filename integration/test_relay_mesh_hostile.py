"""Whatever arrives on the mesh port is untrusted. Datagrams from a non-peer, with a bad tag,
replayed, or malformed never reach the segment, and the relay keeps relaying afterwards.

Two relays on the overlay, peers of each other: node 1's relay (10.202.10.11) is the peer whose
address hostile datagrams claim, node 2's relay (10.202.10.21) is the target, and node 2's app
(10.202.10.22) watches its segment with UDP listeners and a raw sniffer. Node 1's app
(10.202.10.12) is the non-peer. Envelopes are built from the documented wire format
(integration/helpers/mesh.py), not with the relay's own code.
"""

from __future__ import annotations

import random
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from crosscast import lab
from crosscast.net import netns
from integration.helpers.mesh import (
    KIND_BATCH,
    batch_body,
    crosscast_envelope,
    snowsignal_datagram,
)
from integration.helpers.relays import Procs, Started

pytestmark = pytest.mark.root

PORT = 5076
OTHER_PORT = 5077
MESH_PORT = 7124
ARRIVAL = 3.0
QUIET = 1.0
MARK = b"HOSTILE"
REPLAY_LATER = 1.5  # seconds: past any short duplicate window, well inside the freshness limit


@dataclass
class Mesh:
    overlay: lab.SwarmOverlay
    mesh_format: str
    secret: bytes | None
    relays: list[Started]

    @property
    def peer(self) -> lab.Host:
        return self.overlay.nodes[0].relay

    @property
    def target(self) -> lab.Host:
        return self.overlay.nodes[1].relay

    @property
    def outsider(self) -> lab.Host:
        return self.overlay.nodes[0].apps[0]

    @property
    def witness(self) -> lab.Host:
        return self.overlay.nodes[1].apps[0]

    def frame(
        self,
        payload: bytes,
        *,
        dport: int = PORT,
        dst_ip: str | None = None,
        dst_mac: str = "ff:ff:ff:ff:ff:ff",
    ) -> bytes:
        """A well-formed frame from the outsider app, as a relay would capture it."""
        src = self.outsider
        dst = dst_ip or self.overlay.overlay.broadcast
        return lab.build_udp_frame(src.mac, dst_mac, src.ip, dst, 40000, dport, payload)

    def wrap(self, frame: bytes, secret: bytes | None = None, **kw: int) -> bytes:
        """The datagram a genuine peer would send for `frame`, in this mesh's format."""
        if self.mesh_format == "snowsignal":
            return snowsignal_datagram(frame)
        origin = kw.pop("origin", secrets.randbits(64))
        return crosscast_envelope(frame, secret or self.secret, origin, kw.pop("seq", 0), **kw)


def _send_from(ns: str, src_ip: str, datagrams: list[bytes], dst: str) -> None:
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.bind((src_ip, 0))
        for d in datagrams:
            s.sendto(d, (dst, MESH_PORT))


@pytest.fixture(params=["crosscast", "snowsignal"])
def mesh(
    request: pytest.FixtureRequest, overlay: lab.SwarmOverlay, procs: Procs, tmp_path: Path
) -> Mesh:
    """crosscast format with --mesh-secret-file, or snowsignal format (no authentication)."""
    fmt: str = request.param
    n1, n2 = overlay.nodes[0].relay, overlay.nodes[1].relay
    args = ["--mesh-format", fmt]
    secret = None
    if fmt == "crosscast":
        secret = secrets.token_hex(16).encode()
        path = tmp_path / "mesh.secret"
        path.write_bytes(secret + b"\n")
        args += ["--mesh-secret-file", str(path)]
    relays = [
        procs.crosscast(n1, *args, "--other-relays", n2.ip),
        procs.crosscast(n2, *args, "--other-relays", n1.ip),
    ]
    procs.wait_ready(*relays)
    return Mesh(overlay, fmt, secret, relays)


def _nothing_reaches_the_segment(mesh: Mesh, send: list[tuple[str, str, list[bytes]]]) -> None:
    """Send the datagrams ((ns, source address, datagrams) each) to the target's mesh port;
    nothing may appear on node 2's segment; a genuine broadcast still relays afterwards."""
    w = mesh.witness
    listeners = [lab.udp_listener(w.ns, PORT), lab.udp_listener(w.ns, OTHER_PORT)]
    with lab.sniff(w.ns) as sniffer:
        for ns, src_ip, datagrams in send:
            _send_from(ns, src_ip, datagrams, mesh.target.ip)
        arrived = lab.collect(listeners[0], QUIET) + lab.collect(listeners[1], 0.0)
        seen = sniffer.collect(0.0, lambda f: MARK in f.raw)
    assert arrived == [], "hostile datagrams reached a socket on the segment"
    assert seen == [], "hostile datagrams were written onto the segment"
    assert all(r.alive() for r in mesh.relays), "a relay died"
    _still_relays(mesh)


def _still_relays(mesh: Mesh) -> None:
    listener = lab.udp_listener(mesh.witness.ns, PORT)
    payload = b"genuine-" + secrets.token_hex(4).encode()
    lab.send_broadcast(mesh.outsider.ns, mesh.overlay.overlay.broadcast, PORT, payload)
    got = lab.receive(listener, ARRIVAL, lambda d, _s: d == payload)
    assert got == (payload, mesh.outsider.ip), "the relay stopped relaying"


def test_envelope_built_from_the_wire_format_spec_is_relayed(mesh: Mesh) -> None:
    """Control for the tests below: the same construction, from a peer, with a good tag."""
    listener = lab.udp_listener(mesh.witness.ns, PORT)
    _send_from(mesh.peer.ns, mesh.peer.ip, [mesh.wrap(mesh.frame(b"from-spec"))], mesh.target.ip)
    assert lab.receive(listener, ARRIVAL) == (b"from-spec", mesh.outsider.ip)


@pytest.mark.parametrize("mesh", ["crosscast"], indirect=True)  # the snowsignal format has no batch
def test_batch_built_from_the_wire_format_spec_is_relayed_frame_by_frame(mesh: Mesh) -> None:
    listener = lab.udp_listener(mesh.witness.ns, PORT)
    payloads = [b"batched-%d" % i for i in range(3)]
    body = batch_body([mesh.frame(p) for p in payloads])
    datagram = mesh.wrap(body, kind=KIND_BATCH)
    _send_from(mesh.peer.ns, mesh.peer.ip, [datagram], mesh.target.ip)
    got = [lab.receive(listener, ARRIVAL) for _ in payloads]
    assert got == [(p, mesh.outsider.ip) for p in payloads]


def test_datagram_from_a_non_peer_is_dropped(mesh: Mesh) -> None:
    # correct format, correct tag: only the sender's address is wrong
    datagram = mesh.wrap(mesh.frame(MARK + b"-non-peer"))
    _nothing_reaches_the_segment(mesh, [(mesh.outsider.ns, mesh.outsider.ip, [datagram])])


@pytest.mark.parametrize("mesh", ["crosscast"], indirect=True)  # no tags in the snowsignal format
def test_envelope_with_a_bad_tag_is_dropped(mesh: Mesh) -> None:
    assert mesh.secret is not None
    frame = mesh.frame(MARK + b"-bad-tag")
    good = mesh.wrap(frame)
    flipped = good[:-1] + bytes([good[-1] ^ 0x01])
    wrong_secret = mesh.wrap(frame, secret=b"not-the-mesh-secret")
    untagged = crosscast_envelope(frame, None, secrets.randbits(64), 0)
    tag_cut = good[:-16]
    body_changed = good.replace(MARK + b"-bad-tag", MARK + b"-bad-tau")
    datagrams = [flipped, wrong_secret, untagged, tag_cut, body_changed]
    _nothing_reaches_the_segment(mesh, [(mesh.peer.ns, mesh.peer.ip, datagrams)])


@pytest.mark.parametrize(
    "mesh", ["crosscast"], indirect=True
)  # the snowsignal format has no replay protection
def test_replayed_envelope_is_dropped(mesh: Mesh) -> None:
    assert mesh.secret is not None
    payload = MARK + b"-replayed"
    listener = lab.udp_listener(mesh.witness.ns, PORT)
    # capture the genuine envelope where the target receives it
    with lab.sniff(mesh.target.ns) as tap:
        lab.send_broadcast(mesh.outsider.ns, mesh.overlay.overlay.broadcast, PORT, payload)
        assert lab.receive(listener, ARRIVAL) == (payload, mesh.outsider.ip)
        captured = tap.wait_for(
            lambda f: f.dport == MESH_PORT and f.ip_src == mesh.peer.ip and payload in f.raw, 1.0
        )
    assert captured is not None, "no envelope from the peer seen at the target"
    assert lab.collect(listener, 0.5) == []
    w = mesh.witness
    with lab.sniff(w.ns) as sniffer:
        # The very same frame again, from the peer's own interface: at once, and again once a
        # short duplicate window (the engine's is 1 s) has passed, while the envelope's
        # timestamp is still fresh, so only the replay window can stop it.
        lab.send_frame(mesh.peer.ns, "eth0", captured.raw)
        assert lab.collect(listener, REPLAY_LATER) == []
        lab.send_frame(mesh.peer.ns, "eth0", captured.raw)
        assert lab.collect(listener, QUIET) == []
        assert sniffer.collect(0.0, lambda f: payload in f.raw) == []
    assert all(r.alive() for r in mesh.relays)
    _still_relays(mesh)


def _malformed(mesh: Mesh) -> list[bytes]:
    rng = random.Random(7124)
    good = mesh.frame(MARK + b"-malformed")
    to_other_port = mesh.frame(MARK + b"-other-port", dport=OTHER_PORT)
    to_unicast = mesh.frame(MARK + b"-unicast", dst_ip=mesh.witness.ip, dst_mac=mesh.witness.mac)
    garbage = [bytes(rng.getrandbits(8) for _ in range(n)) + MARK for n in (0, 1, 31, 100, 1400)]
    out = [b"", b"S", b"SS", b"SS" + MARK, b"CX", *garbage]
    out += [b"SS" + g for g in garbage]
    out += [
        b"SS" + to_other_port,
        b"SS" + to_unicast,
        b"SS" + good[:30],  # truncated inside the IP header
        b"SS" + good[:-4],  # IP total length beyond the data
        b"SS" + good[:14] + b"\x46" + good[15:],  # IHL says options that are not there
        b"SS" + good[:23] + b"\x06" + good[24:],  # TCP, not UDP
        b"SS" + good[:12] + b"\x86\xdd" + good[14:],  # says IPv6
    ]
    if mesh.secret is None:
        return out
    wrap = mesh.wrap
    envelope = wrap(good)
    out += [
        b"SS" + good,  # the SnowSignal format on an authenticated crosscast mesh
        envelope[:31],  # truncated header
        envelope[:32],  # header only
        envelope[: len(envelope) // 2],  # truncated in the body
        wrap(to_other_port),  # good tag, a port no rule allows
        wrap(to_unicast),  # good tag, a unicast destination
        wrap(good[:30]),  # good tag, a truncated frame
        wrap(good[:-4]),
        wrap(b"\x00" * 14 + MARK),  # good tag, not IPv4
        wrap(MARK),  # good tag, shorter than an Ethernet header
        wrap(good, hops=200),  # beyond any hop limit
        wrap(good, kind=9),  # unknown kind
        wrap(good, version=2),  # unknown version
        wrap(good, timestamp_ms=1_000_000),  # 1970: stale
        wrap(batch_body([good])[:-3], kind=KIND_BATCH),  # a batch shorter than it says
        wrap(batch_body([good]) + b"\x00", kind=KIND_BATCH),  # a byte left over
        wrap(b"\x00\x00" + batch_body([good]), kind=KIND_BATCH),  # an empty frame in it
        wrap(b"", kind=KIND_BATCH),  # an empty batch
        wrap(batch_body([to_other_port, to_unicast, good[:30]]), kind=KIND_BATCH),  # all bad
    ]
    return out


def test_malformed_datagrams_from_a_peer_are_dropped(mesh: Mesh) -> None:
    datagrams = _malformed(mesh)
    _nothing_reaches_the_segment(mesh, [(mesh.peer.ns, mesh.peer.ip, datagrams)])
