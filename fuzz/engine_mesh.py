"""Datagrams from mesh peers: relay/engine.py Relay.on_mesh.

The first byte picks the relay's mesh (without or with a secret) and whether the peer is this
relay itself; the rest is datagrams (fuzz.world.records), fed in order to one relay, so the
duplicate window sees repeats. Contract: every outcome is an action or a counted drop; any
exception is a crash.
"""

from fuzz.world import NOW, SECRET, records, relay

EXPECTED = ()


def one_input(data: bytes) -> None:
    flags, rest = data[:1] or b"\0", data[1:]
    r = relay(secret=SECRET if flags[0] & 1 else None)
    for datagram in records(rest):
        r.on_mesh(datagram, NOW, from_self=bool(flags[0] & 2))
