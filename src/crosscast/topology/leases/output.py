"""The printed forms of bindings: shell assignments, JSON, and the `--list` table. Pure."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from crosscast.topology.leases.binding import Binding


def iso(ts: float) -> str:
    """A Unix time as ISO 8601 UTC, to the second."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def format_env(b: Binding) -> str:
    """Shell assignments for `eval "$(crosscast lease NAME --vlan V)"`, every value quoted."""
    values = {
        "CROSSCAST_NAME": b.name,
        "CROSSCAST_MAC": b.mac,
        "CROSSCAST_IP": str(b.ip),
        "CROSSCAST_PREFIX": str(b.prefix),
        "CROSSCAST_GATEWAY": "" if b.gateway is None else str(b.gateway),
        "CROSSCAST_VLAN": b.vlan,
    }
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def binding_to_json(b: Binding) -> dict[str, Any]:
    return {
        "name": b.name,
        "mac": b.mac,
        "ip": str(b.ip),
        "prefix": b.prefix,
        "subnet": str(b.subnet),
        "gateway": None if b.gateway is None else str(b.gateway),
        "vlan": b.vlan,
        "dns": [str(a) for a in b.dns],
        "server_id": str(b.server_id),
        "lease_time": b.lease_time,
        "obtained_at": iso(b.obtained_at),
        "expires_at": iso(b.expires_at),
        "interface": b.interface,
        "netns": b.netns,
    }


def format_json(b: Binding) -> str:
    return json.dumps(binding_to_json(b), indent=2) + "\n"


def format_json_list(bindings: Sequence[Binding]) -> str:
    return json.dumps([binding_to_json(b) for b in bindings], indent=2) + "\n"


def format_table(bindings: Sequence[Binding]) -> str:
    header = ("NAME", "VLAN", "ADDRESS", "MAC", "GATEWAY", "SERVER", "EXPIRES")
    rows = [
        (
            b.name,
            b.vlan,
            f"{b.ip}/{b.prefix}",
            b.mac,
            "-" if b.gateway is None else str(b.gateway),
            str(b.server_id),
            iso(b.expires_at),
        )
        for b in bindings
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in [header, *rows]
    )
