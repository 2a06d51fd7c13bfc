"""The lab's topologies: routed VLANs behind one router, and a Swarm-like VXLAN overlay.

It owns the namespaces, veths, bridges and VXLAN devices of each topology and their addressing
plan; what runs inside them (processes, DNS, probes) is for the other lab modules.

Facts this relies on (see the project's testbed notes):
- 802.1Q devices are unavailable here, so each "VLAN" is one Linux bridge in a router namespace.
- A Swarm overlay is br-ov + a VXLAN device per node with static FDB entries for remote MACs and
  no all-zeros flood entry: unicast crosses nodes, broadcast does not; containers get permanent
  neighbour entries for remote containers, as Docker's overlay driver programs them.
- `ip netns exec` bind-mounts /etc/netns/NS/{hosts,resolv.conf}, so each namespace gets its own
  resolver (127.0.0.11 in a "container", as Docker's embedded DNS) and its own hostname mapping
  (SnowSignal excludes itself through gethostname()).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from crosscast.lab import registry
from crosscast.net import netns

DOCKER_DNS = "127.0.0.11"  # Docker's embedded DNS address inside every container
VXLAN_PORT = 4789  # IANA VXLAN port
VXLAN_ID = 4096  # Docker's first overlay VNI


def _ip(*argv: str, ns: str | None = None) -> None:
    netns.run(["ip", *argv], ns=ns)


def mac_for(ip: str) -> str:
    """The lab's static MAC of an address: 02:00 + its octets (10.201.1.11 -> 02:00:0a:c9:01:0b)."""
    return "02:00:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def _add_namespace(ns: str, own_ip: str | None, nameserver: str) -> None:
    netns.add(ns)
    etc = Path("/etc/netns") / ns
    mapped = own_ip or "127.0.0.1"
    # gethostname() is the machine's name in every namespace; map it to the namespace's own
    # address, as a container's /etc/hosts does.
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n{mapped} {socket.gethostname()} {ns}\n")
    (etc / "resolv.conf").write_text(f"nameserver {nameserver}\n")


@dataclass(frozen=True)
class Segment:
    """One broadcast domain (a VLAN, or an overlay network)."""

    name: str
    network: ipaddress.IPv4Network

    @property
    def broadcast(self) -> str:
        return str(self.network.broadcast_address)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen


@dataclass(frozen=True)
class Host:
    """A namespace with one interface on one segment (a host, a relay host, a container)."""

    ns: str
    ip: str
    mac: str
    segment: Segment
    iface: str = "eth0"


def _attach_host(
    ns: str,
    segment: Segment,
    ip: str,
    bridge_ns: str,
    bridge: str,
    port_name: str,
    nameserver: str,
    gateway: str | None,
) -> Host:
    """Create `ns` with eth0 (static MAC) plugged into `bridge` of `bridge_ns` via a veth."""
    _add_namespace(ns, ip, nameserver)
    mac = mac_for(ip)
    _ip("link", "add", port_name, "type", "veth", "peer", "name", "eth0", "netns", ns, ns=bridge_ns)
    _ip("link", "set", "eth0", "address", mac, ns=ns)
    _ip("link", "set", port_name, "master", bridge, "up", ns=bridge_ns)
    _ip("addr", "add", f"{ip}/{segment.prefixlen}", "brd", "+", "dev", "eth0", ns=ns)
    _ip("link", "set", "eth0", "up", ns=ns)
    if gateway is not None:
        _ip("route", "add", "default", "via", gateway, ns=ns)
    return Host(ns=ns, ip=ip, mac=mac, segment=segment)


# ---------------------------------------------------------------------------------------------
# Topology 1: routed VLANs


