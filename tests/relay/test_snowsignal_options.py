"""The drop-in promise, read from the source: every option and environment variable that
SnowSignal's own `--help` lists (the snowsignal package pinned in the test extra) is accepted by
`crosscast relay ... --check`, with exit 0.

The help text is parsed, not copied, so a SnowSignal release that adds an option fails here
until crosscast accepts it too. --check runs on test_check_golden's fake host (lo, eth0, eth2,
eth3), so no real interface is needed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import pytest

from tests.relay.test_check_golden import Case, Result  # run_check: tests/conftest.py

# A value crosscast accepts for each of SnowSignal's metavars (on the fake host).
VALUES = {
    "TARGET_INTERFACE": "eth0",
    "BROADCAST_PORT": "5076",
    "MESH_PORT": "7124",
    "OTHER_RELAYS": "10.0.9.2",
}


@dataclass(frozen=True)
class Option:
    spellings: tuple[str, ...]  # "-t", "--target-interface"
    metavar: str | None  # None: a flag
    env_var: str | None

    def value(self) -> str | None:
        if self.metavar is None:
            return None
        choices = re.fullmatch(r"\{(.*)\}", self.metavar)
        if choices:
            return choices.group(1).split(",")[0]
        assert self.metavar in VALUES, f"no test value for SnowSignal's {self.metavar}"
        return VALUES[self.metavar]


@cache
def snowsignal_help() -> str:
    # Wide columns: argparse then writes one line per option and never splits "[env var: X]".
    env = {**os.environ, "COLUMNS": "500"}
    proc = subprocess.run(
        [sys.executable, "-m", "snowsignal", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    return proc.stdout


def parse_options(text: str) -> list[Option]:
    """The options of an argparse help text, except -h/--help."""
    section = text.split("options:", 1)[1] if "options:" in text else text
    # An option line starts with "  -"; its description follows on it or on indented lines.
    entries: list[tuple[str, list[str]]] = []
    for line in section.splitlines():
        found = re.match(r"^  (-\S.*?)(?:\s{2,}(.*))?$", line)
        if found:
            entries.append((found.group(1), [found.group(2) or ""]))
        elif entries and line.startswith("   "):
            entries[-1][1].append(line.strip())
    options = []
    for usage, description in entries:
        spellings, metavar = [], None
        for part in usage.split(", "):
            name, _, meta = part.partition(" ")
            spellings.append(name)
            metavar = meta.split(" ")[0] if meta else None
        env_var = re.search(r"\[env var: (\w+)\]", " ".join(description))
        if "--help" not in spellings:
            options.append(Option(tuple(spellings), metavar, env_var and env_var.group(1)))
    return options


def ids(options: list[tuple[str, Option]]) -> list[str]:
    return [spelling for spelling, _ in options]


SPELLINGS = [(s, o) for o in parse_options(snowsignal_help()) for s in o.spellings]
ENV_VARS = [o for o in parse_options(snowsignal_help()) if o.env_var]


def test_the_help_text_lists_what_snowsignal_0_1_4_2_documents() -> None:
    # Guards the parser: if it found nothing, the tests below would pass vacuously.
    spellings = {s for s, _ in SPELLINGS}
    assert {"-t", "--target-interface", "-ll", "--log-level", "--decode-pvaccess"} <= spellings
    assert {o.env_var for o in ENV_VARS} >= {"TARGET_INTERFACE", "BDCAST_PORT", "LOGLEVEL"}


@pytest.mark.parametrize(("spelling", "option"), SPELLINGS, ids=ids(SPELLINGS))
def test_every_snowsignal_option_is_accepted_by_relay_check(
    spelling: str, option: Option, run_check: Callable[[Case], Result]
) -> None:
    value = option.value()
    args = (spelling,) if value is None else (spelling, value)
    proc = run_check(Case(f"snowsignal {spelling}", (*args, "--check")))
    assert proc.returncode == 0, f"crosscast relay {' '.join(args)} --check:\n{proc.stderr}"
    assert "configuration ok" in proc.stdout


@pytest.mark.parametrize("option", ENV_VARS, ids=[o.env_var or "" for o in ENV_VARS])
def test_every_snowsignal_env_var_is_accepted_by_relay_check(
    option: Option, run_check: Callable[[Case], Result]
) -> None:
    assert option.env_var is not None
    value = option.value()
    assert value is not None, f"{option.env_var} is the env var of a flag"
    proc = run_check(Case(f"snowsignal ${option.env_var}", ("--check",), {option.env_var: value}))
    assert proc.returncode == 0, f"{option.env_var}={value} crosscast relay --check:\n{proc.stderr}"
    assert f"{value}" in proc.stdout  # the effective settings show the value it set
