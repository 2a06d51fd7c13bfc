"""PVAccess and Channel Access discovery payloads (relay/protocols.py): DecodeLog.observe on a
captured frame whose UDP payload is the input, so decode_payload and the log line both run.

Contract: the decoder is total (None for what it does not recognise); any exception is a crash.
"""

from crosscast.net.frames import build_udp_frame
from crosscast.relay.protocols import DecodeLog
from fuzz.world import NOW

EXPECTED = ()


def one_input(data: bytes) -> None:
    frame = build_udp_frame(
        src_mac=b"\x02\0\0\0\x01\x0b",
        dst_mac=b"\xff" * 6,
        src_ip=0x0A00010B,
        dst_ip=0xFFFFFFFF,
        src_port=40000,
        dst_port=5076,
        payload=data,
    )
    DecodeLog().observe(frame, "eth0", NOW)
