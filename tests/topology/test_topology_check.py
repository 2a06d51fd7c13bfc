"""`crosscast topology check`: every problem of a bad file, as FILE:LINE:COLUMN: message.

Each case is the valid BASE file with one line replaced (so line numbers stay put; the
comments give them) and the exact messages expected.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crosscast.cli import main
from crosscast.topology.load import TopologyErrors, load_topology, parse_topology
from crosscast.topology.model import Topology

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
name: t                                                    # 1
trunk: enp2s0                                              # 2
uplink:                                                    # 3
  interface: wlp3s0f0                                      # 4
  subnet: 192.168.1.0/24                                   # 5
  gateway: 192.168.1.1                                     # 6
  router_address: 192.168.1.3                              # 7
  router_interface: eth1                                   # 8
  network: {name: wlan, driver: ipvlan}                    # 9
vlans:                                                     # 10
  - id: 1                                                  # 11
    name: vlan1                                            # 12
    subnet: 10.0.1.0/24                                    # 13
    gateway: 10.0.1.1                                      # 14
    router_address: 10.0.1.3                               # 15
    bridge: br0                                            # 16
    router_interface: eth0                                 # 17
    network: {name: br0net, driver: bridge}                # 18
    dhcp: {range: [10.0.1.100, 10.0.1.200]}                # 19
  - id: 2                                                  # 20
    name: vlan2                                            # 21
    subnet: 10.0.2.0/24                                    # 22
    gateway: 10.0.2.1                                      # 23
    router_address: 10.0.2.3                               # 24
    bridge: br1                                            # 25
    router_interface: eth2                                 # 26
    network: {name: br1net, driver: bridge}                # 27
    dhcp: {range: [10.0.2.100, 10.0.2.200]}                # 28
router: {name: router, image: alpine}                      # 29
containers:                                                # 30
  - {name: Container1, image: alpine, vlan: vlan1}         # 31
devices:                                                   # 32
  - {name: Device1, vlan: vlan1, mac: "02:00:0a:00:01:0b", address: 10.0.1.11}
firewall:                                                  # 34
  allow:                                                   # 35
    - {from: vlan1, to: vlan2, protocol: udp, ports: [5000]}
relay_rules:                                               # 37
  - {name: r1, from: vlan1, to: [vlan2], ports: [5000]}    # 38
"""


def _with_line(number: int, text: str) -> str:
    lines = BASE.splitlines()
    indent = lines[number - 1][: len(lines[number - 1]) - len(lines[number - 1].lstrip())]
    lines[number - 1] = indent + text
    return "\n".join(lines) + "\n"


