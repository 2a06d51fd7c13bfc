"""`crosscast lease` against the real isc-dhcp-server, in namespaces of our own.

Lab (fresh per test, prefix "ccl" + 4 hex + "-", deleted afterwards even on failure):

    P+host: br0 (no address) -- vr0 ==veth== eth0 in P+rtr (10.199.1.3/24, runs dhcpd)
                             -- vsq ==veth== eth0 in P+squat (only in the ARP-conflict test)

The client runs in P+host on br0, as `crosscast lease --netns P+host --interface br0`, exactly
as it runs on an edge host's VLAN bridge. The CLI is run as a subprocess so exit codes and the
one-line messages are what a shell script would see.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crosscast.net import netns
from crosscast.net.frames import parse_udp_frame
from crosscast.topology.leases.link import PacketLink
from crosscast.topology.model import mac_for_name

pytestmark = [pytest.mark.root]

SUBNET = ipaddress.IPv4Network("10.199.1.0/24")
ROUTER = ipaddress.IPv4Address("10.199.1.3")
POOL_START = ipaddress.IPv4Address("10.199.1.100")


class DhcpLab:
    def __init__(self, tmp_path: Path) -> None:
        self.prefix = f"ccl{secrets.token_hex(2)}-"
        self.host = self.prefix + "host"
        self.router = self.prefix + "rtr"
        self.dir = tmp_path
        self.db = tmp_path / "leases.sqlite3"
        self.conf = tmp_path / "dhcpd.conf"
        self.leases = tmp_path / "dhcpd.leases"
        self.leases.write_text("")
        self.dhcpd: subprocess.Popen[str] | None = None
        self.reader = threading.Thread()
        self.log: list[str] = []
        netns.add(self.host)
        netns.add(self.router)
        netns.run(["ip", "link", "add", "br0", "type", "bridge"], self.host)
        netns.run(["ip", "link", "set", "br0", "up"], self.host)
        self._plug(self.router, "vr0", f"{ROUTER}/{SUBNET.prefixlen}")

    def _plug(self, ns: str, port: str, address: str) -> None:
        netns.run(["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
        netns.run(["ip", "link", "set", port, "netns", self.host])
        netns.run(["ip", "link", "set", port, "master", "br0", "up"], self.host)
        netns.run(["ip", "addr", "add", address, "dev", "eth0"], ns)
        netns.run(["ip", "link", "set", "eth0", "up"], ns)

    def add_squatter(self, address: ipaddress.IPv4Address) -> str:
        """A host with a static `address` inside the pool; returns its MAC."""
        ns = self.prefix + "squat"
        netns.add(ns)
        self._plug(ns, "vsq", f"{address}/{SUBNET.prefixlen}")
        out = netns.run(["cat", "/sys/class/net/eth0/address"], ns).stdout
        return out.strip()

    def renumber_router(self, address: str) -> None:
        netns.run(["ip", "addr", "flush", "dev", "eth0"], self.router)
        netns.run(["ip", "addr", "add", address, "dev", "eth0"], self.router)

    def start_dhcpd(
        self,
        pool_size: int = 3,
        subnet: ipaddress.IPv4Network = SUBNET,
        router: ipaddress.IPv4Address = ROUTER,
    ) -> None:
        first = subnet.network_address + 100
        last = first + pool_size - 1
        # ping-check off: dhcpd's own ICMP check would hide a squatter from our ARP probe.
        self.conf.write_text(
            "authoritative;\nping-check false;\n"
            "default-lease-time 600;\nmax-lease-time 7200;\n"
            f"subnet {subnet.network_address} netmask {subnet.netmask} {{\n"
            f"  range {first} {last};\n"
            f"  option routers {router};\n"
            f"  option subnet-mask {subnet.netmask};\n"
            f"  option domain-name-servers {router};\n"
            "}\n"
        )
        argv = [
            "dhcpd", "-4", "-f", "-d", "-cf", str(self.conf), "-lf", str(self.leases),
            "-pf", str(self.dir / "dhcpd.pid"), "eth0",
        ]  # fmt: skip
        self.dhcpd = subprocess.Popen(
            netns.exec_argv(self.router, argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, args=(self.dhcpd,), daemon=True)
        self.reader.start()
        self.wait_log("Server starting service.")

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.log.append(line.rstrip("\n"))

    def wait_log(self, text: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.log):
                if text in line:
                    return line
            if (
                self.dhcpd is not None
                and self.dhcpd.poll() is not None
                and not self.reader.is_alive()
            ):
                break
            time.sleep(0.02)
        raise AssertionError(f"dhcpd never logged {text!r}; its log:\n" + "\n".join(self.log))

    def stop_dhcpd(self) -> None:
        if self.dhcpd is None:
            return
        if self.dhcpd.poll() is None:
            self.dhcpd.terminate()
            self.dhcpd.wait(timeout=5)
        self.reader.join(timeout=5)
        assert self.dhcpd.stdout is not None
        self.dhcpd.stdout.close()
        self.dhcpd = None

    def lease(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """`crosscast lease ...` in a subprocess, on br0 of the host namespace."""
        cmd = [sys.executable, "-m", "crosscast", "lease", *argv, "--db", str(self.db)]
        if "--list" not in argv and "--release" not in argv:
            cmd += ["--netns", self.host, "--interface", "br0"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)

    def close(self) -> None:
        self.stop_dhcpd()
        for ns in netns.names(self.prefix):
            netns.delete(ns)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[DhcpLab]:
    lab = DhcpLab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()
        assert netns.names(lab.prefix) == []


def env_of(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert proc.returncode == 0, proc.stderr
    return dict(line.split("=", 1) for line in proc.stdout.splitlines())


def test_first_lease_is_dora_from_the_pool_with_the_derived_mac(lab: DhcpLab) -> None:
    lab.start_dhcpd()
    env = env_of(lab.lease("container1", "--vlan", "1"))
    mac = mac_for_name("container1")
    assert env["CROSSCAST_NAME"] == "container1"
    assert env["CROSSCAST_MAC"] == mac
    assert ipaddress.IPv4Address(env["CROSSCAST_IP"]) in [POOL_START + i for i in range(3)]
    assert env["CROSSCAST_PREFIX"] == "24"
    assert env["CROSSCAST_GATEWAY"] == str(ROUTER)
    assert env["CROSSCAST_VLAN"] == "1"
    for step in ("DHCPDISCOVER from", "DHCPOFFER on", "DHCPREQUEST for", "DHCPACK on"):
        assert f"{mac}" in lab.wait_log(step)
    assert f"DHCPACK on {env['CROSSCAST_IP']} to {mac} (container1)" in "\n".join(lab.log)


def test_second_call_returns_the_same_binding_renewed(lab: DhcpLab) -> None:
    lab.start_dhcpd()
    first = json.loads(lab.lease("container1", "--vlan", "1", "--format", "json").stdout)
    again = lab.lease("container1", "--vlan", "1", "--format", "json")
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert (second["ip"], second["mac"]) == (first["ip"], first["mac"])
    assert "renewed" in again.stderr
    requests = [line for line in lab.log if line.startswith(f"DHCPREQUEST for {first['ip']}")]
    assert len(requests) == 2  # SELECTING, then INIT-REBOOT: asked again, not just read back


def test_binding_survives_a_dhcpd_restart_with_its_leases_file(lab: DhcpLab) -> None:
    lab.start_dhcpd()
    first = env_of(lab.lease("container1", "--vlan", "1"))
    lab.stop_dhcpd()
    lab.log.clear()
    lab.start_dhcpd()
    again = lab.lease("container1", "--vlan", "1")
    assert env_of(again) == first
    assert "renewed" in again.stderr
    assert f"DHCPACK on {first['CROSSCAST_IP']}" in lab.wait_log("DHCPACK on")


def test_a_second_container_gets_another_address(lab: DhcpLab) -> None:
    lab.start_dhcpd()
    one = env_of(lab.lease("container1", "--vlan", "1"))
    two = env_of(lab.lease("container2", "--vlan", "1"))
    assert one["CROSSCAST_IP"] != two["CROSSCAST_IP"]
    assert one["CROSSCAST_MAC"] != two["CROSSCAST_MAC"]


def test_an_exhausted_pool_is_one_clear_line_and_exit_1(lab: DhcpLab) -> None:
    lab.start_dhcpd(pool_size=1)
    env_of(lab.lease("container1", "--vlan", "1"))
    proc = lab.lease("container2", "--vlan", "1", "--timeout", "1", "--retries", "1")
    assert proc.returncode == 1
    assert proc.stdout == ""
    # The retransmission is reported as it happens; the failure is one line.
    assert proc.stderr.splitlines() == [
        "crosscast lease: no answer to DHCPDISCOVER within 1 s: sending it again (1/1)",
        "crosscast lease: container2: no DHCPOFFER within 2 s (no DHCP server on this VLAN,"
        " or its pool is exhausted)",
    ]
    assert "no free leases" in lab.wait_log("no free leases")


def test_no_server_is_one_clear_line_and_exit_1(lab: DhcpLab) -> None:
    proc = lab.lease("container1", "--vlan", "1", "--timeout", "1", "--retries", "0")
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1
    assert "no DHCPOFFER within 1 s" in proc.stderr


def test_a_missing_interface_is_a_usage_error(lab: DhcpLab) -> None:
    cmd = [sys.executable, "-m", "crosscast", "lease", "c1", "--vlan", "1", "--db", str(lab.db)]
    proc = subprocess.run(
        [*cmd, "--netns", lab.host, "--interface", "nope0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"crosscast lease: cannot open interface nope0 in namespace {lab.host}: No such device"
    ]


def test_silent_server_on_renewal_keeps_the_stored_binding(lab: DhcpLab) -> None:
    lab.start_dhcpd()
    first = env_of(lab.lease("container1", "--vlan", "1"))
    lab.stop_dhcpd()
    proc = lab.lease("container1", "--vlan", "1", "--timeout", "0.5", "--retries", "0")
    assert env_of(proc) == first
    assert "keeping the stored binding" in proc.stderr


def test_nak_is_one_line_and_rebind_gets_a_new_lease(lab: DhcpLab) -> None:
    lab.start_dhcpd()
    env_of(lab.lease("container1", "--vlan", "1"))
    lab.stop_dhcpd()
    moved = ipaddress.IPv4Network("10.199.2.0/24")
    lab.renumber_router("10.199.2.3/24")
    lab.start_dhcpd(subnet=moved, router=ipaddress.IPv4Address("10.199.2.3"))
    proc = lab.lease("container1", "--vlan", "1")
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1
    assert "refused to renew 10.199.1.100 (DHCPNAK" in proc.stderr
    fresh = env_of(lab.lease("container1", "--vlan", "1", "--rebind"))
    assert ipaddress.IPv4Address(fresh["CROSSCAST_IP"]) in moved


def test_release_gives_the_address_back_and_forgets_it(lab: DhcpLab) -> None:
    lab.start_dhcpd()
    env = env_of(lab.lease("container1", "--vlan", "1"))
    proc = lab.lease("--release", "container1")
    assert proc.returncode == 0, proc.stderr
    line = lab.wait_log("DHCPRELEASE of")
    assert f"DHCPRELEASE of {env['CROSSCAST_IP']} from {env['CROSSCAST_MAC']}" in line
    assert "(found)" in line
    listed = lab.lease("--list", "--format", "json")
    assert json.loads(listed.stdout) == []


def test_list_shows_every_binding(lab: DhcpLab) -> None:
    lab.start_dhcpd()
    env_of(lab.lease("container1", "--vlan", "1"))
    env_of(lab.lease("container2", "--vlan", "1"))
    rows = lab.lease("--list").stdout.splitlines()
    assert [r.split()[0] for r in rows] == ["NAME", "container1", "container2"]


def test_an_address_in_use_is_declined(lab: DhcpLab) -> None:
    squatter_mac = lab.add_squatter(POOL_START)  # dhcpd hands out a fresh pool from the bottom
    lab.start_dhcpd()
    proc = lab.lease("container1", "--vlan", "1")
    env = env_of(proc)
    assert env["CROSSCAST_IP"] != str(POOL_START)
    assert f"{POOL_START} is already in use by {squatter_mac}: declined" in proc.stderr
    assert f"DHCPDECLINE of {POOL_START}" in lab.wait_log("DHCPDECLINE of")


def test_the_links_kernel_filter_passes_the_client_port_only(lab: DhcpLab) -> None:
    link = PacketLink("br0", lab.host)
    try:
        with netns.inside(lab.router), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.sendto(b"not for a DHCP client", (str(SUBNET.broadcast_address), 5076))
            s.sendto(b"for the client port", (str(SUBNET.broadcast_address), 68))
        frame = link.recv(timeout=5.0)
    finally:
        link.close()
    assert frame is not None
    f = parse_udp_frame(frame)
    assert (f.dst_port, f.payload) == (68, b"for the client port")
