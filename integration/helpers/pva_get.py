"""One PVAccess get: pva_get.py NAME TIMEOUT. Exit 0 and "GET OK ..." or exit 1 and "GET TIMEOUT".

The search goes where EPICS_PVA_ADDR_LIST / EPICS_PVA_AUTO_ADDR_LIST (from the environment) say.
"""

from __future__ import annotations

import os
import sys
import time

from p4p.client.thread import Context


def main() -> int:
    name, timeout = sys.argv[1], float(sys.argv[2])
    t0 = time.monotonic()
    with Context("pva") as ctx:
        try:
            value = ctx.get(name, timeout=timeout)
        except TimeoutError as e:
            print(f"GET TIMEOUT after {time.monotonic() - t0:.2f}s: {e!r}", flush=True)
            return 1
    addr_list = os.environ.get("EPICS_PVA_ADDR_LIST")
    print(
        f"GET OK {name}={float(value)!r} in {time.monotonic() - t0:.2f}s (ADDR_LIST={addr_list})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
