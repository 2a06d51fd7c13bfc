"""podman for the container tests: a private configuration, a cached Debian base image, the
crosscast image, and containers and networks that are removed again whatever happens.

What this machine needs (and why the configuration is private, written here, never the
machine's): runc, because crun refuses this machine's hybrid cgroups; `default_ulimits = []`,
because podman's default nofile/nproc limits exceed what the machine allows; cgroupfs and a file
event log, because there is no systemd. Storage and network definitions live under STATE, so
the base image survives between runs (it is the only thing kept) and nothing of ours shows up
in the machine's own podman.

Every network is `--internal`: no NAT, and no default route through the host in the containers,
so traffic between the test's networks can only go through the test's router containers (Docker's
isolation chains keep the host out of it too). netavark still turns on the host's
`net.ipv4.ip_forward` and leaves iptables chains behind; HostState puts both back at the end.
Everything made is labelled with the pytest process id, so a run that was killed is cleaned up by
the next one, and concurrent runs leave each other alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = Path("/var/lib/crosscast-tests")
RUNROOT = Path("/run/crosscast-tests")
BASE_IMAGE = "localhost/crosscast-base:bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3")
LABEL = "crosscast.test.pid"
TOOLS = ("podman", "runc", "debootstrap", "nsenter", "ip", "iptables")

CONTAINERS_CONF = """\
# Written by integration/containers/engine.py for crosscast's container tests only.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{state}/events.log"