# (case id, line to replace, its new text, expected messages as (line, message))
CASES: list[tuple[str, int, str, list[tuple[int, int, str]]]] = [
    (
        "seeds-bad-range",
        28,
        "dhcp: {range: [10.0.2.2, 10.0.1.200]}",
        [(28, 19, "VLAN vlan2 DHCP range 10.0.2.2 - 10.0.1.200 is outside subnet 10.0.2.0/24")],
    ),
    (
        "backwards-range",
        19,
        "dhcp: {range: [10.0.1.200, 10.0.1.100]}",
        [(19, 19, "VLAN vlan1 DHCP range 10.0.1.200 - 10.0.1.100 is backwards")],
    ),
    (
        "range-not-a-pair",
        19,
        "dhcp: {range: [10.0.1.100]}",
        [(19, 19, "VLAN vlan1 DHCP range must be [first, last]")],
    ),
    (
        "overlapping-subnets",
        22,
        "subnet: 10.0.0.0/16",
        [(22, 13, "subnet 10.0.0.0/16 of VLAN vlan2 overlaps 10.0.1.0/24 of VLAN vlan1")],
    ),
    (
        "vlan-overlaps-uplink",
        13,
        "subnet: 192.168.1.0/24",
        [
            (13, 13, "subnet 192.168.1.0/24 of VLAN vlan1 overlaps 192.168.1.0/24 of the uplink"),
            (14, 14, "VLAN vlan1 gateway 10.0.1.1 is outside subnet 192.168.1.0/24"),
            (15, 21, "VLAN vlan1 router_address 10.0.1.3 is outside subnet 192.168.1.0/24"),
            (
                19,
                19,
                "VLAN vlan1 DHCP range 10.0.1.100 - 10.0.1.200 is outside subnet 192.168.1.0/24",
            ),
            (
                33,
                69,
                "fixed address 10.0.1.11 of Device1 is outside VLAN vlan1 subnet 192.168.1.0/24",
            ),
        ],
    ),
    ("duplicate-vlan-id", 20, "- id: 1", [(20, 9, "duplicate VLAN id 1 (also on line 11)")]),
    (
        "duplicate-vlan-name",
        21,
        "name: vlan1",
        [
            (21, 11, "duplicate VLAN name vlan1 (also on line 12)"),
            (36, 25, "firewall exception names unknown VLAN 'vlan2'"),
            (38, 33, "rule 'r1': names unknown VLAN 'vlan2'"),
        ],
    ),
    ("vlan-id-out-of-range", 20, "- id: 4095", [(20, 9, "VLAN id 4095 is not in 1..4094")]),
    (
        "gateway-outside-subnet",
        14,
        "gateway: 10.0.9.1",
        [(14, 14, "VLAN vlan1 gateway 10.0.9.1 is outside subnet 10.0.1.0/24")],
    ),
    (
        "router-address-outside-subnet",
        24,
        "router_address: 10.9.2.3",
        [(24, 21, "VLAN vlan2 router_address 10.9.2.3 is outside subnet 10.0.2.0/24")],
    ),
    (
        "router-address-inside-pool",
        15,
        "router_address: 10.0.1.150",
        [
            (
                15,
                21,
                "VLAN vlan1 router_address 10.0.1.150 is inside the DHCP range "
                "10.0.1.100 - 10.0.1.200",
            )
        ],
    ),
    (
        "uplink-router-address-outside-subnet",
        7,
        "router_address: 192.168.2.3",
        [(7, 19, "uplink router_address 192.168.2.3 is outside subnet 192.168.1.0/24")],
    ),
    (
        "fixed-address-inside-pool",
        33,
        '- {name: Device1, vlan: vlan1, mac: "02:00:0a:00:01:0b", address: 10.0.1.150}',
        [
            (
                33,
                69,
                "fixed address 10.0.1.150 of Device1 is inside the DHCP range "
                "10.0.1.100 - 10.0.1.200 of VLAN vlan1",
            )
        ],
    ),
    (
        "fixed-address-outside-subnet",
        33,
        '- {name: Device1, vlan: vlan1, mac: "02:00:0a:00:01:0b", address: 10.0.2.11}',
        [(33, 69, "fixed address 10.0.2.11 of Device1 is outside VLAN vlan1 subnet 10.0.1.0/24")],
    ),
    (
        "fixed-address-is-the-router",
        33,
        '- {name: Device1, vlan: vlan1, mac: "02:00:0a:00:01:0b", address: 10.0.1.3}',
        [(33, 69, "duplicate address 10.0.1.3 (also on line 15)")],
    ),
    (
        "device-address-without-mac",
        33,
        "- {name: Device1, vlan: vlan1, address: 10.0.1.11}",
        [(33, 5, "device Device1 has a fixed address but no mac (dhcpd fixes it by MAC)")],
    ),
    (
        "container-on-unknown-vlan",
        31,
        "- {name: Container1, image: alpine, vlan: vlan7}",
        [(31, 45, "container Container1 is on unknown VLAN 'vlan7'")],
    ),
    (
        "relay-rule-unknown-vlan",
        38,
        "- {name: r1, from: vlan1, to: [vlan9], ports: [5000]}",
        [(38, 33, "rule 'r1': names unknown VLAN 'vlan9'")],
    ),
    (
        "relay-rule-matches-nothing",
        38,
        "- {name: r1, from: vlan1, to: [vlan2]}",
        [(38, 5, "rule 'r1': missing 'ports'")],
    ),
    (
        "relay-group-not-multicast",
        38,
        "- {name: r1, from: vlan1, to: [vlan2], groups: ['10.0.0.1:5000']}",
        [(38, 42, "rule 'r1': group 10.0.0.1 is not multicast (224.0.0.0/4)")],
    ),
    (
        "firewall-unknown-vlan",
        36,
        "- {from: vlan1, to: vlan3, protocol: udp, ports: [5000]}",
        [(36, 25, "firewall exception names unknown VLAN 'vlan3'")],
    ),
    (
        "firewall-ports-without-protocol",
        36,
        "- {from: vlan1, to: vlan2, ports: [5000]}",
        [(36, 39, "firewall ports need protocol tcp or udp")],
    ),
    (
        "aux-address-outside-subnet",
        18,
        "network: {name: br0net, driver: macvlan, aux_addresses: {plc: 10.0.2.20}}",
        [(18, 67, "VLAN vlan1 aux address 'plc' 10.0.2.20 is outside subnet 10.0.1.0/24")],
    ),
    (
        "aux-address-inside-pool",
        18,
        "network: {name: br0net, driver: macvlan, aux_addresses: {plc: 10.0.1.120}}",
        [(18, 67, "VLAN vlan1 aux address 'plc' 10.0.1.120 is inside the DHCP range")],
    ),
    (
        "ip-range-outside-subnet",
        18,
        "network: {name: br0net, driver: macvlan, ip_range: 10.0.2.0/25}",
        [(18, 56, "VLAN vlan1 ip_range 10.0.2.0/25 is outside subnet 10.0.1.0/24")],
    ),
    (
        "ip-range-overlaps-pool",
        18,
        "network: {name: br0net, driver: macvlan, ip_range: 10.0.1.128/25}",
        [
            (
                18,
                56,
                "VLAN vlan1 ip_range 10.0.1.128/25 overlaps the DHCP range 10.0.1.100 - "
                "10.0.1.200 (Docker and dhcpd would hand out the same addresses)",
            )
        ],
    ),
    (
        "unknown-driver",
        18,
        "network: {name: br0net, driver: overlay}",
        [(18, 37, "VLAN vlan1 network driver 'overlay' is not one of bridge, macvlan, ipvlan")],
    ),
    (
        "bad-address-string",
        15,
        "router_address: 10.0.1.300",
        [(15, 21, "VLAN vlan1 router_address '10.0.1.300' is not an IPv4 address")],
    ),
    (
        "subnet-with-host-bits",
        13,
        "subnet: 10.0.1.5/24",
        [(13, 13, "VLAN vlan1 subnet '10.0.1.5/24' has host bits set (did you mean 10.0.1.0/24?)")],
    ),
    (
        "bad-mac",
        33,
        '- {name: Device1, vlan: vlan1, mac: "02:00:0a:00:01", address: 10.0.1.11}',
        [(33, 39, "device mac '02:00:0a:00:01' is not a MAC address (like 02:00:0a:00:01:0b)")],
    ),
    (
        "unknown-key",
        16,
        "bridg: br0",
        [(11, 5, "a VLAN lacks 'bridge'"), (16, 5, "unknown key 'bridg' in a VLAN")],
    ),
    (
        "interface-name-too-long",
        16,
        "bridge: br-much-too-long0",
        [(16, 13, "VLAN vlan1 bridge 'br-much-too-long0' is longer than 15 characters")],
    ),
    (
        "duplicate-router-interface",
        26,
        "router_interface: eth0",
        [(26, 23, "duplicate router interface eth0 (also on line 17)")],
    ),
    (
        "reserved-bridge-name",
        16,
        "bridge: brup",
        [(16, 13, "bridge name brup is reserved for the uplink")],
    ),
    (
        "duplicate-host-name",
        31,
        "- {name: Device1, image: alpine, vlan: vlan1}",
        [(33, 12, "duplicate container, device or router name Device1 (also on line 31)")],
    ),
    (
        "lease-times-backwards",
        19,
        "dhcp: {range: [10.0.1.100, 10.0.1.200], default_lease_time: 9000}",
        [(19, 11, "VLAN vlan1 default_lease_time 9000 is longer than max_lease_time 7200")],
    ),
    (
        "not-yaml",
        13,
        "subnet: [10.0.1.0/24",
        [
            (
                14,
                12,
                "not valid YAML: while parsing a flow sequence (line 13), expected ',' or ']', "
                "but got ':'",
            )
        ],
    ),
]


