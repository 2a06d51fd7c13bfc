"""`crosscast relay --check` against golden files: stdout, stderr and exit status of each case.

Every case runs the relay's real entry point (`service.main`) from the repository root with a
controlled environment (only the case's own variables), so the output is the same on every
machine. No root is needed.

--check validates that the rules' interfaces exist, and asks the service's `Host` for them. So
that the golden files do not depend on this machine's interfaces, the cases pass a fake host
through that seam (`main(argv, environ=..., host=...)`): lo, eth0, eth2 and eth3, the fire-truck
router container's interfaces. One case runs `python -m crosscast relay` in a subprocess,
untouched, with rules on `lo` only.

Regenerate deliberately, then review the diff:
    CROSSCAST_REGEN_GOLDEN=1 .venv/bin/pytest tests/relay/test_check_golden.py
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import crosscast
from crosscast.relay import service

from .fakes import FakeHost

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "check"
INPUTS = GOLDEN.relative_to(ROOT)  # rule files, named relative to ROOT so origins are stable
PACKAGE_PARENT = Path(crosscast.__file__).resolve().parent.parent
# Set to 1 to rewrite the golden files from the current output, then review the diff.
REGEN = os.environ.get("CROSSCAST_REGEN_GOLDEN") == "1"

FAKE_INTERFACES = ("lo", "eth0", "eth2", "eth3")


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    fake_host: bool = True  # False: plain `python -m crosscast relay`, this machine's interfaces


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def rules(*texts: str) -> tuple[str, ...]:
    return tuple(arg for text in texts for arg in ("--rule", text))


GPS = "gps from eth0 to eth2,eth3 port 10110"
EMERGENCY = "emergency from eth3 to eth0,eth2 port 5000"
VIDEO = "video from eth0 to eth2 group 233.54.12.234 port 22001"

CASES = (
    # -- good configurations: exit 0, the settings with their origins, the rule table
    Case("ok-flags-router", (*rules(GPS, EMERGENCY, VIDEO), "--check")),
    Case(
        "ok-env-rules",
        ("--check",),
        {"RULES": f"{GPS}; {EMERGENCY};{VIDEO}", "LOGLEVEL": "warning", "MESH_PORT": "7200"},
    ),
    Case("ok-rules-file", ("--rules-file", f"{INPUTS}/rules-ok.yaml", "--check")),
    Case("ok-example-fire-truck", ("--rules-file", "examples/rules-fire-truck.yaml", "--check")),
    Case("ok-snowsignal-defaults", ("--check",)),
    Case(
        "ok-snowsignal-env",
        ("--check",),
        {"TARGET_INTERFACE": "eth2", "BDCAST_PORT": "5075", "SERVICENAME": "relays"},
    ),
    Case(
        "ok-cli-beats-env",
        ("-m", "7300", "--other-relays", "10.0.9.2", "10.0.9.3", "--check"),
        {"MESH_PORT": "7200", "LOGLEVEL": "debug"},
    ),
    Case(
        "ok-unpatched-lo",
        (
            *rules("pva-out from lo to mesh port 5076", "pva-in from mesh to lo port 5076"),
            "--check",
        ),
        fake_host=False,
    ),
    # -- bad configurations: exit 2, one line per problem on stderr
    Case("bad-rules-file-errors", ("--rules-file", f"{INPUTS}/rules-errors.yaml", "--check")),
    Case("bad-rules-file-not-yaml", ("--rules-file", f"{INPUTS}/rules-not-yaml.yaml", "--check")),
    Case("bad-rules-file-missing", ("--rules-file", f"{INPUTS}/no-such-file.yaml", "--check")),
    Case("bad-env-rules", ("--check",), {"RULES": f"{GPS}; gps2 from eth0 to eth2 port 70000"}),
    Case("bad-flag-syntax", (*rules("gps from eth0 too eth2 port 10110"), "--check")),
    Case("bad-mesh-port-relayed", (*rules("pva from eth0 to mesh port 7000-7200"), "--check")),
    Case("bad-mesh-port-is-broadcast-port", ("-b", "7124", "--check")),
    Case(
        "bad-mesh-port-from-env",
        (*rules("pva-in from mesh to eth0 port 5076"), "--check"),
        {"MESH_PORT": "5076"},
    ),
    Case(
        "bad-group-not-multicast",
        (*rules("video from eth0 to eth2 group 10.0.1.7 port 22001"), "--check"),
    ),
    Case(
        "bad-group-local-control",
        (*rules("mdns from eth0 to eth2 group 224.0.0.251 port 5353"), "--check"),
    ),
    Case("bad-back-to-ingress", (*rules("echo from eth0 to eth2,eth0 port 5000"), "--check")),
    Case("bad-mesh-to-mesh", (*rules("bounce from mesh to mesh port 5076"), "--check")),
    Case(
        "bad-unknown-interface", (*rules(GPS, "gps-typo from eth1 to eth2 port 10111"), "--check")
    ),
    Case("bad-unknown-snowsignal-interface", ("-t", "wlan0", "--check")),
    Case(
        "bad-mesh-secret-missing",
        (
            *rules("pva from eth0 to mesh port 5076"),
            "--mesh-secret-file",
            "/nonexistent/secret",
            "--check",
        ),
    ),
    Case("bad-log-level", ("-ll", "loud", "--check")),
)


@pytest.fixture
def run_check(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[[Case], Result]:
    """Run a case: in this process with the fake host, or as `python -m crosscast relay`."""
    monkeypatch.chdir(ROOT)  # rule files are named relative to the repository root

    def run(case: Case) -> Result:
        if case.fake_host:
            capsys.readouterr()
            status = service.main(
                case.args, environ=dict(case.env), host=FakeHost(names=FAKE_INTERFACES)
            )
            out, err = capsys.readouterr()
            return Result(status, out, err)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(PACKAGE_PARENT)}
        env.update(case.env)
        argv = [sys.executable, "-m", "crosscast", "relay", *case.args]
        proc = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


def render(case: Case, proc: Result) -> str:
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(case.env.items()))
    host = (
        f"# host interfaces: {', '.join(FAKE_INTERFACES)}"
        if case.fake_host
        else "# host interfaces: this machine's (python -m crosscast, unpatched)"
    )
    command = " ".join(filter(None, (env, "crosscast relay", shlex.join(case.args))))
    return (
        f"{host}\n$ {command}\n"
        f"exit status {proc.returncode}\n"
        f"--- stdout\n{proc.stdout}"
        f"--- stderr\n{proc.stderr}"
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_check_output_matches_the_golden_file(
    case: Case, run_check: Callable[[Case], Result]
) -> None:
    proc = run_check(case)
    got = render(case, proc)
    path = GOLDEN / f"{case.name}.out"
    if REGEN:
        path.write_text(got)
    assert path.exists(), f"no golden file {path}; run with CROSSCAST_REGEN_GOLDEN=1 and review"
    assert got == path.read_text()
    # The intent, independent of the golden file: good is 0, bad is 2.
    assert proc.returncode == (0 if case.name.startswith("ok-") else 2)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        pytest.param(
            rules("v from eth0 to eth2 group 10.0.1.7 port 22001", "w from eth0 to eth0 port 5000"),
            {},
            ["rule 'v': group 10.0.1.7 is not multicast", "rule 'w': forwards back to its own"],
            id="two-bad-flag-rules",
        ),
        pytest.param(
            rules("v from eth0 to eth2 group 10.0.1.7 port 22001"),
            {"RULES": "w from eth0 to eth0 port 5000"},
            ["rule 'v': group 10.0.1.7 is not multicast", "RULES #1: rule 'w': forwards back"],
            id="bad-flag-rule-and-bad-env-rule",
        ),
        pytest.param(
            (
                *rules("v from eth0 to eth2 group 10.0.1.7 port 22001"),
                "--rules-file",
                f"{INPUTS}/no-such-file.yaml",
            ),
            {},
            ["rule 'v': group 10.0.1.7 is not multicast", "cannot read rules file"],
            id="bad-flag-rule-and-missing-rules-file",
        ),
        pytest.param(
            rules(
                "a from eth0 to eth2 port 5000",
                "a from eth3 to eth2 port 5001",
                "z from eth7 to eth2 port 5002",
            ),
            {},
            ["rule 'a': duplicate name", "rule 'z': interface 'eth7' does not exist"],
            id="duplicate-name-and-unknown-interface",
        ),
    ],
)
def test_check_reports_every_problem_at_once(
    args: tuple[str, ...],
    env: dict[str, str],
    expected: list[str],
    run_check: Callable[[Case], Result],
) -> None:
    # "One line per problem": a user fixing a configuration should not discover its mistakes
    # one --check at a time.
    proc = run_check(Case("every-problem", (*args, "--check"), env))
    assert proc.returncode == 2
    missing = [text for text in expected if text not in proc.stderr]
    assert not missing, f"not reported: {missing}\nstderr was:\n{proc.stderr}"
