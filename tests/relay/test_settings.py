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
        (["--scheduler-slice", "50"], {}, "scheduler slice 50 us is out of range 100-100000"),
        ([], {"SCHEDULER_SLICE": "200000"}, "out of range 100-100000 (or 0 for the kernel's)"),
    ],
)
def test_bad_configuration_is_one_line(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as e:
        settings.load(argv, env)
    assert e.value.problems
    assert any(message in p for p in e.value.problems)
    assert all("\n" not in p for p in e.value.problems)


# Found while fuzzing the rules file (issue 9): it was read with the locale's encoding and only
# OSError was caught, so a file that is not UTF-8 was a UnicodeDecodeError traceback.
def test_rules_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(b"rules: []\n# \xff\xfe\n")
    with pytest.raises(SettingsError) as e:
        load("--rules-file", str(path))
    assert e.value.problems == [
        f"rules file {path} is not UTF-8 text (invalid start byte at byte 12)"
    ]


def test_the_scheduler_slice_is_the_shortest_unless_set() -> None:
    assert load().scheduler_slice == 100
    assert load(SCHEDULER_SLICE="0").scheduler_slice == 0  # the kernel's default
    assert load("--scheduler-slice", "3000").scheduler_slice == 3000


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


def test_env_vars_are_every_variable_the_relay_reads() -> None:
    # Whoever starts a relay unsets these (topology apply, the demo): a missing one would leak.
    assert settings.env_vars() == (
        "BDCAST_PORT",
        "DECODE_PVACCESS",
        "DISCOVERY_INTERVAL",
        "EGRESS_RATE",
        "EVENT_LOOP",
        "LOGLEVEL",
        "LOG_FORMAT",
        "MESH_FORMAT",
        "MESH_MTU",
        "MESH_PORT",
        "MESH_SECRET_FILE",
        "METRICS_ADDRESS",
        "METRICS_PORT",
        "PEERS_DNS",
        "RCVBUF",
        "RULES",
        "RULES_FILE",
        "SCHEDULER_SLICE",
        "SERVICENAME",
        "TARGET_INTERFACE",
        "WAIT_FOR_INTERFACES",
    )


@pytest.mark.parametrize(
    ("contents", "problem"),
    [
        (None, "cannot read mesh secret file {path}: No such file or directory"),
        (b"\n", "cannot read mesh secret file {path}: the secret is empty"),
    ],
    ids=["missing", "empty"],
)
def test_an_unusable_secret_file_is_one_problem(
    tmp_path: Path, contents: bytes | None, problem: str
) -> None:
    path = tmp_path / "secret"
    if contents is not None:
        path.write_bytes(contents)
    with pytest.raises(SettingsError) as e:
        load(MESH_SECRET_FILE=str(path))
    assert e.value.problems == [problem.format(path=path)]


@pytest.mark.parametrize(
    ("argv", "env", "origin"),
    [
        (["-m", "7300"], {}, "command line"),
        (["--mesh-port=7300"], {}, "command line"),
        ([], {"MESH_PORT": "7300"}, "env MESH_PORT"),
        ([], {}, None),
    ],
)
def test_sources_say_where_a_setting_came_from(
    argv: list[str], env: dict[str, str], origin: str | None
) -> None:
    assert settings.load(argv, env).sources.get("mesh_port") == origin
