"""deploy/: the systemd unit and its env file, and the Kubernetes manifests, checked without a host
to install them on: `systemd-analyze verify` (any message is a failure, since it exits 0 on
unknown keys), `systemd-analyze security --offline`, the env file through `crosscast relay
--check`, and the manifests against the pinned Kubernetes schemas kubernetes-validate ships.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import crosscast
from tests.relay.test_check_golden import Case, Result  # run_check: tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "systemd" / "crosscast.service"
ENV_FILE = ROOT / "deploy" / "systemd" / "crosscast.env"
DAEMONSET = ROOT / "deploy" / "kubernetes" / "daemonset.yaml"
# The Kubernetes release the manifests are checked against; kubernetes-validate ships its
# schemas, so no cluster and no network is needed. Raise it deliberately.
KUBERNETES_VERSION = "1.34.0"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed"
)


def unit_settings(text: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (keys may repeat; sections are not needed here)."""
    settings: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def systemd_analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SYSTEMD_ANALYZE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


def installable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's crosscast: verify wants a real binary."""
    crosscast = Path(sys.executable).with_name("crosscast")
    assert crosscast.exists(), "the test extra installs the crosscast command beside python"
    text = UNIT.read_text().replace("/usr/local/bin/crosscast", str(crosscast))
    unit = tmp_path / "crosscast.service"
    unit.write_text(text)
    return unit


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_the_unit_without_a_message(tmp_path: Path) -> None:
    unit = installable_unit(tmp_path)
    proc = systemd_analyze("verify", "--man=no", str(unit), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout + proc.stderr).strip() == ""


@needs_systemd_analyze
def test_systemd_analyze_verify_would_report_a_bad_key(tmp_path: Path) -> None:
    # The check above relies on messages, since verify exits 0 on unknown keys: prove it sees one.
    unit = installable_unit(tmp_path)
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=on-failure\nBogus=1"))
    proc = systemd_analyze("verify", "--man=no", str(unit), cwd=tmp_path)
    assert "Unknown key 'Bogus'" in proc.stderr


@needs_systemd_analyze
def test_offline_security_exposure_is_low(tmp_path: Path) -> None:
    unit = installable_unit(tmp_path)
    proc = systemd_analyze("security", "--offline=yes", "--no-pager", str(unit), cwd=tmp_path)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    # 10 is an unconfined root service; below 3 systemd calls it "OK".
    assert float(found.group(1)) < 3.0, proc.stdout


def test_unit_runs_unprivileged_with_only_the_two_network_capabilities() -> None:
    settings = unit_settings(UNIT.read_text())
    assert settings["DynamicUser"] == ["yes"]
    assert settings["AmbientCapabilities"] == ["CAP_NET_RAW CAP_NET_ADMIN"]
    assert settings["CapabilityBoundingSet"] == ["CAP_NET_RAW CAP_NET_ADMIN"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["ProtectSystem"] == ["strict"]
    assert "User" not in settings


def test_unit_is_notify_restarts_reloads_and_keeps_state() -> None:
    settings = unit_settings(UNIT.read_text())
    assert settings["Type"] == ["notify"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["StateDirectory"] == ["crosscast"]
    assert settings["EnvironmentFile"] == ["-/etc/default/crosscast"]
    assert "AF_PACKET" in settings["RestrictAddressFamilies"][0].split()


def env_file_variables() -> dict[str, str]:
    variables = {}
    for raw in ENV_FILE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            variables[key] = value
    return variables


def test_env_file_example_passes_relay_check(run_check: Callable[[Case], Result]) -> None:
    variables = env_file_variables()
    assert variables["TARGET_INTERFACE"] == "eth0"  # an interface of the --check fake host
    proc = run_check(Case("env-file", ("--check",), variables))
    assert proc.returncode == 0, proc.stderr
    assert "configuration ok" in proc.stdout


def test_env_file_commented_examples_pass_relay_check(
    tmp_path: Path, run_check: Callable[[Case], Result]
) -> None:
    # The commented-out lines are what an operator uncomments: they must be valid too.
    variables = env_file_variables()
    secret = tmp_path / "secret"
    secret.write_text("s3cret-s3cret-s3cret-s3cret\n")
    for raw in ENV_FILE.read_text().splitlines():
        found = re.fullmatch(r"#([A-Z_]+)=(.*)", raw.strip())
        if found:
            variables[found.group(1)] = found.group(2)
    args = variables.pop("CROSSCAST_ARGS", "").split()
    variables.pop("CROSSCAST_LEASE_DB")
    variables.pop("RULES_FILE")  # a path on the operator's host
    variables["MESH_SECRET_FILE"] = str(secret)
    proc = run_check(Case("env-file-all", (*args, "--check"), variables))
    assert proc.returncode == 0, proc.stderr


# --- Kubernetes ---------------------------------------------------------------------------------


def manifests() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(DAEMONSET.read_text()) if d]
    return {d["kind"]: d for d in docs}


@pytest.mark.parametrize("kind", ["Service", "DaemonSet"])
def test_manifest_passes_the_strict_schema_of_the_pinned_kubernetes(kind: str) -> None:
    # strict: an unknown or misspelt field is an error, not silently ignored by the API server.
    kubernetes_validate.validate(manifests()[kind], KUBERNETES_VERSION, strict=True)


def test_schema_check_rejects_a_misspelt_field() -> None:
    # The check above means something: the same DaemonSet with one field misspelt fails.
    daemonset = manifests()["DaemonSet"]
    daemonset["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, KUBERNETES_VERSION, strict=True)


def test_relays_discover_each_other_through_the_headless_service() -> None:
    service, daemonset = manifests()["Service"], manifests()["DaemonSet"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    pod = daemonset["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    args = pod["spec"]["containers"][0]["args"]
    assert args[args.index("--peers-dns") + 1] == service["metadata"]["name"]
    mesh = {p["name"]: p for p in service["spec"]["ports"]}["mesh"]
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert (mesh["port"], mesh["protocol"]) == (int(env["MESH_PORT"]), "UDP")


def test_host_network_keeps_cluster_dns_and_only_two_capabilities() -> None:
    pod = manifests()["DaemonSet"]["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    # Without it a host-network pod resolves with the node's resolv.conf: no Service names.
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    security = pod["containers"][0]["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW", "NET_ADMIN"]}


def test_mesh_secret_is_readable_by_the_relays_user() -> None:
    pod = manifests()["DaemonSet"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    mount = container["volumeMounts"][0]
    assert env["MESH_SECRET_FILE"].startswith(mount["mountPath"] + "/")
    assert pod["securityContext"]["fsGroup"] == container["securityContext"]["runAsGroup"]
    volume = {v["name"]: v for v in pod["volumes"]}[mount["name"]]
    assert volume["secret"]["defaultMode"] & 0o040  # group-readable


def test_daemonset_image_is_tagged_with_the_package_version() -> None:
    container = manifests()["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"crosscast:{crosscast.__version__}"
