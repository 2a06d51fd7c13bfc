"""Fixtures for the relay's integration tests.

Every test gets its own throw-away lab (namespaces under a fresh random prefix, deleted after the
test even when it fails), and a `procs` registry for what it starts; when a test fails, the logs
of its relays and helpers are printed with the failure.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from crosscast import lab
from integration.helpers.relays import Procs

# Settings the relay (and SnowSignal, and p4p) read from the environment: a test sets them
# explicitly or not at all, never inherits them from whoever runs pytest.
_ENV_SETTINGS = (
    "TARGET_INTERFACE",
    "BDCAST_PORT",
    "MESH_PORT",
    "LOGLEVEL",
    "SERVICENAME",
    "DISCOVERY_INTERVAL",
    "MESH_FORMAT",
    "MESH_SECRET_FILE",
    "RULES",
    "RULES_FILE",
    "METRICS_PORT",
    "OTHER_RELAYS",
    "EPICS_PVA_ADDR_LIST",
    "EPICS_PVA_AUTO_ADDR_LIST",
    "EPICS_PVA_BROADCAST_PORT",
    "EPICS_PVA_SERVER_PORT",
)

VLAN_BASE = 201  # VLAN n is 10.201.n.0/24
OVERLAY_BASE = 202  # overlay 10.202.10.0/24, underlay 10.202.9.0/24


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_FAILED] = report.failed


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV_SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A namespace prefix of this test alone; everything under it is deleted afterwards."""
    p = lab.unique_prefix("cci")
    try:
        yield p
    finally:
        lab.teardown(p)


@pytest.fixture
def procs(request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> Iterator[Procs]:
    """Relays and helpers started by the test (stopped with the lab); logs shown on failure."""
    registry = Procs(tmp_path)
    yield registry
    if request.node.stash.get(_FAILED, False):
        print(registry.report())


@pytest.fixture
def vlans(prefix: str) -> lab.RoutedVlans:
    """Two routed VLANs (10.201.1.0/24, 10.201.2.0/24), hosts .11 .12 and a relay host .21."""
    return lab.RoutedVlans.build(prefix, n_vlans=2, hosts_per_vlan=2, base=VLAN_BASE)


@pytest.fixture
def overlay(prefix: str) -> lab.SwarmOverlay:
    """Two Swarm-like nodes over VXLAN: relay 10.202.10.{11,21}, app 10.202.10.{12,22}."""
    return lab.SwarmOverlay.build(prefix, nodes=2, apps_per_node=1, base=OVERLAY_BASE)
