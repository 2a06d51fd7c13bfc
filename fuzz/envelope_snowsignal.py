"""SnowSignal-format mesh datagrams (b"SS" + frame): relay/envelope.py decode_snowsignal.

Contract: EnvelopeError (a ValueError) is bad input; anything else is a crash.
"""

from crosscast.relay.envelope import EnvelopeError, decode_snowsignal

EXPECTED = (EnvelopeError,)


def one_input(data: bytes) -> None:
    decode_snowsignal(data)
