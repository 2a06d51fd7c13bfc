"""The lease database: bindings by container name in one SQLite file.

On disk, so bindings outlive a reboot; one transaction per call, so two `crosscast lease` runs
at once do not corrupt it. Owns the schema and nothing else.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crosscast.topology.leases.binding import Binding, IPv4, UsageError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    mac TEXT NOT NULL,
    ip TEXT NOT NULL,
    prefix INTEGER NOT NULL,
    gateway TEXT,
    vlan TEXT NOT NULL,
    server_id TEXT NOT NULL,
    server_mac TEXT NOT NULL,
    lease_time INTEGER NOT NULL,
    obtained_at REAL NOT NULL,
    interface TEXT NOT NULL,
    netns TEXT,
    dns TEXT NOT NULL DEFAULT ''
)
"""
_SELECT = (
    "SELECT name, mac, ip, prefix, gateway, vlan, server_id, server_mac, lease_time, obtained_at,"
    " interface, netns, dns FROM leases"
)
_INSERT = (
    "INSERT OR REPLACE INTO leases (name, mac, ip, prefix, gateway, vlan, server_id, server_mac,"
    " lease_time, obtained_at, interface, netns, dns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


class LeaseStore:
    """Bindings by container name in one SQLite file (on disk, so they outlive a reboot)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10)
        except (OSError, sqlite3.Error) as exc:
            raise UsageError(f"cannot open the lease database {self.path}: {exc}") from None
        try:
            with conn:  # one transaction: committed on success, rolled back on error
                conn.execute(_SCHEMA)
                yield conn
        finally:
            conn.close()

    def get(self, name: str) -> Binding | None:
        with self._connect() as conn:
            row = conn.execute(_SELECT + " WHERE name = ?", (name,)).fetchone()
        return None if row is None else _from_row(row)

    def all(self) -> list[Binding]:
        with self._connect() as conn:
            rows = conn.execute(_SELECT + " ORDER BY name").fetchall()
        return [_from_row(r) for r in rows]

    def put(self, b: Binding) -> None:
        with self._connect() as conn:
            conn.execute(
                _INSERT,
                (
                    b.name,
                    b.mac,
                    str(b.ip),
                    b.prefix,
                    None if b.gateway is None else str(b.gateway),
                    b.vlan,
                    str(b.server_id),
                    b.server_mac,
                    b.lease_time,
                    b.obtained_at,
                    b.interface,
                    b.netns,
                    " ".join(str(a) for a in b.dns),
                ),
            )

    def delete(self, name: str) -> bool:
        with self._connect() as conn:
            return conn.execute("DELETE FROM leases WHERE name = ?", (name,)).rowcount > 0


def _from_row(row: tuple[Any, ...]) -> Binding:
    (name, mac, ip, prefix, gateway, vlan, server_id, server_mac, lease_time, obtained_at) = row[
        :10
    ]
    interface, ns, dns = row[10:]
    return Binding(
        name=name,
        mac=mac,
        ip=IPv4(ip),
        prefix=int(prefix),
        gateway=None if gateway is None else IPv4(gateway),
        vlan=vlan,
        server_id=IPv4(server_id),
        server_mac=server_mac,
        lease_time=int(lease_time),
        obtained_at=float(obtained_at),
        interface=interface,
        netns=ns,
        dns=tuple(IPv4(a) for a in dns.split()),
    )
