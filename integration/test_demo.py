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
