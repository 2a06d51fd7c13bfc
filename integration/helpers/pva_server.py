"""Serve one PVAccess PV (NTScalar double 42.5) until killed: pva_server.py NAME.

Prints "serving NAME" once the server's sockets are open, so a test can wait for that line.
"""

from __future__ import annotations

import sys
import threading

from p4p.nt import NTScalar
from p4p.server import Server
from p4p.server.thread import SharedPV


def main() -> None:
    name = sys.argv[1]
    pv = SharedPV(nt=NTScalar("d"), initial=42.5)
    with Server(providers=[{name: pv}]):
        print("serving", name, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
