"""Crosscast envelopes on an authenticated mesh: CrosscastCodec(secret).decode, replay window.

The input is several datagrams (fuzz.world.records), all decoded by one codec, so sequences of
origins and sequence numbers reach the replay window. A fuzzer cannot forge HMAC tags, so each
datagram is also decoded signed with the secret, as a peer holding it would send it.
Contract: EnvelopeError (a ValueError) is bad input; anything else is a crash.
"""

import contextlib

from crosscast.relay.envelope import CrosscastCodec, EnvelopeError
from fuzz.world import NOW, SECRET, records, sign

EXPECTED = (EnvelopeError,)


def one_input(data: bytes) -> None:
    codec = CrosscastCodec(SECRET)
    for datagram in records(data):
        for candidate in (datagram, sign(datagram)):
            with contextlib.suppress(EnvelopeError):
                codec.decode(candidate, NOW)
