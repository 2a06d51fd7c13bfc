"""Frames captured on an interface: relay/engine.py Relay.on_capture.

The first byte picks the ingress and whether the kernel marked the checksum partial; the rest is
the frame. Contract: nothing is bad input here, every outcome is an action or a counted drop;
any exception is a crash.
"""

from fuzz.world import NOW, relay

EXPECTED = ()


def one_input(data: bytes) -> None:
    flags, frame = data[:1] or b"\0", data[1:]
    iface = "eth1" if flags[0] & 1 else "eth0"
    relay().on_capture(iface, frame, NOW, csum_partial=bool(flags[0] & 2))
