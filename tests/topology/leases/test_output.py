"""The printed forms of a binding: shell assignments, JSON, the table."""

from __future__ import annotations

import json
import shlex
import subprocess

from crosscast.topology.leases.output import format_env, format_json, format_table
from tests.topology.leases.helpers import make_binding

# --- output ---------------------------------------------------------------------------------------


def test_env_output_has_the_six_variables() -> None:
    assert format_env(make_binding()) == (
        "CROSSCAST_NAME=container1\n"
        "CROSSCAST_MAC=02:45:4e:61:a0:da\n"
        "CROSSCAST_IP=10.0.1.100\n"
        "CROSSCAST_PREFIX=24\n"
        "CROSSCAST_GATEWAY=10.0.1.3\n"
        "CROSSCAST_VLAN=1\n"
    )


def test_env_output_quotes_values_for_eval() -> None:
    nasty = "it's $(rm -rf /) `x`; a b"
    text = format_env(make_binding(vlan=nasty, gateway=None))
    out = subprocess.run(
        [
            "sh",
            "-c",
            'eval "$1"; printf "%s|%s" "$CROSSCAST_VLAN" "$CROSSCAST_GATEWAY"',
            "sh",
            text,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == f"{nasty}|"
    assert shlex.split(text.splitlines()[5]) == [f"CROSSCAST_VLAN={nasty}"]


def test_json_output_has_addresses_and_times() -> None:
    data = json.loads(format_json(make_binding()))
    assert data["ip"] == "10.0.1.100"
    assert data["subnet"] == "10.0.1.0/24"
    assert data["prefix"] == 24
    assert data["mac"] == "02:45:4e:61:a0:da"
    assert data["obtained_at"] == "2023-11-14T22:13:20+00:00"
    assert data["expires_at"] == "2023-11-14T23:13:20+00:00"
    assert data["dns"] == ["8.8.8.8"]


def test_table_lists_one_row_per_binding_under_a_header() -> None:
    lines = format_table([make_binding("a"), make_binding("bb", gateway=None)]).splitlines()
    assert lines[0].split() == ["NAME", "VLAN", "ADDRESS", "MAC", "GATEWAY", "SERVER", "EXPIRES"]
    assert lines[1].split()[:3] == ["a", "1", "10.0.1.100/24"]
    assert lines[2].split()[4] == "-"
