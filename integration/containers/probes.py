"""UDP probes run inside the test's app containers with their own python3: a listener that
prints what arrives, and a sender (broadcast or unicast). Nothing here leaves the containers."""

from __future__ import annotations

import queue
import subprocess
import threading
import time

from integration.containers.engine import Podman

# listen SECONDS PORT...: print "ready", then "PORT SOURCE PAYLOAD" per datagram, until SECONDS
LISTEN = r"""
import selectors, socket, sys, time
seconds, ports = float(sys.argv[1]), [int(p) for p in sys.argv[2:]]
sel = selectors.DefaultSelector()
for port in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.bind(("", port))
    sel.register(s, selectors.EVENT_READ, port)
print("ready", flush=True)
end = time.monotonic() + seconds
while (left := end - time.monotonic()) > 0:
    for key, _ in sel.select(left):
        data, (host, _) = key.fileobj.recvfrom(65535)
        print(key.data, host, data.decode(errors="replace"), flush=True)
"""

# send DESTINATION PORT PAYLOAD COUNT INTERVAL
SEND = r"""
import socket, sys, time
dst, port, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3]
count, interval = int(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for _ in range(count):
    s.sendto(payload.encode(), (dst, port))
    time.sleep(interval)
"""


class Listener:
    """A LISTEN probe in a container; `arrivals` fills in as datagrams come."""

    def __init__(self, podman: Podman, container: str, *ports: int, seconds: float = 30) -> None:
        self.container = container
        self._lines: queue.Queue[str] = queue.Queue()
        self.arrivals: list[tuple[int, str, str]] = []
        argv = [*podman.command, "exec", container, "python3", "-c", LISTEN, str(seconds)]
        self._proc = subprocess.Popen(
            [*argv, *map(str, ports)],
            env=podman.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        line = self._lines.get(timeout=30)
        assert line == "ready", f"listener in {container}: {line!r}"

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line.rstrip("\n"))

    def _drain(self) -> None:
        while True:
            try:
                port, host, payload = self._lines.get_nowait().split(" ", 2)
            except queue.Empty:
                return
            self.arrivals.append((int(port), host, payload))

    def payloads(self, port: int | None = None) -> list[str]:
        self._drain()
        return [p for (pt, _, p) in self.arrivals if port is None or pt == port]

    def wait_for(self, payload: str, timeout: float = 5) -> bool:
        deadline = time.monotonic() + timeout
        while payload not in self.payloads():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        self._proc.kill()
        self._proc.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self._proc.stdout is not None
        self._proc.stdout.close()


def send(
    podman: Podman,
    container: str,
    destination: str,
    port: int,
    payload: str,
    *,
    count: int = 3,
    interval: float = 0.05,
) -> None:
    podman.exec(
        container, "python3", "-c", SEND, destination, str(port), payload, str(count),
        str(interval),
    )  # fmt: skip
