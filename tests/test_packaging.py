"""The container packaging: docker/Dockerfile, docker/entrypoint.sh, .dockerignore, compose.yaml
and deploy/swarm-stack.yaml say what an operator relies on, and they agree with the package.

No Docker engine is needed: the files are parsed, the entry point script runs against fake
/proc/self/status files, the HEALTHCHECK command runs against a loopback HTTP server, and the
compose files go through `docker compose config` only when a compose client is installed.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import crosscast

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
ENTRYPOINT_SH = ROOT / "docker" / "entrypoint.sh"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"
STACK = ROOT / "deploy" / "swarm-stack.yaml"

CAP_NET_ADMIN = 12  # linux/capability.h
CAP_NET_RAW = 13  # linux/capability.h


# --- Dockerfile ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def json_args(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword} is not in exec (JSON) form"
        return [str(v) for v in value]


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """Instructions grouped by stage: comments dropped, continuation lines joined."""
    stages: list[list[Instruction]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continuation is dropped by Docker too
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        current = ""
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(stages: list[list[Instruction]]) -> list[Instruction]:
    return stages[-1]


def one(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {len(found)}"
    return found[0]


def global_args(text: str) -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("FROM"):
            break
        m = re.match(r"ARG (\w+)=(\S+)", line)
        if m:
            out[m[1]] = m[2]
    return out


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_image_is_built_in_two_stages_on_python_311_slim(stages: list[list[Instruction]]) -> None:
    assert len(stages) >= 2
    args = global_args(DOCKERFILE.read_text())
    assert args["PYTHON_VERSION"] == "3.11"
    # Docker users get the official image; the container tests pass a local Debian base.
    assert args["BASE_IMAGE"] == "python:${PYTHON_VERSION}-slim"
    for stage in stages:
        assert stage[0].args.split()[0] == "${BASE_IMAGE}"


def test_dockerfile_needs_no_buildkit_only_feature() -> None:
    """Docker's classic builder (DOCKER_BUILDKIT=0) and older buildah have none of these
    (Debian 12's buildah 1.28 has COPY --chmod and RUN --mount=type=bind); `# syntax` is
    only a hint."""
    instructions = [i for stage in parse_dockerfile(DOCKERFILE.read_text()) for i in stage]
    for i in instructions:
        assert not (i.keyword == "RUN" and i.args.startswith("--mount")), i.args
        assert not (i.keyword == "RUN" and "--network=" in i.args.split()[0]), i.args
        if i.keyword in ("COPY", "ADD"):
            flags = [w for w in i.args.split() if w.startswith("--")]
            assert all(f.startswith("--from=") for f in flags), i.args
        assert "<<" not in i.args, f"heredoc in {i.keyword}"


def test_build_stage_makes_wheels_of_the_checkout(stages: list[list[Instruction]]) -> None:
    runs = " ".join(i.args for i in stages[0] if i.keyword == "RUN")
    assert "pip wheel" in runs
    assert "--wheel-dir /wheels . " in runs


def test_build_stage_installs_crosscast_offline_into_the_venv(
    stages: list[list[Instruction]],
) -> None:
    runs = " ".join(i.args for i in stages[0] if i.keyword == "RUN")
    assert "--find-links /wheels crosscast" in runs
    assert "--no-index" in runs
    assert "venv --without-pip /opt/crosscast" in runs


def test_final_stage_copies_only_the_venv_from_the_build_stage(final: list[Instruction]) -> None:
    copies = [i.args for i in final if i.keyword == "COPY" and "--from" in i.args]
    assert copies == ["--from=build /opt/crosscast /opt/crosscast"]


def test_final_stage_installs_no_compiler(final: list[Instruction]) -> None:
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    for compiler in ("gcc", "build-essential", "clang", "g++", "BUILD_PACKAGES"):
        assert compiler not in runs


def test_image_runs_crosscast_relay(final: list[Instruction]) -> None:
    assert one(final, "ENTRYPOINT").json_args() == ["crosscast"]
    assert one(final, "CMD").json_args() == ["relay"]


def test_image_runs_as_the_unprivileged_user(final: list[Instruction]) -> None:
    user = one(final, "USER").args.split(":")[0]
    assert user not in ("root", "0")
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    assert f"--uid {user}" in runs


def test_only_setpriv_gets_file_capabilities_and_only_permitted(final: list[Instruction]) -> None:
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    setcaps = re.findall(r"setcap (\S+) (\S+)", runs)
    assert setcaps == [("cap_net_raw,cap_net_admin+p", "/usr/local/libexec/crosscast/setpriv")]
    assert "apt-get purge -y --auto-remove libcap2-bin" in runs


def test_entrypoint_script_is_the_crosscast_on_path(final: list[Instruction]) -> None:
    copies = [i.args for i in final if i.keyword == "COPY"]
    assert "docker/entrypoint.sh /usr/local/bin/crosscast" in copies
    # executable whatever mode the checkout gave the file (COPY --chmod needs BuildKit)
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    assert "chmod 0755 /usr/local/bin/crosscast" in runs


def test_healthcheck_asks_healthz_on_the_metrics_port(final: list[Instruction]) -> None:
    env = one(final, "ENV").args
    assert re.search(r"\bMETRICS_PORT=9124\b", env)
    check = one(final, "HEALTHCHECK").args
    assert "CMD" in check
    assert "/healthz" in check
    assert "METRICS_PORT" in check


def test_labels_carry_the_package_version(final: list[Instruction]) -> None:
    labels = " ".join(i.args for i in final if i.keyword == "LABEL")
    for key in (
        "title",
        "description",
        "version",
        "revision",
        "created",
        "source",
        "url",
        "documentation",
        "authors",
        "vendor",
        "licenses",
        "ref.name",
        "base.name",
    ):
        assert f"org.opencontainers.image.{key}=" in labels
    assert 'org.opencontainers.image.base.name="${BASE_IMAGE}"' in labels
    version = next(i.args for i in final if i.keyword == "ARG" and i.args.startswith("VERSION="))
    assert version == f"VERSION={crosscast.__version__}"


def test_image_command_line_runs_from_the_venv(final: list[Instruction]) -> None:
    """ENTRYPOINT + CMD, run as `python -m crosscast ...`, is a working relay command line."""
    argv = one(final, "ENTRYPOINT").json_args() + one(final, "CMD").json_args()
    assert argv[0] == "crosscast"
    proc = subprocess.run(
        [sys.executable, "-m", *argv, "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "--target-interface" in proc.stdout
    assert "--metrics-port" in proc.stdout


# --- the HEALTHCHECK command, against a loopback server ----------------------------------------


def healthcheck_argv(final: list[Instruction]) -> list[str]:
    args = one(final, "HEALTHCHECK").args
    argv = json.loads(args[args.index("CMD") + len("CMD") :].strip())
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


@pytest.fixture
def healthz_server() -> Iterator[tuple[int, list[int]]]:
    """A loopback HTTP server whose /healthz answers with the status at the end of the list."""
    statuses = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = statuses[-1] if self.path == "/healthz" else 404
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"ok\n" if code == 200 else b"not ok\n")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], statuses
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run_healthcheck(final: list[Instruction], port: int) -> int:
    env = {"METRICS_PORT": str(port), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(healthcheck_argv(final), env=env, capture_output=True, timeout=30)
    return proc.returncode


def test_healthcheck_passes_when_healthz_answers_200(
    final: list[Instruction], healthz_server: tuple[int, list[int]]
) -> None:
    port, _ = healthz_server
    assert run_healthcheck(final, port) == 0


def test_healthcheck_fails_when_healthz_answers_503(
    final: list[Instruction], healthz_server: tuple[int, list[int]]
) -> None:
    port, statuses = healthz_server
    statuses.append(503)
    assert run_healthcheck(final, port) != 0


def test_healthcheck_says_why_it_failed(
    final: list[Instruction], healthz_server: tuple[int, list[int]]
) -> None:
    port, statuses = healthz_server
    statuses.append(503)
    env = {"METRICS_PORT": str(port), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(healthcheck_argv(final), env=env, capture_output=True, timeout=30)
    assert proc.stderr.decode().strip() == "not ok"  # the body of /healthz, not a traceback


def test_healthcheck_fails_when_nothing_listens(final: list[Instruction]) -> None:
    assert run_healthcheck(final, 1) != 0  # tcpmux: nothing listens on loopback port 1


# --- docker/entrypoint.sh ------------------------------------------------------------------------


def status_text(
    *, euid: int, caps: tuple[int, ...], no_new_privs: int = 0, ambient: tuple[int, ...] = ()
) -> str:
    bounding = sum(1 << c for c in caps)
    amb = sum(1 << c for c in ambient)
    return (
        f"Name:\tsh\nUid:\t{euid}\t{euid}\t{euid}\t{euid}\n"
        f"CapInh:\t{amb:016x}\nCapPrm:\t{amb:016x}\nCapEff:\t{amb:016x}\n"
        f"CapBnd:\t{bounding:016x}\nCapAmb:\t{amb:016x}\nNoNewPrivs:\t{no_new_privs}\n"
    )


def run_entrypoint(tmp_path: Path, status: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the script with fake setpriv and crosscast that print how they were called."""
    (tmp_path / "status").write_text(status)
    for name in ("setpriv", "crosscast"):
        fake = tmp_path / name
        fake.write_text(f'#!/bin/sh\nprintf "{name}"\nprintf " [%s]" "$@"\necho\n')
        fake.chmod(0o755)
    env = {
        "PATH": "/usr/bin:/bin",
        "CROSSCAST_ENTRYPOINT_STATUS": str(tmp_path / "status"),
        "CROSSCAST_ENTRYPOINT_SETPRIV": str(tmp_path / "setpriv"),
        "CROSSCAST_ENTRYPOINT_REAL": str(tmp_path / "crosscast"),
    }
    return subprocess.run(
        ["sh", str(ENTRYPOINT_SH), *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_entrypoint_is_valid_sh() -> None:
    subprocess.run(["sh", "-n", str(ENTRYPOINT_SH)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_entrypoint_passes_shellcheck() -> None:
    proc = subprocess.run(["shellcheck", str(ENTRYPOINT_SH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_entrypoint_raises_both_capabilities_as_ambient(tmp_path: Path) -> None:
    status = status_text(euid=10001, caps=(CAP_NET_RAW, CAP_NET_ADMIN, 0, 1))
    proc = run_entrypoint(tmp_path, status, "relay")
    assert proc.stdout.strip() == (
        f"setpriv [--inh-caps] [+net_raw,+net_admin] [--ambient-caps] [+net_raw,+net_admin] "
        f"[--] [{tmp_path / 'crosscast'}] [relay]"
    )


def test_entrypoint_raises_only_what_the_bounding_set_holds(tmp_path: Path) -> None:
    # Docker's default set has NET_RAW but not NET_ADMIN; asking for more would fail the exec.
    proc = run_entrypoint(tmp_path, status_text(euid=10001, caps=(CAP_NET_RAW,)), "relay")
    assert "[--inh-caps] [+net_raw] [--ambient-caps] [+net_raw]" in proc.stdout


def test_entrypoint_leaves_capabilities_the_engine_made_ambient_alone(tmp_path: Path) -> None:
    # podman gives a non-root user its --cap-add capabilities as ambient ones already
    both = (CAP_NET_RAW, CAP_NET_ADMIN)
    proc = run_entrypoint(tmp_path, status_text(euid=10001, caps=both, ambient=both), "relay")
    assert proc.stdout.strip() == "crosscast [relay]"
    assert proc.stderr == ""


def test_entrypoint_with_ambient_capabilities_ignores_no_new_privileges(tmp_path: Path) -> None:
    both = (CAP_NET_RAW, CAP_NET_ADMIN)
    status = status_text(euid=10001, caps=both, ambient=both, no_new_privs=1)
    proc = run_entrypoint(tmp_path, status, "relay")
    assert proc.stdout.strip() == "crosscast [relay]"
    assert proc.stderr == ""  # nothing is missing, so there is nothing to warn about


def test_entrypoint_raises_what_is_not_ambient_yet(tmp_path: Path) -> None:
    status = status_text(euid=10001, caps=(CAP_NET_RAW, CAP_NET_ADMIN), ambient=(CAP_NET_RAW,))
    proc = run_entrypoint(tmp_path, status, "relay")
    assert "[--ambient-caps] [+net_raw,+net_admin]" in proc.stdout


def test_entrypoint_without_capabilities_runs_crosscast_as_it_is(tmp_path: Path) -> None:
    proc = run_entrypoint(tmp_path, status_text(euid=10001, caps=()), "relay")
    assert proc.stdout.strip() == "crosscast [relay]"


def test_entrypoint_as_root_runs_crosscast_as_it_is(tmp_path: Path) -> None:
    status = status_text(euid=0, caps=(CAP_NET_RAW, CAP_NET_ADMIN))
    proc = run_entrypoint(tmp_path, status, "relay", "--check")
    assert proc.stdout.strip() == "crosscast [relay] [--check]"


def test_entrypoint_under_no_new_privileges_says_so_for_the_relay(tmp_path: Path) -> None:
    status = status_text(euid=10001, caps=(CAP_NET_RAW, CAP_NET_ADMIN), no_new_privs=1)
    proc = run_entrypoint(tmp_path, status, "relay")
    assert proc.stdout.strip() == "crosscast [relay]"
    assert "no-new-privileges" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_entrypoint_under_no_new_privileges_is_quiet_for_status(tmp_path: Path) -> None:
    status = status_text(euid=10001, caps=(CAP_NET_RAW,), no_new_privs=1)
    proc = run_entrypoint(tmp_path, status, "status")
    assert proc.stdout.strip() == "crosscast [status]"
    assert proc.stderr == ""


def test_entrypoint_passes_arguments_through_unchanged(tmp_path: Path) -> None:
    status = status_text(euid=10001, caps=(CAP_NET_RAW,))
    proc = run_entrypoint(tmp_path, status, "relay", "--rule", "a from eth0 to eth2 port 1", "")
    assert proc.stdout.strip().endswith("[relay] [--rule] [a from eth0 to eth2 port 1] []")


# --- .dockerignore and the build context ---------------------------------------------------------


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        rx = re.escape(body).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        rx = rx.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(rx, c) for c in candidates):
            excluded = not negate
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def copied_sources(stages: list[list[Instruction]]) -> list[str]:
    """The context paths that COPY instructions (not COPY --from) take."""
    out: list[str] = []
    for stage in stages:
        for i in stage:
            if i.keyword == "COPY" and "--from" not in i.args:
                words = [w for w in i.args.split() if not w.startswith("--")]
                out.extend(w.rstrip("/") for w in words[:-1])
    return out


def test_build_context_holds_everything_the_dockerfile_copies(
    stages: list[list[Instruction]],
) -> None:
    patterns = dockerignore_patterns()
    sources = copied_sources(stages)
    assert set(sources) >= {"pyproject.toml", "README.md", "src", "docker/entrypoint.sh"}
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not dockerignore_excludes(patterns, source), source
    assert not dockerignore_excludes(patterns, "src/crosscast/cli.py")


@pytest.mark.parametrize(
    "path",
    [".venv", ".git", "tests/test_rules.py", "integration", "src/crosscast/__pycache__/x.pyc"],
)
def test_build_context_leaves_out_what_the_image_does_not_need(path: str) -> None:
    assert dockerignore_excludes(dockerignore_patterns(), path)


@pytest.mark.slow
def test_wheel_builds_from_the_build_context(
    stages: list[list[Instruction]], tmp_path: Path
) -> None:
    """What the build stage does, on a copy of exactly what it copies from the context."""
    context = tmp_path / "context"
    for source in copied_sources(stages[:1]):
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (context / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, context / source)
    wheels = tmp_path / "wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(context), "-w", str(wheels)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0 and "hatchling" in proc.stderr and "No matching" in proc.stderr:
        pytest.skip("the build backend (hatchling) cannot be fetched here")
    assert proc.returncode == 0, proc.stderr
    (wheel,) = wheels.glob("crosscast-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "crosscast = crosscast.cli:main" in z.read(entry_points).decode()
    assert {"crosscast/__main__.py", "crosscast/py.typed", "crosscast/cli.py"} <= names


# --- compose.yaml: the router sidecar ------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def load_settings(env: Mapping[str, str]) -> Any:
    """The relay's own settings loader, fed the service's environment."""
    from crosscast.relay import settings

    return settings.load([], env)


def router_interfaces(router: Mapping[str, Any]) -> list[str]:
    """eth0, eth1, ... in the order Docker connects the router's networks (priority first)."""
    networks = router["networks"]
    assert isinstance(networks, dict), "give the router's networks a priority each"
    ordered = sorted(networks, key=lambda n: -int((networks[n] or {}).get("priority", 0)))
    return [f"eth{i}" for i in range(len(ordered))]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def test_sidecar_shares_the_router_network_namespace(compose: dict[str, Any]) -> None:
    services = compose["services"]
    relay = services["relay"]
    assert relay["network_mode"] in ("service:router", "container:router")
    assert "router" in services
    assert "networks" not in relay
    assert "ports" not in relay


def test_sidecar_has_net_raw_and_net_admin(compose: dict[str, Any]) -> None:
    assert {"NET_RAW", "NET_ADMIN"} <= set(compose["services"]["relay"]["cap_add"])


def test_sidecar_is_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    relay = compose["services"]["relay"]
    assert (ROOT / relay["build"]["context"] / relay["build"]["dockerfile"]) == DOCKERFILE
    assert relay["image"] == f"crosscast:{crosscast.__version__}"


def test_sidecar_is_recreated_with_the_router(compose: dict[str, Any]) -> None:
    """A recreated router is a new network namespace: the relay must follow it (issue 10)."""
    depends = compose["services"]["relay"]["depends_on"]
    assert depends == {"router": {"condition": "service_started", "restart": True}}


def test_router_answers_broadcast_pings(compose: dict[str, Any]) -> None:
    sysctls = compose["services"]["router"]["sysctls"]
    assert str(sysctls["net.ipv4.icmp_echo_ignore_broadcasts"]) == "0"


def test_sidecar_rules_load_and_name_only_the_router_interfaces(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = environment(services["relay"])
    assert "RULES" in env
    settings = load_settings(env)
    from crosscast.relay.rules import validate_rules

    names = [r.name for r in settings.rules]
    assert names == ["gps", "emergency", "telemetry"]
    interfaces = set(router_interfaces(services["router"]))
    assert validate_rules(settings.rules, interfaces=interfaces, mesh_port=None) == []
    assert not settings.uses_mesh


def test_sidecar_serves_healthz_for_the_image_healthcheck(compose: dict[str, Any]) -> None:
    assert environment(compose["services"]["relay"])["METRICS_PORT"] == "9124"


# --- deploy/swarm-stack.yaml ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return load_yaml(STACK)


def test_stack_runs_one_relay_per_node(stack: dict[str, Any]) -> None:
    assert stack["services"]["relay"]["deploy"]["mode"] == "global"


def test_stack_finds_its_peers_by_service_name(stack: dict[str, Any]) -> None:
    assert environment(stack["services"]["relay"])["SERVICENAME"] == "{{.Service.Name}}"


def test_stack_meshes_on_an_attachable_overlay_only(stack: dict[str, Any]) -> None:
    relay = stack["services"]["relay"]
    (network,) = relay["networks"]
    assert stack["networks"][network]["driver"] == "overlay"
    assert stack["networks"][network]["attachable"] is True
    assert "ports" not in relay  # the mesh port is not published on the hosts
    assert environment(relay)["MESH_PORT"] == "7124"


def test_stack_relay_has_net_raw_and_net_admin(stack: dict[str, Any]) -> None:
    assert {"NET_RAW", "NET_ADMIN"} <= set(stack["services"]["relay"]["cap_add"])


def test_stack_mesh_secret_is_a_docker_secret_the_relay_user_can_read(
    stack: dict[str, Any], final: list[Instruction]
) -> None:
    relay = stack["services"]["relay"]
    (secret,) = relay["secrets"]
    path = environment(relay)["MESH_SECRET_FILE"]
    assert path == f"/run/secrets/{secret['target']}"
    assert stack["secrets"][secret["source"]]["external"] is True
    uid, _, gid = one(final, "USER").args.partition(":")
    assert (secret["uid"], secret["gid"]) == (uid, gid)
    assert secret["mode"] == 0o400


def test_stack_documents_the_encrypted_overlay_option() -> None:
    """The commented `encrypted` option, uncommented, is a valid overlay network option."""
    text = STACK.read_text()
    uncommented = re.sub(r"(?m)^(\s*)# (driver_opts:|  encrypted: \"\")$", r"\1\2", text)
    assert uncommented != text
    network = yaml.safe_load(uncommented)["networks"]["epics"]
    assert network["driver_opts"] == {"encrypted": ""}
    assert "encrypted" not in (load_yaml(STACK)["networks"]["epics"].get("driver_opts") or {})


def test_stack_settings_load(stack: dict[str, Any], tmp_path: Path) -> None:
    env = environment(stack["services"]["relay"])
    secret = tmp_path / "crosscast_mesh"
    secret.write_text("a shared secret of at least thirty-two bytes, for the test\n")
    env["MESH_SECRET_FILE"] = str(secret)
    settings = load_settings(env)
    assert settings.peer_names == ("tasks.{{.Service.Name}}",)
    assert settings.uses_mesh
    assert settings.mesh_secret is not None
    assert settings.metrics_port == 9124


# --- the compose client, where one is installed ---------------------------------------------------


def compose_client() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def without_depends_on_restart(text: str) -> str:
    """The file as docker-compose 1.x (Debian 12's) can read it: that client predates the
    Compose Spec's `depends_on: {X: {restart: true}}` (Compose >= 2.17) and rejects the key."""
    data = yaml.safe_load(text)
    for service in data["services"].values():
        depends = service.get("depends_on")
        if isinstance(depends, dict):
            for condition in depends.values():
                condition.pop("restart", None)
    return yaml.safe_dump(data, sort_keys=False)


@pytest.mark.parametrize("path", [COMPOSE, STACK], ids=["compose", "stack"])
def test_compose_client_accepts_the_file(path: Path, tmp_path: Path) -> None:
    client = compose_client()
    if client is None:
        pytest.skip("no compose client (docker compose or docker-compose) is installed")
    if client == ["docker-compose"]:
        legacy = tmp_path / path.name
        legacy.write_text(without_depends_on_restart(path.read_text()))
        path = legacy
    argv = [*client, "--project-directory", str(ROOT), "-f", str(path), "--profile", "try"]
    proc = subprocess.run(
        [*argv, "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr


def test_docker_stack_config_accepts_the_stack() -> None:
    """`docker stack config` renders the stack as `docker stack deploy` reads it (no engine)."""
    if shutil.which("docker") is None:
        pytest.skip("the docker client is not installed")
    proc = subprocess.run(
        ["docker", "stack", "config", "-c", str(STACK)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent"},
    )
    if proc.returncode != 0 and "unknown command" in proc.stderr:
        pytest.skip("this docker client has no `stack config`")
    assert proc.returncode == 0, proc.stderr
    rendered = yaml.safe_load(proc.stdout)
    assert rendered["services"]["relay"]["deploy"]["mode"] == "global"
    assert rendered["services"]["relay"]["cap_add"] == ["NET_RAW", "NET_ADMIN"]
