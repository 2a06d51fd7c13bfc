"""What a relay process loads: modules that only some configurations need stay out of it.

Issue 8: every module a relay imports stays resident (PyYAML 1.3 MB, hashlib/hmac 1 MB, ...).
Each test starts a fresh interpreter, takes the relay's start-up path as far as it goes without
sockets (the command line, settings, codec, rule table, log formatter) and reads sys.modules.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Loaded only when a configuration asks for them (or by other subcommands).
OPTIONAL = (
    "yaml",  # a --rules-file
    "crosscast.yamlfile",
    "hashlib",  # a --mesh-secret-file (the HMAC codec)
    "hmac",
    "secrets",
    "difflib",  # "did you mean" in a rule file with a misspelt key
    "datetime",  # --log-format json
    "pathlib",
    "shutil",  # argparse asks it for the terminal width unless told the width
    "prometheus_client",  # --metrics-port
    "crosscast.relay.metrics",
    "crosscast.relay.bench",
    "crosscast.relay.status",
    "crosscast.topology",
    "crosscast.demo",
    "crosscast.lab",
)

START_UP = """
import json, logging, os, sys
from crosscast import cli
from crosscast.relay import service, settings as config
from crosscast.relay.envelope import CrosscastCodec
from crosscast.relay.rules import format_rule_table

settings = config.load(sys.argv[1:], {})
CrosscastCodec(settings.mesh_secret)
format_rule_table(settings.rules)
list(config.describe(settings))
service._configure_logging(settings.log_level, settings.log_format, {})
logging.getLogger("crosscast").info("ready")
print(json.dumps(sorted(sys.modules)))
"""

ROUTER = ["--rule", "gps from eth1 to eth2 port 5076"]
MESH = ["-t", "eth0", "-b", "5076", "--other-relays", "192.0.2.2"]


def modules_after_start_up(argv: list[str]) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", START_UP, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},  # no RULES, MESH_SECRET_FILE, ... from the caller
    )
    assert proc.returncode == 0, proc.stderr
    loaded: list[str] = json.loads(proc.stdout.splitlines()[-1])
    return set(loaded)


def optional_loaded(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == o or m.startswith(f"{o}.") for o in OPTIONAL))


@pytest.mark.parametrize("argv", [ROUTER, MESH], ids=["router", "mesh"])
def test_a_relay_without_a_rule_file_or_secret_loads_no_optional_module(argv: list[str]) -> None:
    assert optional_loaded(modules_after_start_up(argv)) == []


def test_a_mesh_secret_loads_hashlib_and_nothing_else_optional(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    loaded = optional_loaded(modules_after_start_up([*MESH, "--mesh-secret-file", str(secret)]))
    assert loaded == ["hashlib", "hmac"]


def test_a_rule_file_loads_yaml(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n- {name: gps, from: eth1, to: eth2, ports: 5076}\n")
    loaded = optional_loaded(modules_after_start_up(["--rules-file", str(rules)]))
    assert "yaml" in loaded
    assert "crosscast.yamlfile" in loaded
