"""Golden-file tests of the topology renderers, and of `crosscast topology render`.

The golden files live in tests/golden/topology/<example>/. After a deliberate change to a
renderer, regenerate them with `CROSSCAST_REGEN_GOLDEN=1 pytest tests/test_topology_render.py`
and review the diff like code.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from crosscast.cli import main
from crosscast.topology.load import load_topology
from crosscast.topology.model import mac_for_name
from crosscast.topology.render import RENDERERS, render_all

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "topology"
EXAMPLES = ("seeds", "macvlan")
REGENERATE = os.environ.get("CROSSCAST_REGEN_GOLDEN") == "1"


def _example(name: str) -> Path:
    return ROOT / "examples" / f"topology-{name}.yaml"


@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("filename", sorted(RENDERERS))
def test_rendered_file_matches_golden(example: str, filename: str) -> None:
    rendered = RENDERERS[filename](load_topology(_example(example)))
    golden = GOLDEN / example / filename
    if REGENERATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden}: run with CROSSCAST_REGEN_GOLDEN=1"
    assert rendered == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("example", EXAMPLES)
def test_render_is_deterministic(example: str) -> None:
    assert render_all(load_topology(_example(example))) == render_all(
        load_topology(_example(example))
    )


def test_render_does_not_depend_on_where_the_file_is(tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere.yaml"
    copy.write_text(_example("seeds").read_text())
    assert render_all(load_topology(copy)) == render_all(load_topology(_example("seeds")))


def test_seeds_dhcpd_conf_has_the_fixed_second_range() -> None:
    conf = render_all(load_topology(_example("seeds")))["dhcpd.conf"]
    assert "range 10.0.2.100 10.0.2.200;" in conf
    assert "10.0.1.200;" not in conf.split("subnet 10.0.2.0")[1]


def test_router_address_of_other_vlan_is_dropped_on_input() -> None:
    rules = render_all(load_topology(_example("seeds")))["router-firewall.rules"]
    assert "-A INPUT -d 10.0.2.3/32 -i eth0 -j DROP" in rules
    assert "-A INPUT -d 10.0.1.3/32 -i eth2 -j DROP" in rules


def test_containers_without_address_take_ip_and_mac_from_a_lease() -> None:
    script = render_all(load_topology(_example("seeds")))["docker-containers.sh"]
    lease = "crosscast lease Container1 --vlan vlan1 --interface br0 --format env"
    assert f'eval "$({lease})"' in script
    assert '--ip="$CROSSCAST_IP"' in script
    assert '--mac-address="$CROSSCAST_MAC"' in script


def test_compose_uses_the_deterministic_mac() -> None:
    compose = render_all(load_topology(_example("seeds")))["compose.yaml"]
    assert f"mac_address: {mac_for_name('Container1')}" in compose


def test_mac_for_name_is_stable_local_and_unicast() -> None:
    mac = mac_for_name("Container1")
    assert mac == mac_for_name("Container1")
    assert mac != mac_for_name("Container2")
    first = int(mac.split(":")[0], 16)
    assert first & 0b10  # locally administered
    assert not first & 0b01  # unicast


def test_render_command_writes_every_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["topology", "render", str(_example("seeds")), "--output-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(RENDERERS)
    for path in out.iterdir():
        assert path.read_text() == (GOLDEN / "seeds" / path.name).read_text()
        executable = bool(path.stat().st_mode & stat.S_IXUSR)
        assert executable == path.name.endswith(".sh")
    assert str(out / "dhcpd.conf") in capsys.readouterr().out


def test_render_command_refuses_a_bad_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    bad = ROOT / "examples" / "topology-bad-range.yaml"
    assert main(["topology", "render", str(bad), "--output-dir", str(out)]) == 2
    assert not out.exists()


@pytest.mark.parametrize("example", sorted(p.name for p in GOLDEN.iterdir()))
def test_rendered_relay_rules_load_and_validate_in_the_relay(example: str) -> None:
    from crosscast.relay.rules import load_rules_yaml, validate_rules

    path = GOLDEN / example / "relay-rules.yaml"
    rules = load_rules_yaml(path.read_text(), str(path))
    assert validate_rules(rules, interfaces=None, mesh_port=7124) == []