@dataclass
class RoutedVlans:
    """VLANs 1..n as bridges in one router namespace that routes between them.

    VLAN n is 10.<base>.n.0/24; the router is .1 on each (`brd +`); hosts are .11, .12, ...
    and the relay host (if any) is .21. Host namespaces are `<prefix>-v<n>h<host octet>`.
    """

    prefix: str
    base: int
    router: str
    vlans: dict[int, Segment]
    hosts: dict[int, list[Host]]
    relays: dict[int, Host]

    RELAY_OCTET = 21
    FIRST_HOST_OCTET = 11

    @classmethod
    def build(
        cls,
        prefix: str,
        n_vlans: int = 2,
        hosts_per_vlan: int = 2,
        relay_hosts: bool = True,
        base: int = 201,
    ) -> RoutedVlans:
        registry.remember(prefix)
        router = registry.ns_name(prefix, "rtr")
        _add_namespace(router, None, "127.0.0.1")
        netns.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], ns=router)
        lab = cls(prefix, base, router, {}, {}, {})
        for n in range(1, n_vlans + 1):
            seg = Segment(f"vlan{n}", ipaddress.IPv4Network(f"10.{base}.{n}.0/24"))
            lab.vlans[n] = seg
            lab.hosts[n] = []
            br = f"br{n}"
            # The bridge is its own IGMP querier so snooping works without an outside router.
            _ip("link", "add", br, "type", "bridge", "mcast_snooping", "1", "mcast_querier", "1",
                ns=router)  # fmt: skip
            _ip("addr", "add", f"{lab.gateway(n)}/24", "brd", "+", "dev", br, ns=router)
            _ip("link", "set", br, "up", ns=router)
            for h in range(hosts_per_vlan):
                lab.add_host(n, cls.FIRST_HOST_OCTET + h)
            if relay_hosts:
                lab.relays[n] = lab.add_host(n, cls.RELAY_OCTET, role="r")
        return lab

    def gateway(self, vlan: int) -> str:
        return f"10.{self.base}.{vlan}.1"

    def add_host(self, vlan: int, octet: int, role: str = "h") -> Host:
        """Plug a new host namespace `<prefix>-v<vlan><role><octet>` into VLAN `vlan`."""
        seg = self.vlans[vlan]
        ip = f"10.{self.base}.{vlan}.{octet}"
        host = _attach_host(
            registry.ns_name(self.prefix, f"v{vlan}{role}{octet}"),
            seg,
            ip,
            self.router,
            f"br{vlan}",
            f"p{vlan}x{octet}",
            self.gateway(vlan),
            self.gateway(vlan),
        )
        if role != "r":
            self.hosts[vlan].append(host)
        return host

    def teardown(self) -> None:
        registry.teardown(self.prefix)


# ---------------------------------------------------------------------------------------------
# Topology 2: a Swarm-like overlay over VXLAN


@dataclass
class OverlayNode:
    """One Swarm node: its namespace (ul0 on the underlay, br-ov, vx0), its relay and apps."""

    index: int
    ns: str
    underlay_ip: str
    relay: Host
    apps: list[Host]

    @property
    def containers(self) -> list[Host]:
        return [self.relay, *self.apps]