[network]
network_backend = "netavark"
network_config_dir = "{state}/networks"
"""

STORAGE_CONF = """\
# Written by integration/containers/engine.py for crosscast's container tests only.
[storage]
driver = "overlay"
graphroot = "{state}/storage"
runroot = "{runroot}/storage"
"""


class EngineError(RuntimeError):
    """podman (or a tool the tests need) is missing or failed."""


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def private_env() -> dict[str, str]:
    """The environment every podman call of the tests gets (the config files are written)."""
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "networks").mkdir(exist_ok=True)
    conf = STATE / "containers.conf"
    storage = STATE / "storage.conf"
    conf.write_text(CONTAINERS_CONF.format(state=STATE))
    storage.write_text(STORAGE_CONF.format(state=STATE, runroot=RUNROOT))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERS_", "DOCKER_"))}
    env["CONTAINERS_CONF"] = str(conf)
    env["CONTAINERS_STORAGE_CONF"] = str(storage)
    return env


def assert_subnet_free(subnet: str) -> None:
    """A test network's subnet must not be one the host already routes (its own LAN, say):
    podman would put the bridge's gateway address on the host beside it."""
    wanted = ipaddress.ip_network(subnet)
    routes = json.loads(
        subprocess.run(["ip", "-j", "-4", "route"], capture_output=True, text=True).stdout or "[]"
    )
    for route in routes:
        dst = route.get("dst", "")
        if dst and dst != "default" and ipaddress.ip_network(dst, strict=False).overlaps(wanted):
            raise EngineError(f"{subnet} overlaps the host's route to {dst} ({route.get('dev')})")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Podman:
    """One pytest session's podman: runs commands with the private config and removes, in
    reverse order, everything it created."""

    env: dict[str, str]
    owner: str = field(default_factory=lambda: str(os.getpid()))
    created: list[tuple[str, str]] = field(default_factory=list)
    command: tuple[str, ...] = ("podman",)

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.command, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
        )
        if check and proc.returncode != 0:
            raise EngineError(
                f"podman {' '.join(args)}: exit {proc.returncode}\n{proc.stderr.strip()}"
            )
        return proc

    def variant(self, name: str, containers_lines: str) -> Podman:
        """The same podman (same storage, same cleanup list) with lines added to the
        [containers] table of a copy of the private containers.conf."""
        base = Path(self.env["CONTAINERS_CONF"]).read_text()
        conf = STATE / f"containers-{name}.conf"
        conf.write_text(base.replace("[containers]\n", f"[containers]\n{containers_lines}\n", 1))
        return replace(self, env={**self.env, "CONTAINERS_CONF": str(conf)})

    # -- what the tests create ----------------------------------------------------------------

    def network(self, name: str, subnet: str | None = None) -> str:
        args = ["network", "create", "--internal", "--label", f"{LABEL}={self.owner}"]
        if subnet is not None:
            assert_subnet_free(subnet)
            args += ["--subnet", subnet]
        self(*args, name)
        self.created.append(("network", name))
        return name

    def run(self, name: str, image: str, *options: str, command: Sequence[str] = ()) -> str:
        """`podman run -d` (stderr noise about systemd health timers is expected here)."""
        self.created.append(("container", name))
        self(
            "run", "-d", "--name", name, "--label", f"{LABEL}={self.owner}",
            *options, image, *command,
        )  # fmt: skip
        return name

    def exec(
        self, name: str, *argv: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self("exec", name, *argv, check=check, timeout=timeout)

    def pid(self, name: str) -> int:
        return int(self("inspect", "--format", "{{.State.Pid}}", name).stdout)

    def netns(self, name: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A host tool (ip, iptables, dnsmasq) run in a container's network namespace."""
        proc = subprocess.run(
            ["nsenter", f"--net=/proc/{self.pid(name)}/ns/net", *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise EngineError(f"{' '.join(argv)} in {name}: {proc.stderr.strip()}")
        return proc

    def logs(self, name: str) -> str:
        proc = self("logs", name, check=False)
        return proc.stdout + proc.stderr

    def health(self, name: str) -> str:
        return self("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()

    def running(self, name: str) -> bool:
        proc = self("inspect", "--format", "{{.State.Running}}", name, check=False)
        return proc.stdout.strip() == "true"

    def wait_exit(self, name: str, timeout: float = 30) -> int:
        return int(self("wait", name, timeout=timeout).stdout.strip().splitlines()[-1])

    # -- cleaning up ------------------------------------------------------------------------------

    def remove(self, kind: str, name: str) -> None:
        if kind == "container":
            self("rm", "--force", "--time", "0", name, check=False)
        elif kind == "network":
            self("network", "rm", "--force", name, check=False)
        elif kind == "image":
            self("rmi", "--force", name, check=False)
        with contextlib.suppress(ValueError):
            self.created.remove((kind, name))

    def cleanup(self) -> None:
        """Everything this session made, newest first (the relay before the router whose
        namespace it shares), then anything left by a killed earlier session."""
        for kind, name in reversed(list(self.created)):
            self.remove(kind, name)
        self.sweep(owners={self.owner})

    def sweep(self, owners: set[str] | None = None) -> None:
        """Remove labelled leftovers of `owners`, or (None) of pytest processes that are gone."""

        def dead_or_ours(owner: str) -> bool:
            if owners is not None:
                return owner in owners
            return not (owner.isdigit() and _pid_alive(int(owner)))

        proc = self("ps", "-a", "--filter", f"label={LABEL}", "--format", "json", check=False)
        entries = json.loads(proc.stdout or "[]")
        # dependents first: a container in another's network namespace goes before it
        entries.sort(key=lambda e: e.get("Created", 0), reverse=True)
        for entry in entries:
            if dead_or_ours(entry.get("Labels", {}).get(LABEL, "")):
                self("rm", "--force", "--time", "0", entry["Id"], check=False)
        proc = self("network", "ls", "--filter", f"label={LABEL}", "--format", "json", check=False)
        for net in json.loads(proc.stdout or "[]"):
            if dead_or_ours(net.get("labels", {}).get(LABEL, "")):
                self("network", "rm", "--force", net["name"], check=False)
        proc = self("images", "--filter", f"label={LABEL}", "--format", "json", check=False)
        for image in json.loads(proc.stdout or "[]"):
            if dead_or_ours(image.get("Labels", {}).get(LABEL, "")):
                self("rmi", "--force", image["Id"], check=False)
        # the build stage of a multi-stage build stays behind as an untagged image
        self("image", "prune", "--force", check=False)


# --- what netavark changes on the host ---------------------------------------------------------

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# What netavark 1.4 adds to the host's iptables on its first network set-up and never removes:
# jumps (table, rule) and then its chains (table, chain).
NETAVARK_JUMPS = (
    ("filter", ["FORWARD", "-m", "comment", "--comment", "netavark firewall plugin rules",
                "-j", "NETAVARK_FORWARD"]),
    ("nat", ["PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j",
             "NETAVARK-HOSTPORT-DNAT"]),
    ("nat", ["OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "NETAVARK-HOSTPORT-DNAT"]),
    ("nat", ["POSTROUTING", "-j", "NETAVARK-HOSTPORT-MASQ"]),
)  # fmt: skip
NETAVARK_CHAINS = (
    ("filter", "NETAVARK_FORWARD"),
    ("nat", "NETAVARK-HOSTPORT-DNAT"),
    ("nat", "NETAVARK-HOSTPORT-MASQ"),
    ("nat", "NETAVARK-HOSTPORT-SETMARK"),
)


@dataclass(frozen=True)
class HostState:
    """What podman changes on the host that the tests put back: netavark turns on
    net.ipv4.ip_forward whenever it sets up a bridge (internal ones too), and leaves its
    iptables chains behind. The tests need neither (their routers are containers)."""

    ip_forward: str
    netavark_chains: bool

    @classmethod
    def now(cls) -> HostState:
        probe = subprocess.run(
            ["iptables", "-w", "-S", "NETAVARK_FORWARD"], capture_output=True, check=False
        )
        return cls(IP_FORWARD.read_text().strip(), probe.returncode == 0)

    def restore(self, podman: Podman) -> None:
        if podman("ps", "-aq", check=False).stdout.strip():
            return  # another run's containers are up: it restores when it ends
        IP_FORWARD.write_text(self.ip_forward + "\n")
        if self.netavark_chains:
            return
        for table, rule in NETAVARK_JUMPS:
            subprocess.run(["iptables", "-w", "-t", table, "-D", *rule], capture_output=True)
        for table, chain in NETAVARK_CHAINS:
            for action in ("-F", "-X"):
                subprocess.run(["iptables", "-w", "-t", table, action, chain], capture_output=True)


# --- the base image ------------------------------------------------------------------------------


def apt_mirror(codename: str, sources: Sequence[Path] | None = None) -> str:
    """The first Debian mirror the machine's apt sources use for `codename` (one-line .list
    and deb822 .sources formats), so the base image comes from where the machine's packages do."""
    if sources is None:
        etc = Path("/etc/apt")
        sources = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        if re.search(r"(?mi)^types:", text):  # deb822 (.sources), whatever the file's name
            for block in re.split(r"\n\s*\n", text):
                pairs = (line.partition(":") for line in block.splitlines() if ":" in line)
                fields = {k.strip().lower(): v.strip() for k, _, v in pairs if "#" not in k}
                if (
                    "deb" in fields.get("types", "").split()
                    and codename in fields.get("suites", "").split()
                ):
                    return fields["uris"].split()[0]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == codename:
                    return words[1]
    raise EngineError(f"no apt source for {codename} in {[str(s) for s in sources]}")


def host_codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.partition("=")[2].strip('"')
    raise EngineError("/etc/os-release has no VERSION_CODENAME")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_base_image(podman: Podman) -> tuple[str, float]:
    """The cached base image (debootstrap minbase + python3), built only when missing.
    Returns its name and the seconds spent building it (0 when it was cached)."""
    with _locked(STATE / "base.lock"):
        if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
            return BASE_IMAGE, 0.0
        started = time.monotonic()
        for stale in STATE.glob("rootfs-*"):  # a build that was killed (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        codename = host_codename()
        mirror = apt_mirror(codename)
        with tempfile.TemporaryDirectory(dir=STATE, prefix="rootfs-") as tmp:
            root = Path(tmp) / "root"
            subprocess.run(
                ["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
                 codename, str(root), mirror],
                check=True, capture_output=True, timeout=480,
            )  # fmt: skip
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for item in (root / junk).glob("*"):
                    if item.is_file():
                        item.unlink()
            tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
            imported = subprocess.run(
                ["podman", "import", "--change", 'CMD ["/bin/bash"]', "-", BASE_IMAGE],
                stdin=tar.stdout,
                env=podman.env,
                capture_output=True,
                timeout=600,
            )
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait()
            if imported.returncode != 0:
                raise EngineError(f"podman import: {imported.stderr.decode().strip()}")
        return BASE_IMAGE, time.monotonic() - started


def build_image(podman: Podman, base: str, tag: str) -> float:
    """Build docker/Dockerfile FROM `base`; returns the seconds it took.

    `--format docker` keeps the HEALTHCHECK (the OCI format has none). `--network host` and
    the host's CA bundle: pip and apt in the build reach the package indexes the way the host
    does, through its TLS-intercepting proxy, whose CA only the host's bundle holds. The bundle
    is a build-time volume, so it never lands in a layer.
    """
    started = time.monotonic()
    podman(
        "build", "--force-rm", "--format", "docker", "--network", "host",
        "--volume", "/etc/ssl/certs:/etc/ssl/certs:ro",
        "--build-arg", f"BASE_IMAGE={base}",
        "--label", f"{LABEL}={podman.owner}",
        "-f", str(ROOT / "docker" / "Dockerfile"), "-t", tag, str(ROOT),
        timeout=300,
    )  # fmt: skip
    podman.created.append(("image", tag))
    return time.monotonic() - started


def image_size(podman: Podman, image: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def poll(predicate: Callable[[], object], timeout: float, interval: float = 0.2) -> bool:
    """True as soon as predicate() is truthy, False when the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