def test_base_file_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(BASE)
    assert load_topology(path).name == "t"


@pytest.mark.parametrize(
    ("line", "text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_file_is_reported_with_file_and_line(
    tmp_path: Path, line: int, text: str, expected: list[tuple[int, int, str]]
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(_with_line(line, text))
    with pytest.raises(TopologyErrors) as caught:
        load_topology(path)
    assert caught.value.problems == [f"{path}:{n}:{c}: {message}" for n, c, message in expected]


def test_check_command_prints_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.yaml"
    text = _with_line(28, "dhcp: {range: [10.0.2.2, 10.0.1.200]}")
    path.write_text(text.replace("vlan: vlan1}         # 31", "vlan: vlan7}         # 31"))
    assert main(["topology", "check", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:28:19: VLAN vlan2 DHCP range 10.0.2.2 - 10.0.1.200 is outside subnet 10.0.2.0/24",
        f"{path}:31:45: container Container1 is on unknown VLAN 'vlan7'",
    ]


def test_check_command_accepts_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("seeds", "macvlan"):
        assert main(["topology", "check", str(ROOT / "examples" / f"topology-{name}.yaml")]) == 0
    assert "ok: topology seeds" in capsys.readouterr().out


def test_bad_range_example_names_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    path = "examples/topology-bad-range.yaml"
    assert main(["topology", "check", str(ROOT / path)]) == 2
    assert capsys.readouterr().err == (
        f"{ROOT / path}:40:14: VLAN vlan2 DHCP range 10.0.2.2 - 10.0.1.200 is outside subnet "
        "10.0.2.0/24\n"
    )


def test_missing_file_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "check", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read topology file " in capsys.readouterr().err


def test_empty_file_is_reported() -> None:
    with pytest.raises(TopologyErrors) as caught:
        parse_topology("", "e.yaml")
    assert caught.value.problems == ["e.yaml:1:1: the file is empty"]


def test_verify_without_a_prefix_hands_the_topology_to_run_verify(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from crosscast.topology import verify

    calls: list[tuple[str, str | None]] = []

    def run_verify(topology: Topology, netns_prefix: str | None = None) -> int:
        calls.append((topology.name, netns_prefix))
        return 1

    monkeypatch.setattr(verify, "run_verify", run_verify)
    assert main(["topology", "verify", str(ROOT / "examples" / "topology-seeds.yaml")]) == 1
    assert calls == [("seeds", None)]


def test_verify_expects_what_the_relay_expectation_says(monkeypatch: pytest.MonkeyPatch) -> None:
    from crosscast.topology import verify

    calls: list[dict[str, object]] = []
    expectation = verify.Expectation(
        (verify.Crossing("broadcast", "vlan1", "vlan2"),), "relay: running (a stand-in)"
    )

    def run_verify(topology: Topology, netns_prefix: str | None = None, **kwargs: object) -> int:
        calls.append({"prefix": netns_prefix, **kwargs})
        return 0

    monkeypatch.setattr(verify, "run_verify", run_verify)
    monkeypatch.setattr(verify, "relay_expectation", lambda topology, prefix: expectation)
    seeds = str(ROOT / "examples" / "topology-seeds.yaml")
    assert main(["topology", "verify", seeds, "--netns-prefix", "p-"]) == 0
    assert calls == [
        {
            "prefix": "p-",
            "expected_crossings": expectation.crossings,
            "assumption": "relay: running (a stand-in)",
            "output_format": "text",
        }
    ]


# --- --format json -------------------------------------------------------------------------------

CHECK_KEYS = {"file", "ok", "problems", "topology"}


def test_check_json_summarises_a_valid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(BASE)
    assert main(["topology", "check", str(path), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == CHECK_KEYS
    assert (report["file"], report["ok"], report["problems"]) == (str(path), True, [])
    assert report["topology"] == {
        "name": "t",
        "vlans": [
            {"id": 1, "name": "vlan1", "subnet": "10.0.1.0/24"},
            {"id": 2, "name": "vlan2", "subnet": "10.0.2.0/24"},
        ],
        "containers": ["Container1"],
        "devices": ["Device1"],
    }


def test_check_json_lists_every_problem_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        BASE.replace(
            "dhcp: {range: [10.0.2.100, 10.0.2.200]}", "dhcp: {range: [10.0.2.2, 10.0.1.200]}"
        )
    )
    assert main(["topology", "check", str(path), "--format", "json"]) == 2
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert err == ""
    assert set(report) == CHECK_KEYS
    assert (report["ok"], report["topology"]) == (False, None)
    assert report["problems"]
    assert all(p.startswith(f"{path}:28:") for p in report["problems"])
