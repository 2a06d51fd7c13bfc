"""`crosscast lease` on the command line: usage errors, the database path, VLAN look-up."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from crosscast.topology.leases.cli import _bridge_for_vlan, register_cli
from crosscast.topology.leases.store import LeaseStore
from tests.topology.leases.helpers import make_binding

# --- the command line ---------------------------------------------------------------------------


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="crosscast")
    register_cli(parser.add_subparsers())
    args = parser.parse_args(["lease", *argv])
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["c1"], "no lease recorded for c1: say which VLAN"),
        (["c1", "--vlan", "1"], "--vlan needs --interface IFACE or --topology FILE"),
        (["c1", "--interface", "br0"], "--interface needs --vlan"),
        ([], "give a container NAME, --list, or --release NAME"),
        (["c1", "--vlan", "1", "--interface", "br0", "--timeout", "0"], "--timeout must be"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert _cli(*argv, "--db", str(tmp_path / "l.db")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err


def test_cli_reads_the_database_path_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    LeaseStore(tmp_path / "env.db").put(make_binding())
    monkeypatch.setenv("CROSSCAST_LEASE_DB", str(tmp_path / "env.db"))
    assert _cli("--list", "--format", "json") == 0
    assert [b["name"] for b in json.loads(capsys.readouterr().out)] == ["container1"]


def test_cli_unknown_vlan_in_the_topology_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeds = Path(__file__).resolve().parents[3] / "examples" / "topology-seeds.yaml"
    rc = _cli("c1", "--vlan", "7", "--topology", str(seeds), "--db", str(tmp_path / "l.db"))
    assert rc == 2
    assert "no VLAN '7'; it has 1 (vlan1), 2 (vlan2)" in capsys.readouterr().err


def test_cli_vlan_name_maps_to_its_id_and_bridge(tmp_path: Path) -> None:
    seeds = Path(__file__).resolve().parents[3] / "examples" / "topology-seeds.yaml"
    assert _bridge_for_vlan(seeds, "vlan2") == ("2", "br1")
    assert _bridge_for_vlan(seeds, "1") == ("1", "br0")
