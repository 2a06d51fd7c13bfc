"""Fixtures for the tests with real containers (podman, root).

One podman per session with its private configuration; the base image is built only when it is
missing (and kept), the crosscast image is built once per session from docker/Dockerfile and
removed at the end. Each test gets `pm`, the same podman, whose containers and networks are
removed when the test ends, failed or not; a failed test prints its containers' logs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from integration.conftest import _FAILED
from integration.containers import engine
from integration.containers.engine import Podman

_TIMINGS = pytest.StashKey[dict[str, str]]()


@dataclass(frozen=True)
class Images:
    base: str
    relay: str


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TIMINGS] = {}


HERE = Path(__file__).parent
# pytest-timeout counts fixture set-up in the test's time: the first container test sets up the
# session's images, which on a fresh machine includes building the base image (45-100 s on 2
# busy cores) besides the crosscast image; the suite's 120 s would cut it off.
SETUP_TIMEOUT = 600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.timeout(SETUP_TIMEOUT))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    timings = terminalreporter.config.stash.get(_TIMINGS, {})
    if timings:
        terminalreporter.section("container images")
        for key, value in timings.items():
            terminalreporter.write_line(f"{key}: {value}")


@pytest.fixture(scope="session")
def podman(request: pytest.FixtureRequest) -> Iterator[Podman]:
    why = None
    if os.geteuid() != 0:
        why = "needs root"
    elif missing := engine.missing_tools():
        why = f"needs {', '.join(missing)} (./scripts/install installs them)"
    if why is not None:
        if request.config.getoption("--require-root"):
            pytest.fail(f"container tests {why}, and --require-root forbids skipping")
        pytest.skip(why)
    p = Podman(engine.private_env())
    host = engine.HostState.now()
    p.sweep()  # what killed earlier runs left behind
    try:
        yield p
    finally:
        try:
            p.cleanup()
        finally:
            host.restore(p)


@pytest.fixture(scope="session")
def images(podman: Podman, request: pytest.FixtureRequest) -> Images:
    timings = request.config.stash[_TIMINGS]
    base, base_seconds = engine.ensure_base_image(podman)
    timings["base image"] = (
        f"{base} built in {base_seconds:.1f} s" if base_seconds else f"{base} (cached)"
    )
    tag = f"localhost/crosscast:test-{podman.owner}"
    build_seconds = engine.build_image(podman, base, tag)
    size = engine.image_size(podman, tag) / 1e6
    timings["crosscast image"] = f"{tag} built in {build_seconds:.1f} s, {size:.0f} MB"
    return Images(base=base, relay=tag)


@pytest.fixture
def pm(podman: Podman, request: pytest.FixtureRequest) -> Iterator[Podman]:
    """The session's podman; what the test creates is removed when it ends."""
    mark = len(podman.created)
    started = time.monotonic()
    try:
        yield podman
    finally:
        mine = podman.created[mark:]
        if request.node.stash.get(_FAILED, False):
            for kind, name in mine:
                if kind == "container":
                    print(f"--- logs of {name}:\n{podman.logs(name)}")
        for kind, name in reversed(mine):
            podman.remove(kind, name)
        request.node.user_properties.append(("containers_seconds", time.monotonic() - started))


@pytest.fixture
def prefix() -> str:
    """Container and network names of this test alone (overrides the namespace prefix)."""
    return f"cc{os.getpid() % 100000}{time.monotonic_ns() % 100000:05d}"
