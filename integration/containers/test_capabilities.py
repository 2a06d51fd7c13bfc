"""The capability hand-over of the image, for real: the relay runs as uid 10001 with exactly
CAP_NET_RAW and CAP_NET_ADMIN when the container is granted them, and stops with one line and
exit status 2 when CAP_NET_RAW is not granted.

Two engines' ways of granting them, both tested:
- podman gives a non-root user its `--cap-add` capabilities itself (as ambient capabilities);
  the entry point then has nothing to do.
- Docker puts `cap_add` capabilities in the bounding set only; the entry point's private
  setpriv must raise them. podman does the same with capabilities it grants by default, so a
  containers.conf whose `default_capabilities` are Docker's defaults plus NET_ADMIN is a
  container started the way `docker run --cap-add NET_ADMIN` starts one.
"""

from __future__ import annotations

import pytest

from integration.containers.conftest import Images
from integration.containers.engine import Podman, poll

pytestmark = pytest.mark.root

CAP_NET_ADMIN = 12  # linux/capability.h
CAP_NET_RAW = 13  # linux/capability.h
BOTH = (1 << CAP_NET_RAW) | (1 << CAP_NET_ADMIN)
SUBNET = "10.203.5.0/24"

# moby's default capability set (oci/caps/defaults.go), which includes NET_RAW
DOCKER_DEFAULTS = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)  # fmt: skip
NO_RAW_SOCKET = (
    "crosscast relay: no permission to open a raw socket on eth0: needs root or CAP_NET_RAW"
)


def docker_like(pm: Podman, *added: str) -> Podman:
    caps = ", ".join(f'"{c}"' for c in (*DOCKER_DEFAULTS, *added))
    return pm.variant("docker-caps", f"default_capabilities = [{caps}]")


def process_status(pm: Podman, container: str, pid: str = "1") -> dict[str, str]:
    text = pm.exec(container, "cat", f"/proc/{pid}/status").stdout
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def start_relay(pm: Podman, images: Images, name: str, *options: str) -> str:
    pm.network(f"{name}-net", SUBNET)
    return pm.run(name, images.relay, "--network", f"{name}-net", *options)


def assert_relay_runs_unprivileged_with_both(pm: Podman, name: str) -> None:
    assert poll(lambda: "ready:" in pm.logs(name), timeout=20), pm.logs(name)
    status = process_status(pm, name)
    assert status["Uid"].split() == ["10001"] * 4
    assert status["Gid"].split() == ["10001"] * 4
    for field in ("CapEff", "CapPrm", "CapAmb"):
        assert int(status[field], 16) == BOTH, (field, status[field])
    assert status["NoNewPrivs"] == "0"


def test_relay_runs_as_uid_10001_with_both_capabilities_from_cap_add(
    pm: Podman, images: Images, prefix: str
) -> None:
    name = start_relay(pm, images, prefix, "--cap-add=NET_RAW,NET_ADMIN")
    assert_relay_runs_unprivileged_with_both(pm, name)


def test_entrypoint_raises_the_capabilities_docker_puts_in_the_bounding_set_only(
    pm: Podman, images: Images, prefix: str
) -> None:
    docker = docker_like(pm, "NET_ADMIN")
    name = start_relay(docker, images, prefix)
    assert_relay_runs_unprivileged_with_both(docker, name)
    # a process the entry point did not start has them in its bounding set, and nowhere else
    exec_status = process_status(docker, name, "self")
    assert int(exec_status["CapEff"], 16) == 0
    assert int(exec_status["CapBnd"], 16) & BOTH == BOTH


@pytest.mark.parametrize("engine_way", ["podman", "docker"])
def test_relay_without_net_raw_stops_with_one_line_and_status_2(
    pm: Podman, images: Images, prefix: str, engine_way: str
) -> None:
    if engine_way == "podman":
        name = start_relay(pm, images, prefix, "--cap-add=NET_ADMIN", "--cap-drop=NET_RAW")
        engine = pm
    else:  # docker run --cap-add NET_ADMIN --cap-drop NET_RAW
        engine = docker_like(pm, "NET_ADMIN")
        name = start_relay(engine, images, prefix, "--cap-drop=NET_RAW")
    assert engine.wait_exit(name) == 2
    assert engine.logs(name).strip() == NO_RAW_SOCKET


def test_relay_as_root_fallback_runs(pm: Podman, images: Images, prefix: str) -> None:
    """compose's documented fallback (`user: root`), e.g. under no-new-privileges."""
    docker = docker_like(pm, "NET_ADMIN")
    name = start_relay(docker, images, prefix, "--user=root", "--security-opt=no-new-privileges")
    assert poll(lambda: "ready:" in docker.logs(name), timeout=20), docker.logs(name)
    assert process_status(docker, name)["Uid"].split()[0] == "0"
