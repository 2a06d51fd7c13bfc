"""Inputs of the micro-benchmarks: frames, rule tables and relays as the relay sees them.

Built with the public API of frames, rules, envelope and engine only, so that a change of those
APIs breaks one small function here, not every benchmark.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from crosscast.net.frames import build_udp_frame, ip_from_str, mac_from_str
from crosscast.relay.engine import Interface, Relay
from crosscast.relay.envelope import CrosscastCodec
from crosscast.relay.ruleindex import RuleTable
from crosscast.relay.rules import parse_rules_text, snowsignal_rules

PORT = 5076
SIZES = (64, 512, 1400)
SECRET = b"benchmark secret, not a real one"


def frame(size: int, n: int = 0, dst: str = "10.0.1.255") -> bytes:
    """A broadcast from 10.0.1.11 to `dst`:5076 with a `size`-byte payload (IP id `n`)."""
    return build_udp_frame(
        src_mac=mac_from_str("02:00:0a:00:01:0b"),
        dst_mac=b"\xff" * 6,
        src_ip=ip_from_str("10.0.1.11"),
        dst_ip=ip_from_str(dst),
        src_port=40000,
        dst_port=PORT,
        payload=n.to_bytes(8, "big") * (size // 8) + bytes(size % 8),
        ident=n & 0xFFFF,
    )


def interface(name: str, last: int, address: str) -> Interface:
    return Interface(
        name=name,
        mac=mac_from_str(f"02:cc:00:00:00:{last:02x}"),
        address=ip_from_str(address),
        prefix_len=24,
    )


def router_rules() -> RuleTable:
    return RuleTable(parse_rules_text(f"bench from br1 to br2 port {PORT}", "benchmark"))


def router_relay() -> Relay:
    """Router mode: br1 (10.0.1.1) -> br2 (10.0.2.1), one rule."""
    ifaces = (interface("br1", 1, "10.0.1.1"), interface("br2", 2, "10.0.2.1"))
    return Relay(
        rules=router_rules(),
        interfaces={i.name: i for i in ifaces},
        relay_id=1,
        mesh_port=7124,
    )


def mesh_relay(relay_id: int, secret: bytes | None = None) -> Relay:
    """Mesh mode, SnowSignal-style: eth0 <-> mesh on port 5076."""
    eth0 = interface("eth0", relay_id, f"10.0.{relay_id}.21")
    return Relay(
        rules=RuleTable(snowsignal_rules("eth0", PORT)),
        interfaces={"eth0": eth0},
        relay_id=relay_id,
        mesh_port=7124,
        codec=CrosscastCodec(secret),
    )


ROUNDS = 2000  # rounds of a benchmark that needs a fresh input each time


def distinct_frames(size: int) -> Iterator[bytes]:
    """Frames that differ in IP id and payload: the duplicate window would drop a repeated one
    (it expires entries on the relay's tick, which a benchmark of one frame never reaches)."""
    return (frame(size, n) for n in itertools.count())


def clock(step: float = 0.0001) -> Iterator[float]:
    """Times `step` s apart, as a busy relay sees them."""
    return itertools.count(1_800_000_000.0, step)
