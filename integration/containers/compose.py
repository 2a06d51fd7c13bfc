"""compose.yaml as podman commands: the tests bring the router sidecar up from the same file a
Docker user runs, translated key by key, so a change to the file is a change to the test.

Not podman-compose: Debian 12's (1.0.3) ignores network `priority`, which decides which
interface is eth0 and eth2 in the router (the names the RULES use), and creates non-internal
networks, whose containers get a default route through the host, which then routes between the
VLANs (Docker's isolation chains forbid that). A key this translation does not know fails the
test, so nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from integration.containers.engine import Podman

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"

# Keys that mean nothing to one podman run: the image is built by the session (`build`), the
# tests start services in file order (`depends_on`, whose `restart` is about recreating the
# router later), containers live for one test (`restart`), and `sleep` needs no init (`init`);
# `profiles` only selects which services Compose starts.
IGNORED = {"build", "depends_on", "restart", "init", "profiles"}


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    options: tuple[str, ...]
    command: tuple[str, ...]


@dataclass(frozen=True)
class Project:
    networks: dict[str, str | None]  # podman network name -> subnet (None: podman picks)
    services: dict[str, Service]  # compose service name -> what to run


def load(path: Path = COMPOSE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def translate(compose: Mapping[str, Any], prefix: str, images: Mapping[str, str]) -> Project:
    """Podman networks and `podman run` options for every service of `compose`, with names
    under `prefix` and images replaced through `images` (a registry image -> a local one)."""
    networks: dict[str, str | None] = {}
    for name, spec in (compose.get("networks") or {}).items():
        config = ((spec or {}).get("ipam") or {}).get("config") or [{}]
        networks[f"{prefix}-{name}"] = config[0].get("subnet")
    services: dict[str, Service] = {}
    for name, spec in compose["services"].items():
        options: list[str] = []
        for key, value in spec.items():
            if key in IGNORED or key in ("image", "command"):
                continue
            if key == "networks":
                attached = value if isinstance(value, dict) else dict.fromkeys(value)
                # Docker connects by descending priority: the first is eth0, and so on.
                order = sorted(attached, key=lambda n: -int((attached[n] or {}).get("priority", 0)))
                # podman does not name interfaces in the order of its --network options (they
                # pass through a map), so each one is named as Docker would name it.
                for index, net in enumerate(order):
                    settings = [f"interface_name=eth{index}"]
                    if address := (attached[net] or {}).get("ipv4_address"):
                        settings.insert(0, f"ip={address}")
                    options += ["--network", f"{prefix}-{net}:{','.join(settings)}"]
            elif key == "network_mode":
                kind, _, target = str(value).partition(":")
                assert kind in ("service", "container"), value
                options += ["--network", f"container:{prefix}-{target}"]
            elif key == "cap_add":
                options += [f"--cap-add={cap}" for cap in value]
            elif key == "sysctls":
                options += [f"--sysctl={k}={v}" for k, v in value.items()]
            elif key == "environment":
                items = (
                    value.items() if isinstance(value, dict) else (e.split("=", 1) for e in value)
                )
                options += [f"--env={k}={v}" for k, v in items]
            elif key == "user":
                options += ["--user", str(value)]
            else:
                raise AssertionError(f"compose key {name}.{key} has no podman translation here")
        image = images.get(spec["image"], spec["image"])
        services[name] = Service(name, image, tuple(options), tuple(spec.get("command") or ()))
    return Project(networks, services)


def up(podman: Podman, project: Project, prefix: str, *names: str) -> dict[str, str]:
    """Create the networks and start `names` in that order; returns service -> container."""
    for network, subnet in project.networks.items():
        podman.network(network, subnet)
    started: dict[str, str] = {}
    for name in names:
        service = project.services[name]
        container = f"{prefix}-{name}"
        podman.run(container, service.image, *service.options, command=service.command)
        started[name] = container
    return started
