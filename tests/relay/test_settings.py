"""Settings: SnowSignal's flags and env vars, precedence, rules from flags/env/file, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from crosscast.relay import settings
from crosscast.relay.rules import MESH
from crosscast.relay.settings import SettingsError


def load(*argv: str, **env: str) -> settings.RelaySettings:
    return settings.load(list(argv), env)


def test_snowsignal_defaults() -> None:
    s = load()
    (out, back) = s.rules
    assert (out.ingress, out.egress, back.ingress, back.egress) == (
        "eth0",
        (MESH,),
        MESH,
        ("eth0",),
    )
    assert [(r.first, r.last) for r in out.ports] == [(5076, 5076)]
    assert (s.mesh_port, s.mesh_format, s.log_level, s.other_relays) == (
        7124,
        "crosscast",
        "info",
        (),
    )


def test_snowsignal_env_vars_are_read() -> None:
    s = load(TARGET_INTERFACE="eth1", BDCAST_PORT="5075", MESH_PORT="7000", LOGLEVEL="debug")
    assert s.interfaces == ("eth1",)
    assert s.rules[0].ports[0].first == 5075
    assert (s.mesh_port, s.log_level) == (7000, "debug")
    assert s.sources["mesh_port"] == "env MESH_PORT"


def test_command_line_beats_env() -> None:
    s = load("-m", "7200", MESH_PORT="7000")
    assert s.mesh_port == 7200
    assert s.sources["mesh_port"] == "command line"


def test_env_beats_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "crosscast.conf"
    conf.write_text("mesh-port = 7300\nlog-level = warning\n")
    s = load("-c", str(conf), MESH_PORT="7000")
    assert (s.mesh_port, s.log_level) == (7000, "warning")
    assert s.sources["log_level"].startswith("config file")


def test_servicename_turns_on_swarm_discovery() -> None:
    s = load("--other-relays", "10.0.0.2", "relay.example", SERVICENAME="pva")
    assert s.peer_names == ("10.0.0.2", "relay.example", "tasks.pva")


def test_empty_servicename_means_no_discovery() -> None:
    assert load(SERVICENAME="").peer_names == ()


def test_rules_from_flags_and_env_replace_the_snowsignal_pair() -> None:
    s = load(
        "--rule",
        "gps from eth0 to eth2,eth3 port 10110",
        RULES="emergency from eth3 to eth0 port 5000; pva from eth0 to mesh port 5076",
    )
    assert [r.name for r in s.rules] == ["gps", "emergency", "pva"]
    assert s.interfaces == ("eth0", "eth2", "eth3")
    assert s.uses_mesh


def test_rules_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: gps\n    from: eth0\n    to: [eth2]\n    ports: [10110]\n")
    s = load("--rules-file", str(path))
    assert [r.name for r in s.rules] == ["gps"]
    assert not s.uses_mesh


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["-b", "7124"], {}, "mesh port"),
        (["--mesh-secret-file", "/nonexistent/secret"], {}, "cannot read mesh secret file"),
        (["--rule", "gps from eth0 to eth0 port 1"], {}, "gps"),
        (["--rules-file", "/nonexistent/rules.yaml"], {}, "cannot read rules file"),
        (["-b", "70000"], {}, "out of range"),
        (["--mesh-format", "carrier-pigeon"], {}, "invalid choice"),
        ([], {"BDCAST_PORT": "many"}, "invalid"),
    ],
)
def test_bad_configuration_is_one_line(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as e:
        settings.load(argv, env)
    assert e.value.problems
    assert any(message in p for p in e.value.problems)
    assert all("\n" not in p for p in e.value.problems)


# Found while fuzzing the rules file (issue 9): _read_rules_file decodes with the locale's encoding
# and catches only OSError, so a rules file that is not UTF-8 is a UnicodeDecodeError traceback,
# not one line. Not fixed on this branch (settings.py is being restructured): read it with
# encoding="utf-8", UnicodeDecodeError becomes a RuleError naming the file. Then drop the xfail.
@pytest.mark.xfail(raises=UnicodeDecodeError, strict=True, reason="fuzz finding, issue 9")
def test_rules_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(b"rules: []\n# \xff\xfe\n")
    with pytest.raises(SettingsError, match=r"rules\.yaml"):
        load("--rules-file", str(path))


def test_secret_with_snowsignal_format_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    with pytest.raises(SettingsError, match="snowsignal format has no authentication"):
        load("--mesh-format", "snowsignal", "--mesh-secret-file", str(secret))


def test_secret_file_is_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    assert load(MESH_SECRET_FILE=str(secret)).mesh_secret == b"s3cret"


def test_describe_names_each_origin() -> None:
    lines = settings.describe(load("-m", "7200", LOGLEVEL="debug"))
    assert any("mesh port" in line and "[command line]" in line for line in lines)
    assert any("log level" in line and "[env LOGLEVEL]" in line for line in lines)
    assert any("mesh format" in line and "[default]" in line for line in lines)
