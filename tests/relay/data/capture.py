"""Capture the golden wire bytes of tests/relay/data/*.bin from the real peers, on loopback only.

Run once, from the repository root, with the test extra installed (p4p, caproto):

    .venv/bin/python tests/relay/data/capture.py

Each capture binds a UDP listener on 127.0.0.1 at an unprivileged port, points the real client
(or server) at it through its own EPICS_* variables, and keeps the first datagram it receives:

- pva-search.bin: p4p (pvxs) client `Context("pva").get("crosscast:test:pv")` with
  EPICS_PVA_ADDR_LIST=127.0.0.1:<listener port>, no auto address list.
- pva-beacon.bin: p4p server serving one PV, EPICS_PVAS_BEACON_ADDR_LIST=127.0.0.1:<listener
  port>, no auto beacon list, bound to 127.0.0.1.
- ca-search.bin: caproto's threading client searching "crosscast:test:pv" with
  EPICS_CA_ADDR_LIST=127.0.0.1, EPICS_CA_SERVER_PORT=<listener port>, no auto address list.

The peers' own UDP ports (the PVA client's beacon port, the server's search port, the CA
repeater port) are moved to a spare port so that none of them shares the listener's.

The files are committed; the tests never run the peers, so they need no network at all.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PV = "crosscast:test:pv"

PVA_CLIENT = f"""
from p4p.client.thread import Context
try:
    Context("pva").get({PV!r}, timeout=1.5)
except Exception:
    pass
"""

PVA_SERVER = f"""
import time
from p4p.nt import NTScalar
from p4p.server import Server
from p4p.server.thread import SharedPV
with Server(providers=[{{{PV!r}: SharedPV(nt=NTScalar("d"), initial=1.0)}}]):
    time.sleep(4)
"""

CA_CLIENT = f"""
from caproto.threading.client import Context
try:
    Context().get_pvs({PV!r}, timeout=1.5)[0].wait_for_connection(timeout=1.5)
except Exception:
    pass
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def capture(name: str, script: str, env: dict[str, str]) -> None:
    """Run `script` with `env` ({port}: the listener's, {other}: a spare port); keep 1 datagram."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(6.0)
        ports = {"port": listener.getsockname()[1], "other": free_port()}
        child_env = {**os.environ, **{k: v.format(**ports) for k, v in env.items()}}
        child = subprocess.Popen([sys.executable, "-c", script], env=child_env)
        try:
            data = listener.recv(65535)
        finally:
            child.kill()
            child.wait()
    (HERE / name).write_bytes(data)
    print(f"{name}: {len(data)} bytes")


def main() -> None:
    capture(
        "pva-search.bin",
        PVA_CLIENT,
        # The client also listens for beacons on its broadcast port: keep that off the listener's.
        {
            "EPICS_PVA_ADDR_LIST": "127.0.0.1:{port}",
            "EPICS_PVA_AUTO_ADDR_LIST": "NO",
            "EPICS_PVA_BROADCAST_PORT": "{other}",
        },
    )
    capture(
        "pva-beacon.bin",
        PVA_SERVER,
        {
            "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.1:{port}",
            "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
            "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
            "EPICS_PVAS_BROADCAST_PORT": "{other}",
            "EPICS_PVAS_SERVER_PORT": "0",
        },
    )
    capture(
        "ca-search.bin",
        CA_CLIENT,
        {
            "EPICS_CA_ADDR_LIST": "127.0.0.1",
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_SERVER_PORT": "{port}",
            "EPICS_CA_REPEATER_PORT": "{other}",
        },
    )


if __name__ == "__main__":
    main()
