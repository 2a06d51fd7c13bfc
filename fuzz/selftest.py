"""Not a parser: a target that crashes, hangs or fails as documented on demand, so that
tests/test_fuzz.py can check that scripts/fuzz reports crashes and hangs (it is not in TARGETS).

Contract: ValueError is bad input; anything else is a crash.
"""

import time

EXPECTED = (ValueError,)


def one_input(data: bytes) -> None:
    if data.startswith(b"crash"):
        raise RuntimeError("selftest crash")
    if data.startswith(b"hang"):
        time.sleep(60)
    if data.startswith(b"bad"):
        raise ValueError("documented bad input")
