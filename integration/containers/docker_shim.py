"""`docker` for the rendered topology scripts, played by podman with the tests' private config.

The scripts (`crosscast topology render`: docker-networks.sh, docker-containers.sh) stay what a
Docker user runs; this shim is first on their PATH and translates the few commands they use.
Where podman 4.3 on this machine cannot do what Docker does, it does the nearest thing and says
so here (the test's docstring repeats it):

- `--driver=ipvlan` (the uplink): netavark 1.4 has no ipvlan driver and this kernel no ipvlan
  device, so the uplink is a bridge network with the same subnet and gateway; the parent
  interface (`--opt=parent=`) and `ipvlan_mode` are dropped.
- `--opt=com.docker.network.bridge.name=br0`: podman 4.3 has no option to name the bridge, so
  the name is written into the network's definition (netavark's `network_interface`), which
  podman reads back on every command; `crosscast lease --interface br0` then finds it.
- `enable_ip_masquerade=false`: every network is `--internal` anyway (no NAT, and no default
  route through the host, so only the router container routes between the VLANs).
- `alpine` without a command: there is no registry, so the local base image; and `sleep
  infinity` as its command, because a shell with no terminal exits at once (the rendered
  `docker create ... alpine` has the same problem under Docker).

Anything else the scripts might start using fails loudly (exit 64), so nothing is translated
silently. Every network and container it creates carries the tests' owner label.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

OWNER_LABEL = "crosscast.test.pid"
DROPPED_OPTS = ("parent=", "ipvlan_mode=", "com.docker.network.bridge.enable_ip_masquerade=")
BRIDGE_NAME = "com.docker.network.bridge.name="


def podman(*args: str) -> None:
    os.execvp("podman", ["podman", *args])  # noqa: S606 -- the shim becomes podman


def refuse(args: list[str]) -> None:
    print(f"docker shim: no podman translation for: docker {' '.join(args)}", file=sys.stderr)
    raise SystemExit(64)


def network_create(args: list[str], owner: str, config_dir: Path) -> None:
    out = ["network", "create", "--internal", f"--label={OWNER_LABEL}={owner}"]
    bridge_name = None
    for arg in args[:-1]:
        key, _, value = arg.partition("=")
        if key == "--driver":
            out.append("--driver=bridge")  # ipvlan too, see the module docstring
        elif key in ("--subnet", "--gateway", "--ip-range"):
            out.append(arg)
        elif key == "--opt" and value.startswith(BRIDGE_NAME):
            bridge_name = value[len(BRIDGE_NAME) :]
        elif key == "--opt" and value.startswith(DROPPED_OPTS):
            continue
        else:
            refuse(["network", "create", *args])
    name = args[-1]
    pid = os.fork()
    if pid == 0:
        podman(*out, name)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(os.waitstatus_to_exitcode(status))
    if bridge_name is not None:
        path = config_dir / f"{name}.json"
        definition = json.loads(path.read_text())
        definition["network_interface"] = bridge_name
        path.write_text(json.dumps(definition, indent=5))


def create(args: list[str], owner: str, base_image: str) -> None:
    options = [a for a in args if a.startswith("--")]
    rest = args[len(options) :]
    for option in options:
        if option.partition("=")[0] not in (
            "--name", "--hostname", "--cap-add", "--sysctl", "--network", "--ip",
            "--mac-address",
        ):  # fmt: skip
            refuse(["create", *args])
    image, command = rest[0], rest[1:]
    if image == "alpine":
        image = base_image
        command = command or ["sleep", "infinity"]
    podman("create", f"--label={OWNER_LABEL}={owner}", *options, image, *command)


def main(argv: list[str]) -> None:
    owner = os.environ["CROSSCAST_SHIM_OWNER"]
    base_image = os.environ["CROSSCAST_SHIM_BASE_IMAGE"]
    config_dir = Path(os.environ["CROSSCAST_SHIM_NETWORKS"])
    match argv:
        case ["network", "inspect", name]:
            podman("network", "inspect", name)
        case ["container", "inspect", name]:
            podman("container", "inspect", name)
        case ["network", "create", *args]:
            network_create(args, owner, config_dir)
        case ["network", "connect", *args]:
            podman("network", "connect", *args)
        case ["create", *args]:
            create(args, owner, base_image)
        case _:
            refuse(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
