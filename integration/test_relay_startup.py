"""Start-up errors end the relay with one line on stderr and exit status 2; SIGTERM and SIGINT
end a running relay cleanly with status 0."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from crosscast import lab
from integration.helpers.relays import PYTHON, READY, Procs, run_in

pytestmark = pytest.mark.root

UNPRIVILEGED = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
EXIT_TIMEOUT = 10.0


@pytest.fixture
def host(prefix: str) -> lab.Host:
    """One namespace with eth0 (10.201.1.11/24) on a one-VLAN lab."""
    vlans = lab.RoutedVlans.build(prefix, n_vlans=1, hosts_per_vlan=1, relay_hosts=False)
    return vlans.hosts[1][0]


def _relay(host: lab.Host, *args: str, wrap: list[str] | None = None) -> list[str]:
    return [*(wrap or []), PYTHON, "-m", "crosscast", "relay", *args]


def _assert_one_line_and_status_2(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == 2, f"status {result.returncode}; stderr:\n{result.stderr}"
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{result.stderr}"
    assert lines[0].strip()
    return lines[0]


def test_missing_interface_is_one_line_and_status_2(host: lab.Host) -> None:
    result = run_in(host.ns, _relay(host, "-t", "nosuch0"), EXIT_TIMEOUT)
    line = _assert_one_line_and_status_2(result)
    assert "nosuch0" in line


def test_mesh_port_equal_to_relayed_port_is_one_line_and_status_2(host: lab.Host) -> None:
    result = run_in(host.ns, _relay(host, "-t", "eth0", "-b", "7124", "-m", "7124"), EXIT_TIMEOUT)
    line = _assert_one_line_and_status_2(result)
    assert "7124" in line


def test_unreadable_secret_file_is_one_line_and_status_2(host: lab.Host) -> None:
    argv = _relay(host, "-t", "eth0", "--mesh-secret-file", "/nonexistent")
    line = _assert_one_line_and_status_2(run_in(host.ns, argv, EXIT_TIMEOUT))
    assert "/nonexistent" in line


def test_no_permission_for_raw_sockets_is_one_line_and_status_2(host: lab.Host) -> None:
    # setuid away from root drops every capability, CAP_NET_RAW included
    argv = _relay(host, "-t", "eth0", wrap=UNPRIVILEGED)
    line = _assert_one_line_and_status_2(run_in(host.ns, argv, EXIT_TIMEOUT))
    assert re.search(r"raw|permission|CAP_NET_RAW", line, re.IGNORECASE), line


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_ends_a_running_relay_with_status_0(
    host: lab.Host, procs: Procs, sig: signal.Signals
) -> None:
    relay = procs.crosscast(host)  # no peers, no SERVICENAME: it talks to itself
    procs.wait_ready(relay)
    relay.proc.send_signal(sig)
    try:
        status = relay.proc.wait(EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {EXIT_TIMEOUT} s after {sig.name}")
    assert status == 0, relay.text()[-2000:]
    assert READY in relay.text()
