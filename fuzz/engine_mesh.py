"""Datagrams from mesh peers: relay/engine.py Relay.on_mesh.

The first byte picks the relay's mesh (bit 0: with a secret), whether the peer is this relay
itself (bit 1) and whether each datagram gets a valid tag appended (bit 2, fuzz.world.sign: so
mutated envelopes get past authentication); the rest is datagrams (fuzz.world.records), fed in
order to one relay, so the duplicate window sees repeats. Contract: every outcome is an action
or a counted drop; any exception is a crash.
"""

from fuzz.world import NOW, SECRET, records, relay, sign

EXPECTED = ()


def one_input(data: bytes) -> None:
    flags, rest = data[:1] or b"\0", data[1:]
    r = relay(secret=SECRET if flags[0] & 1 else None)
    for datagram in records(rest):
        r.on_mesh([(sign(datagram) if flags[0] & 4 else datagram, bool(flags[0] & 2))], NOW)
