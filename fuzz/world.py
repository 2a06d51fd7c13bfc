"""What the fuzz targets and the seed builder share: the clock, the secret, a relay to feed."""

from __future__ import annotations

import hashlib
import hmac

from crosscast.net.frames import ip_from_str, mac_from_str
from crosscast.relay.engine import Interface, Relay
from crosscast.relay.envelope import CrosscastCodec
from crosscast.relay.ruleindex import RuleTable
from crosscast.relay.rules import Rule, format_rule_table, parse_rules_text

NOW = 1_800_000_000.0  # every target runs at this instant: inputs replay the same way
SECRET = b"fuzzing secret"
MESH_PORT = 7124

# Broadcast and multicast both ways between two segments and the mesh: every path of the engine
# (local emit, mesh encode, mesh receive) is reachable from one frame.
RULES = RuleTable(
    parse_rules_text(
        "a from eth0 to eth1,mesh port 5076,5000-5010 group 233.54.12.234 broadcast;"
        "b from eth1 to eth0 port 5076 deny 10.0.2.66;"
        "c from mesh to eth0,eth1 port 5076,22001 group 233.54.12.234 broadcast",
        "fuzz",
    )
)
INTERFACES = {
    "eth0": Interface("eth0", mac_from_str("02:cc:00:00:00:01"), ip_from_str("10.0.1.21"), 24),
    "eth1": Interface("eth1", mac_from_str("02:cc:00:00:00:02"), ip_from_str("10.0.2.21"), 24),
}


def tabulate(rules: tuple[Rule, ...]) -> None:
    """What the relay does with rules it accepted: index them, print the `--check` table."""
    RuleTable(rules)
    format_rule_table(rules)


def relay(*, secret: bytes | None = None, mesh_format: str = "crosscast") -> Relay:
    """A fresh relay (no state carried between inputs, so a crash replays from its input)."""
    return Relay(
        rules=RULES,
        interfaces=INTERFACES,
        relay_id=1,
        mesh_port=MESH_PORT,
        mesh_format=mesh_format,
        codec=CrosscastCodec(secret),
    )


def records(data: bytes) -> list[bytes]:
    """Split one input into several datagrams: each is a 2-byte big-endian length, then bytes."""
    out = []
    while len(data) >= 2:
        n = int.from_bytes(data[:2], "big")
        out.append(data[2 : 2 + n])
        data = data[2 + n :]
    return out


def pack(*datagrams: bytes) -> bytes:
    """The inverse of `records`, for seeds."""
    return b"".join(len(d).to_bytes(2, "big") + d for d in datagrams)


def sign(datagram: bytes) -> bytes:
    """`datagram` with the HMAC tag a peer holding SECRET appends: a fuzzer cannot forge one."""
    return datagram + hmac.new(SECRET, datagram, hashlib.sha256).digest()