@dataclass
class SwarmOverlay:
    """Nodes on an underlay bridge (10.<base>.9.0/24), one overlay 10.<base>.10.0/24.

    Node i is `<prefix>-n<i>` at 10.<base>.9.i; its relay container `<prefix>-n<i>r` is
    10.<base>.10.<10i+1>, its apps `<prefix>-n<i>a<j>` are 10.<base>.10.<10i+1+j>. Every container
    resolves through 127.0.0.11 (see FakeSwarmDns).
    """

    prefix: str
    base: int
    underlay: str
    overlay: Segment
    nodes: list[OverlayNode]
    apps_per_node: int

    @classmethod
    def build(
        cls, prefix: str, nodes: int = 2, apps_per_node: int = 1, base: int = 202
    ) -> SwarmOverlay:
        if nodes > 9:
            raise ValueError("at most 9 nodes (addresses are 10.<base>.10.<10 i + k>)")
        registry.remember(prefix)
        underlay = registry.ns_name(prefix, "ul")
        _add_namespace(underlay, None, "127.0.0.1")
        _ip("link", "add", "br-ul", "type", "bridge", ns=underlay)
        _ip("link", "set", "br-ul", "up", ns=underlay)
        seg = Segment("overlay", ipaddress.IPv4Network(f"10.{base}.10.0/24"))
        lab = cls(prefix, base, underlay, seg, [], apps_per_node)
        for _ in range(nodes):
            lab.add_node()
        return lab

    def add_node(self) -> OverlayNode:
        """Add a node (and its containers) and program FDB/neighbour entries on every node."""
        i = len(self.nodes) + 1
        if i > 9:
            raise ValueError("at most 9 nodes")
        ns = registry.ns_name(self.prefix, f"n{i}")
        ul_ip = f"10.{self.base}.9.{i}"
        _add_namespace(ns, ul_ip, "127.0.0.1")
        _ip("link", "add", f"u{i}", "type", "veth", "peer", "name", "ul0", "netns", ns,
            ns=self.underlay)  # fmt: skip
        _ip("link", "set", f"u{i}", "master", "br-ul", "up", ns=self.underlay)
        _ip("addr", "add", f"{ul_ip}/24", "dev", "ul0", ns=ns)
        _ip("link", "set", "ul0", "up", ns=ns)
        _ip("link", "add", "br-ov", "type", "bridge", ns=ns)
        _ip("link", "set", "br-ov", "up", ns=ns)
        # nolearning + FDB entries only for remote MACs (no 00:00:00:00:00:00 flood entry):
        # broadcast stays on its node, unicast crosses, like Docker's overlay driver.
        _ip("link", "add", "vx0", "type", "vxlan", "id", str(VXLAN_ID), "local", ul_ip,
            "dstport", str(VXLAN_PORT), "nolearning", "dev", "ul0", ns=ns)  # fmt: skip
        _ip("link", "set", "vx0", "master", "br-ov", "up", ns=ns)

        def container(suffix: str, octet: int, port: str) -> Host:
            return _attach_host(
                registry.ns_name(self.prefix, f"n{i}{suffix}"),
                self.overlay,
                f"10.{self.base}.10.{octet}",
                ns,
                "br-ov",
                port,
                DOCKER_DNS,
                None,
            )

        relay = container("r", 10 * i + 1, "cr")
        apps = [
            container(f"a{j}", 10 * i + 1 + j, f"ca{j}") for j in range(1, self.apps_per_node + 1)
        ]
        node = OverlayNode(i, ns, ul_ip, relay, apps)
        for other in self.nodes:
            self._program(node, other)
            self._program(other, node)
        self.nodes.append(node)
        return node

    @staticmethod
    def _program(at: OverlayNode, remote: OverlayNode) -> None:
        """Make `remote`'s containers reachable (unicast) from `at` and its containers."""
        for c in remote.containers:
            netns.run(["bridge", "fdb", "append", c.mac, "dev", "vx0", "dst", remote.underlay_ip,
                       "self", "permanent"], ns=at.ns)  # fmt: skip
            for local in at.containers:
                _ip("neigh", "replace", c.ip, "lladdr", c.mac, "dev", "eth0", "nud", "permanent",
                    ns=local.ns)  # fmt: skip

    @property
    def relays(self) -> list[Host]:
        return [n.relay for n in self.nodes]

    def teardown(self) -> None:
        registry.teardown(self.prefix)


# ---------------------------------------------------------------------------------------------
# The router namespace


def isolate_vlans(router_ns: str, bridges: Iterable[str]) -> None:
    """FORWARD policy DROP in the router namespace, except within one bridge, as the seed
    router's iptables do.

    Bridged frames traverse iptables FORWARD (br_netfilter) with -i/-o set to the bridge, so a
    bare DROP policy would also cut each VLAN in two; the per-bridge ACCEPT keeps VLANs whole
    while nothing is routed between them.
    """
    netns.run(["iptables", "-P", "FORWARD", "DROP"], ns=router_ns)
    for br in bridges:
        netns.run(["iptables", "-A", "FORWARD", "-i", br, "-o", br, "-j", "ACCEPT"], ns=router_ns)


def link_mac(ns: str, dev: str) -> str:
    """The MAC of `dev` in `ns`, lower case, colon-separated."""
    out = netns.run(["ip", "-j", "link", "show", "dev", dev], ns=ns).stdout
    mac: str = json.loads(out)[0]["address"]
    return mac.lower()


def bridge_macs(router: str, n_vlans: int) -> dict[int, str]:
    """The MACs of br1..brN in the router namespace (what a router-mode relay emits with)."""
    return {n: link_mac(router, f"br{n}") for n in range(1, n_vlans + 1)}
