"""`crosscast demo` for real: it passes, says what it checked, and leaves no namespace behind,
also when it is interrupted or a relay fails to start."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crosscast import demo
from crosscast.net import netns

pytestmark = pytest.mark.root

CHECKS = (
    "no relay yet: a broadcast to 10.231.1.255:10110 stays on VLAN 1",
    "reaches VLAN 2 as 10.231.2.255 (source MAC: the router's)",
    "multicast to 233.54.12.234:22001 reaches a member on VLAN 2",
    "a broadcast to port 10111 (no rule) stays on VLAN 1",
    "a unicast to port 10110 is not relayed",
    "stays there (rules are one-way)",
    "no relay yet: a broadcast to 10.232.10.255:5076 stays on node 1",
    "on node 1 reaches node 2 (source MAC: node 2's relay)",
    "a broadcast to port 5077 stays on node 1",
    "cleanup: every namespace",
)


def demo_prefix(output: str) -> str:
    m = re.search(r"network namespaces (\S+)-\*", output)
    assert m, output
    return m[1]


def assert_nothing_left(prefix: str) -> None:
    assert netns.names(prefix) == []
    etc = Path("/etc/netns")
    assert not etc.is_dir() or not [p for p in etc.iterdir() if p.name.startswith(prefix)]


def test_demo_passes_every_check_and_cleans_up() -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "crosscast", "demo"],
        capture_output=True,
        text=True,
        timeout=90,
        env={"PYTHONIOENCODING": "utf-8", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for check in CHECKS:
        assert any(line.startswith("  ✓ ") and check in line for line in lines), check
    assert not any(line.startswith("  ✗ ") for line in lines)
    assert lines[-1] == f"all {len(CHECKS)} checks passed"
    assert len(lines) <= 20, "the output stays short"
    assert_nothing_left(demo_prefix(proc.stdout))
    print(f"demo took {elapsed:.1f} s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_demo_removes_everything(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "crosscast", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"PYTHONIOENCODING": "utf-8", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert proc.stdout is not None
    output = ""
    try:
        # The labs are built and the relays started once the first section is printed.
        for line in proc.stdout:
            output += line
            if line.startswith("router mode:"):
                break
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output += rest
    assert proc.returncode == 128 + sig, output
    assert f"interrupted ({sig.name})" in output
    assert "cleanup: every namespace" in output
    assert_nothing_left(demo_prefix(output))


def test_a_relay_that_does_not_start_fails_the_demo_and_still_cleans_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo, "ROUTER_RULES", ("gps from nosuch0 to br2 port 10110",))
    out = io.StringIO()
    assert demo.run(demo.argparse.Namespace(), out=out) == 1
    text = out.getvalue()
    assert "FAIL the demo could not run: the router relay did not start" in text
    assert "nosuch0" in text  # the relay's own complaint, from its log
    assert "ok cleanup: every namespace" in text
    assert_nothing_left(demo_prefix(text))


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the wheel built from this tree and its runtime dependencies
    (no test extra): what `pip install crosscast` gives a user. Built once per module."""
    root = Path(__file__).resolve().parents[1]
    tmp = tmp_path_factory.mktemp("plain-install")
    wheels, venv = tmp / "wheels", tmp / "venv"

    def run(*argv: str | Path) -> None:
        proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{' '.join(map(str, argv))}:\n{proc.stdout}{proc.stderr}"

    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", root, "-w", wheels)
    (wheel,) = wheels.glob("crosscast-*.whl")
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel)
    return venv


def test_demo_works_from_a_plain_install_of_the_wheel(plain_install: Path) -> None:
    python = plain_install / "bin" / "python"
    # The test-only packages are really absent, so the lab cannot be leaning on one of them.
    absent = subprocess.run(
        [python, "-c", "import importlib.util as u; print([m for m in ('dnslib', 'pytest', "
         "'scapy') if u.find_spec(m)])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert absent.stdout.strip() == "[]", absent.stdout
    proc = subprocess.run(
        [plain_install / "bin" / "crosscast", "demo"],
        capture_output=True,
        text=True,
        timeout=90,
        env={"PYTHONIOENCODING": "utf-8", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Traceback" not in output
    assert proc.stdout.splitlines()[-1] == f"all {len(CHECKS)} checks passed"
    assert_nothing_left(demo_prefix(proc.stdout))
