"""The pure parts of the container tests' helpers (integration/containers): reading the apt
mirror, translating compose.yaml into podman options, and the docker shim's refusals. The
container tests themselves need root and podman; these need neither."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from integration.containers import compose
from integration.containers.engine import EngineError, apt_mirror

SHIM = Path(__file__).resolve().parents[1] / "integration" / "containers" / "docker_shim.py"


def test_apt_mirror_reads_deb822_sources(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb\n# http://snapshot.example/archive\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    assert apt_mirror("bookworm", [sources]) == "http://mirror.example/debian"


def test_apt_mirror_reads_one_line_sources_and_skips_other_suites(tmp_path: Path) -> None:
    other = tmp_path / "cloud.list"
    other.write_text("deb https://packages.example/apt cloud-sdk-bookworm main\n")
    plain = tmp_path / "sources.list"
    plain.write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n"
    )
    assert apt_mirror("bookworm", [other, plain]) == "http://m.example/debian"


def test_apt_mirror_without_a_source_for_the_release_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EngineError):
        apt_mirror("bookworm", [tmp_path / "missing.list"])


def test_compose_translation_names_router_interfaces_by_priority() -> None:
    project = compose.translate(compose.load(), "p", {"alpine:3.20": "base"})
    router = project.services["router"]
    networks = [o for o in router.options if o.startswith("p-")]
    assert networks == [
        "p-vlan1:ip=10.0.1.3,interface_name=eth0",
        "p-uplink:interface_name=eth1",
        "p-vlan2:ip=10.0.2.3,interface_name=eth2",
    ]
    assert router.image == "base"
    assert project.networks == {
        "p-vlan1": "10.0.1.0/24",
        "p-vlan2": "10.0.2.0/24",
        "p-uplink": None,
    }


def test_compose_translation_puts_the_relay_in_the_router_namespace() -> None:
    relay = compose.translate(compose.load(), "p", {}).services["relay"]
    assert relay.options[:2] == ("--network", "container:p-router")
    assert {"--cap-add=NET_RAW", "--cap-add=NET_ADMIN"} <= set(relay.options)
    assert any(o.startswith("--env=RULES=gps from eth0 to eth2") for o in relay.options)


def test_compose_translation_refuses_a_key_it_does_not_know() -> None:
    data = {"services": {"x": {"image": "i", "privileged": True}}}
    with pytest.raises(AssertionError, match=r"x\.privileged"):
        compose.translate(data, "p", {})


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "alpine"],
        ["network", "create", "--attachable", "n"],
        ["create", "--privileged", "alpine"],
    ],
)
def test_docker_shim_refuses_what_it_cannot_translate(argv: list[str]) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "CROSSCAST_SHIM_OWNER": "0",
        "CROSSCAST_SHIM_BASE_IMAGE": "base",
        "CROSSCAST_SHIM_NETWORKS": "/nonexistent",
    }
    proc = subprocess.run(
        [sys.executable, str(SHIM), *argv], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 64
    assert "no podman translation" in proc.stderr
