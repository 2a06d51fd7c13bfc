"""Crosscast envelopes on a mesh without a secret: relay/envelope.py CrosscastCodec.decode.

Contract: EnvelopeError (a ValueError) is bad input; anything else is a crash.
"""

from crosscast.relay.envelope import CrosscastCodec, EnvelopeError
from fuzz.world import NOW

EXPECTED = (EnvelopeError,)


def one_input(data: bytes) -> None:
    CrosscastCodec(None).decode(data, NOW)
