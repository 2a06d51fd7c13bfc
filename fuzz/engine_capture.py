"""Frames captured on the relay's interfaces: relay/engine.py Relay.on_capture.

The first byte picks the relay (bit 0: a mesh secret, bit 1: SnowSignal mesh format); the rest is
frames (fuzz.world.records) fed in order to that one relay, so probes from other relays (the
segment election, relay MACs) and the duplicate window act on the frames after them. The first
byte of each record picks the ingress (bit 0: eth1) and a partial checksum (bit 1); the rest is
the frame. Contract: every outcome is an action or a counted drop; any exception is a crash.
"""

from fuzz.world import NOW, SECRET, records, relay

EXPECTED = ()


def one_input(data: bytes) -> None:
    flags = data[0] if data else 0
    r = relay(
        secret=SECRET if flags & 1 else None,
        mesh_format=("crosscast", "snowsignal")[flags >> 1 & 1],
    )
    for record in records(data[1:]):
        how, frame = record[0] if record else 0, record[1:]
        status = 8 if how & 2 else 0  # TP_STATUS_CSUMNOTREADY: a local sender's partial checksum
        r.on_capture(("eth0", "eth1")[how & 1], [(frame, status)], NOW)
