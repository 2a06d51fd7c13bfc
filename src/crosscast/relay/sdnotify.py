"""systemd readiness notification (sd_notify(3)) in pure Python: no libsystemd, no dependency.

This module owns the notify protocol: one AF_UNIX datagram of newline-separated KEY=VALUE
assignments ("READY=1", "STOPPING=1", "STATUS=...") to the socket named by $NOTIFY_SOCKET, which
systemd sets for Type=notify units. A name starting with "@" is in the abstract namespace (the
"@" stands for the leading NUL byte). Outside systemd the variable is unset and notifying does
nothing, so the relay calls it unconditionally.

The environment is read by the caller at the edge and passed in (`Notifier.from_environ`);
nothing here reads os.environ. Sending never raises: readiness is advisory, and a relay that
forwards traffic must not die because its supervisor went away.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

NOTIFY_SOCKET = "NOTIFY_SOCKET"  # sd_notify(3)
READY = "READY=1"
RELOADING = "RELOADING=1"
STOPPING = "STOPPING=1"

SocketFactory = Callable[[], socket.socket]


def _unix_datagram_socket() -> socket.socket:
    return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)


def socket_address(name: str) -> str | bytes:
    """The address to send to for $NOTIFY_SOCKET `name`: abstract names start with a NUL byte."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def message(*assignments: str, status: str | None = None) -> bytes:
    """The datagram for `assignments` ("READY=1", ...) and an optional free-form STATUS line."""
    lines = list(assignments)
    if status is not None:
        lines.append("STATUS=" + status.replace("\n", " "))
    return "\n".join(lines).encode()


@dataclass(frozen=True)
class Notifier:
    """Sends notifications to one notify socket; `address` None: not under systemd, a no-op."""

    address: str | bytes | None
    socket_factory: SocketFactory = _unix_datagram_socket

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], socket_factory: SocketFactory = _unix_datagram_socket
    ) -> Notifier:
        name = environ.get(NOTIFY_SOCKET, "")
        # sd_notify accepts only absolute paths and abstract names; anything else is ignored.
        if not (name.startswith("/") or name.startswith("@")) or len(name) < 2:
            return cls(None, socket_factory)
        return cls(socket_address(name), socket_factory)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str, status: str | None = None) -> bool:
        """Send one datagram; True if it was sent, False when disabled or the send failed."""
        if self.address is None:
            return False
        try:
            with self.socket_factory() as sock:
                sock.sendto(message(*assignments, status=status), self.address)
        except OSError as error:
            log.warning("cannot notify systemd at %r: %s", self.address, error)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify(READY, status=status)

    def stopping(self) -> bool:
        return self.notify(STOPPING)
