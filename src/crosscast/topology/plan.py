"""The plan of `apply` and `destroy`: an ordered list of steps, each with its "already done?".

This module owns what gets built and how things are named (the namespace naming below is a
contract the lease and verify code relies on). It is pure: it describes commands and checks as
frozen dataclasses and runs none of them; `apply.py` executes a plan.

Naming with a namespace prefix P:
- P+"host": the host, with one bridge per VLAN (named as in the file) and the uplink bridge
  `brup`, whose address is the uplink gateway ("the Internet" as the router sees it);
- P+router.name: the router, one veth per VLAN named as its router interface, plugged into that
  VLAN's bridge, plus the uplink interface plugged into `brup`; dhcpd and (with relay rules) the
  router-mode relay run there, their files in /run/crosscast/P/;
- P+name for each container and device: `eth0` on its VLAN's bridge, its fixed or leased
  address, default route via the VLAN's router address.
Without a prefix the host is this host (bridges and, where the kernel has 802.1Q, VLAN devices
on the trunk), the router and containers are namespaces named as in the file, the router's
uplink is a macvlan on the uplink interface, and devices are real (nothing is built for them);
the relay is the router's sidecar container there, which apply does not start.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from crosscast.relay import READY
from crosscast.topology.load import IFNAMSIZ, UPLINK_BRIDGE
from crosscast.topology.model import MESH, Topology, Vlan, mac_for_name
from crosscast.topology.render import (
    render_dhcpd_conf,
    render_iptables_rules,
    render_relay_rules,
)

HOST = "host"
STATE_ROOT = "/run/crosscast"
RELAY = "crosscast relay"
RELAY_MESH_PORT = 7124  # the relay's default, spelled out when a rule uses the mesh
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]*$")


# -- what a step does ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    ns: str | None = None
    input: str | None = None


@dataclass(frozen=True)
class AddNamespace:
    name: str


@dataclass(frozen=True)
class DeleteNamespace:
    name: str


@dataclass(frozen=True)
class WriteFile:
    path: str
    text: str


@dataclass(frozen=True)
class StartDaemon:
    """Start `argv` in `ns`, detached, its output appended to `log`.

    By default the daemon writes its own PID to `pidfile` and has started once it did. With
    `write_pidfile`, apply writes the PID of the process it starts (for a program that writes
    none). With `ready`, it has started only once what it logged since this start has the word
    `ready`. `args` and `program` say how to recognise it, as in DaemonRunning. `inherit_env`, if
    set, are the only environment variables it inherits from apply's; `env` are ones it gets.
    """

    argv: tuple[str, ...]
    ns: str | None
    pidfile: str
    log: str
    write_pidfile: bool = False
    ready: str | None = None
    program: str | None = None  # default: the name of argv[0]
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    inherit_env: tuple[str, ...] | None = None  # None: all of them


@dataclass(frozen=True)
class StopDaemon:
    """SIGTERM (then SIGKILL) the daemon in `pidfile`, if it is the one (see DaemonRunning)."""

    pidfile: str
    program: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemoveTree:
    path: str


Action = Run | AddNamespace | DeleteNamespace | WriteFile | StartDaemon | StopDaemon | RemoveTree


# -- how a step knows it is done ----------------------------------------------------------------


@dataclass(frozen=True)
class NamespaceExists:
    name: str


@dataclass(frozen=True)
class LinkExists:
    ns: str | None
    ifname: str


@dataclass(frozen=True)
class LinkUp:
    ns: str | None
    ifname: str


@dataclass(frozen=True)
class PortOf:
    """`ifname` is up and enslaved to `bridge`."""

    ns: str | None
    ifname: str
    bridge: str


@dataclass(frozen=True)
class HasAddress:
    ns: str | None
    ifname: str
    cidr: str  # "10.0.1.3/24"


@dataclass(frozen=True)
class DefaultRoute:
    ns: str | None
    via: str


@dataclass(frozen=True)
class SysctlIs:
    ns: str | None
    key: str
    value: str


@dataclass(frozen=True)
class FileHas:
    path: str
    text: str


@dataclass(frozen=True)
class PathExists:
    path: str


@dataclass(frozen=True)
class FirewallIs:
    """`iptables-save` in `ns` shows exactly the rules of `rules` (iptables-restore text)."""

    ns: str | None
    rules: str


@dataclass(frozen=True)
class DaemonRunning:
    """`program` runs with the PID in `pidfile`, and started after `config` last changed.

    The process is recognised by its /proc/PID/comm being `program`, or, when `args` is given
    (an interpreter's comm says nothing), by its command line holding `args` in a row.
    """

    pidfile: str
    program: str
    config: str | None = None
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Not:
    check: Check


Check = (
    NamespaceExists
    | LinkExists
    | LinkUp
    | PortOf
    | HasAddress
    | DefaultRoute
    | SysctlIs
    | FileHas
    | PathExists
    | FirewallIs
    | DaemonRunning
    | Not
)


@dataclass(frozen=True)
class Step:
    description: str
    done: Check
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class Note:
    """A line to print in order with the steps (something apply deliberately does not do)."""

    text: str


Plan = list[Step | Note]


# -- where things go ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    prefix: str  # "" on this host
    host_ns: str | None  # None: the namespace apply runs in
    state_dir: str
    vlan_devices: bool  # 802.1Q devices on the trunk (this host, where the kernel has them)
    simulate_devices: bool  # stand-in namespaces for physical devices
    uplink_bridge: bool  # the uplink is bridge `brup` in host_ns (else a macvlan on the uplink)

    def ns(self, name: str) -> str:
        return self.prefix + name


def layout_for(
    topology: Topology,
    netns_prefix: str | None,
    *,
    state_root: str = STATE_ROOT,
    kernel_has_8021q: bool = False,
) -> Layout:
    """The layout of `apply --netns-prefix P` (P given) or of apply on this host (None)."""
    if netns_prefix is not None:
        if not netns_prefix or not _PREFIX.match(netns_prefix):
            raise ValueError(f"netns prefix {netns_prefix!r} must be letters, digits, _ . -")
        return Layout(
            prefix=netns_prefix,
            host_ns=netns_prefix + HOST,
            state_dir=f"{state_root}/{netns_prefix}",
            vlan_devices=False,
            simulate_devices=True,
            uplink_bridge=True,
        )
    return Layout(
        prefix="",
        host_ns=None,
        state_dir=f"{state_root}/{topology.name}",
        vlan_devices=kernel_has_8021q,
        simulate_devices=False,
        uplink_bridge=False,
    )


def peer_name(owner: str, ifname: str) -> str:
    """The host-side name of `owner`'s interface `ifname` (at most 15 characters, stable)."""
    name = f"{owner}-{ifname}"
    if len(name) < IFNAMSIZ:
        return name
    digest = hashlib.sha256(f"{owner}/{ifname}".encode()).hexdigest()
    keep = IFNAMSIZ - 1 - len(ifname) - 1 - 4
    if keep >= 2:
        return f"{owner[:keep]}{digest[:4]}-{ifname}"
    return f"v{digest[: IFNAMSIZ - 2]}"


def router_mac(topology: Topology, ifname: str) -> str:
    return mac_for_name(f"{topology.router.name}.{ifname}")


def dhcpd_paths(layout: Layout) -> dict[str, str]:
    d = layout.state_dir
    return {
        "conf": f"{d}/dhcpd.conf",
        "leases": f"{d}/dhcpd.leases",
        "pid": f"{d}/dhcpd.pid",
        "log": f"{d}/dhcpd.log",
        "firewall": f"{d}/router-firewall.rules",
    }


def relay_paths(layout: Layout) -> dict[str, str]:
    d = layout.state_dir
    return {
        "rules": f"{d}/relay-rules.yaml",
        "pid": f"{d}/relay.pid",
        "log": f"{d}/relay.log",
    }


def relay_identity(layout: Layout) -> tuple[str, ...]:
    """What the relay's command line holds in a row (its rules file is in this state dir)."""
    return ("crosscast", "relay", "--rules-file", relay_paths(layout)["rules"])


def relay_argv(topology: Topology, layout: Layout) -> tuple[str, ...]:
    argv = (sys.executable, "-m", *relay_identity(layout), "-ll", "info")
    uses_mesh = any(MESH in (r.ingress, *r.egress) for r in topology.relay_rules)
    # With no peer named, a relay that uses the mesh talks to itself: harmless, and simple.
    return (*argv, "-m", str(RELAY_MESH_PORT)) if uses_mesh else argv


# What the relay started by apply inherits from apply's environment: enough to find and run
# Python, nothing that the relay reads as a setting.
RELAY_INHERITED_ENV = ("PATH", "PYTHONPATH", "HOME", "LANG", "LC_ALL", "TZ")


def _relay_steps(topology: Topology, layout: Layout) -> Plan:
    """The router-mode relay, in the router namespace (netns mode only: on a real host it is
    the router's sidecar container). Without relay rules, one left running is stopped."""
    if layout.host_ns is None:
        if not topology.relay_rules:
            return []
        return [
            Note(
                "the relay is not started on this host: it runs as the router's sidecar "
                "container (compose.yaml, network_mode service:router) with the rendered "
                "relay-rules.yaml as its rules file"
            )
        ]
    paths = relay_paths(layout)
    args = relay_identity(layout)
    router_ns = layout.ns(topology.router.name)
    if not topology.relay_rules:
        return [
            Step(
                f"no {RELAY} (no relay rules)",
                Not(DaemonRunning(paths["pid"], RELAY, args=args)),
                (StopDaemon(paths["pid"], RELAY, args),),
            )
        ]
    rules = render_relay_rules(topology)
    n = len(topology.relay_rules)
    return [
        Step(paths["rules"], FileHas(paths["rules"], rules), (WriteFile(paths["rules"], rules),)),
        Step(
            f"{RELAY} in {router_ns} ({n} rule{'s' * (n != 1)})",
            DaemonRunning(paths["pid"], RELAY, config=paths["rules"], args=args),
            (
                StopDaemon(paths["pid"], RELAY, args),  # one started before its rules changed
                StartDaemon(
                    relay_argv(topology, layout),
                    router_ns,
                    paths["pid"],
                    paths["log"],
                    write_pidfile=True,
                    ready=READY,
                    program=RELAY,
                    args=args,
                    env=(("PYTHONUNBUFFERED", "1"),),
                    # its settings come from its command line and rules file only, not from
                    # whoever ran apply (RULES, MESH_SECRET_FILE, ... in the caller's environment)
                    inherit_env=RELAY_INHERITED_ENV,
                ),
            ),
        ),
    ]


def check_leases(topology: Topology, leases: Mapping[str, IPv4Address]) -> list[str]:
    """Problems with leases passed to apply (unknown container, address off its VLAN)."""
    problems = []
    by_name = {c.name: c for c in topology.containers}
    for name, address in sorted(leases.items()):
        container = by_name.get(name)
        if container is None:
            problems.append(f"lease for {name}: no such container in topology {topology.name}")
            continue
        vlan = topology.vlan(container.vlan)
        if address not in vlan.subnet:
            problems.append(
                f"lease for {name}: {address} is outside VLAN {vlan.name} {vlan.subnet}"
            )
    return problems


# -- the plans ----------------------------------------------------------------------------------


def _cidr(address: IPv4Address, subnet: IPv4Network) -> str:
    return f"{address}/{subnet.prefixlen}"


def _bridge_steps(ns: str | None, bridge: str, address: str) -> list[Step]:
    return [
        Step(
            f"bridge {bridge}",
            LinkExists(ns, bridge),
            (
                Run(
                    (
                        "ip",
                        "link",
                        "add",
                        bridge,
                        "type",
                        "bridge",
                        "mcast_snooping",
                        "1",
                        "mcast_querier",
                        "1",
                    ),
                    ns,
                ),
            ),
        ),
        Step(
            f"{bridge} has {address}",
            HasAddress(ns, bridge, address),
            (Run(("ip", "address", "add", address, "brd", "+", "dev", bridge), ns),),
        ),
        Step(f"{bridge} up", LinkUp(ns, bridge), (Run(("ip", "link", "set", bridge, "up"), ns),)),
    ]


def _plug_steps(
    layout: Layout,
    owner_ns: str,
    owner: str,
    ifname: str,
    mac: str,
    bridge: str,
    cidr: str | None,
) -> list[Step]:
    """A veth from namespace `owner_ns` (as `ifname`) into `bridge` of the host."""
    peer = peer_name(owner, ifname)
    host = layout.host_ns
    steps = [
        Step(
            f"{owner} {ifname} (host side {peer})",
            LinkExists(owner_ns, ifname),
            (
                # Born in its namespace: on this host, `eth0` would clash with the host's own.
                Run(
                    (
                        "ip",
                        "link",
                        "add",
                        peer,
                        "type",
                        "veth",
                        "peer",
                        "name",
                        ifname,
                        "netns",
                        owner_ns,
                    ),
                    host,
                ),
                Run(("ip", "link", "set", ifname, "address", mac), owner_ns),
            ),
        ),
        Step(
            f"{peer} in {bridge}",
            PortOf(host, peer, bridge),
            (Run(("ip", "link", "set", peer, "master", bridge, "up"), host),),
        ),
        Step(
            f"{owner} {ifname} up",
            LinkUp(owner_ns, ifname),
            (Run(("ip", "link", "set", ifname, "up"), owner_ns),),
        ),
    ]
    if cidr is not None:
        steps.append(
            Step(
                f"{owner} {ifname} has {cidr}",
                HasAddress(owner_ns, ifname, cidr),
                (Run(("ip", "address", "add", cidr, "brd", "+", "dev", ifname), owner_ns),),
            )
        )
    return steps


def _namespace_step(name: str) -> Step:
    return Step(f"namespace {name}", NamespaceExists(name), (AddNamespace(name),))


def _vlan_steps(topology: Topology, layout: Layout, vlan: Vlan) -> list[Step]:
    host = layout.host_ns
    steps = _bridge_steps(host, vlan.bridge, _cidr(vlan.gateway, vlan.subnet))
    if layout.vlan_devices:
        dev = vlan.vlan_device(topology.trunk)
        steps[1:1] = [
            Step(
                f"VLAN device {dev}",
                LinkExists(host, dev),
                (
                    Run(
                        (
                            "ip",
                            "link",
                            "add",
                            "link",
                            topology.trunk,
                            "name",
                            dev,
                            "type",
                            "vlan",
                            "id",
                            str(vlan.id),
                        ),
                        host,
                    ),
                ),
            ),
            Step(
                f"{dev} in {vlan.bridge}",
                PortOf(host, dev, vlan.bridge),
                (Run(("ip", "link", "set", dev, "master", vlan.bridge, "up"), host),),
            ),
        ]
    return steps


def plan_apply(
    topology: Topology, layout: Layout, leases: Mapping[str, IPv4Address] | None = None
) -> Plan:
    """Everything apply does, in order; each step is skipped when its check says it is done."""
    return [
        *_host_steps(topology, layout),
        *_router_link_steps(topology, layout),
        *_router_route_steps(topology, layout),
        *_firewall_steps(topology, layout),
        *_dhcpd_steps(topology, layout),
        *_relay_steps(topology, layout),
        *_node_steps(topology, layout, leases or {}),
    ]


def _host_steps(topology: Topology, layout: Layout) -> Plan:
    """The host side: the trunk (or the host namespace), one bridge per VLAN, the uplink bridge."""
    host = layout.host_ns
    up = topology.uplink
    plan: Plan = []
    if host is not None:
        plan.append(_namespace_step(host))
    else:
        plan.append(
            Step(
                f"trunk {topology.trunk} up",
                LinkUp(None, topology.trunk),
                (Run(("ip", "link", "set", topology.trunk, "up")),),
            )
        )
        if not layout.vlan_devices:
            plan.append(
                Note(
                    f"this kernel has no 802.1Q: no VLAN devices on {topology.trunk}, "
                    "the bridges stand alone"
                )
            )
    for vlan in topology.vlans:
        plan += _vlan_steps(topology, layout, vlan)
    if layout.uplink_bridge:
        plan += _bridge_steps(host, UPLINK_BRIDGE, _cidr(up.gateway, up.subnet))
    return plan


def _router_link_steps(topology: Topology, layout: Layout) -> Plan:
    """The router's namespace and its interfaces: one per VLAN, and the uplink."""
    router = topology.router
    router_ns = layout.ns(router.name)
    up = topology.uplink
    plan: Plan = []
    plan.append(_namespace_step(router_ns))
    for vlan in topology.vlans:
        plan += _plug_steps(
            layout,
            router_ns,
            router.name,
            vlan.router_interface,
            router_mac(topology, vlan.router_interface),
            vlan.bridge,
            _cidr(vlan.router_address, vlan.subnet),
        )
    if layout.uplink_bridge:
        plan += _plug_steps(
            layout,
            router_ns,
            router.name,
            up.router_interface,
            router_mac(topology, up.router_interface),
            UPLINK_BRIDGE,
            _cidr(up.router_address, up.subnet),
        )
    else:
        plan += _macvlan_uplink_steps(topology, layout)
    return plan


def _macvlan_uplink_steps(topology: Topology, layout: Layout) -> Plan:
    """Without an uplink bridge: the router's uplink is a macvlan on the host's uplink."""
    router = topology.router
    router_ns = layout.ns(router.name)
    up = topology.uplink
    uplink_cidr = _cidr(up.router_address, up.subnet)
    plan: Plan = []
    temporary = peer_name(router.name, up.router_interface)
    plan += [
        Step(
            f"uplink {up.interface} up",
            LinkUp(None, up.interface),
            (Run(("ip", "link", "set", up.interface, "up")),),
        ),
        Step(
            f"{router.name} {up.router_interface}: macvlan on {up.interface}",
            LinkExists(router_ns, up.router_interface),
            (
                Run(
                    (
                        "ip",
                        "link",
                        "add",
                        temporary,
                        "link",
                        up.interface,
                        "type",
                        "macvlan",
                        "mode",
                        "bridge",
                    ),
                ),
                Run(("ip", "link", "set", temporary, "netns", router_ns)),
                Run(("ip", "link", "set", temporary, "name", up.router_interface), router_ns),
            ),
        ),
        Step(
            f"{router.name} {up.router_interface} up",
            LinkUp(router_ns, up.router_interface),
            (Run(("ip", "link", "set", up.router_interface, "up"), router_ns),),
        ),
        Step(
            f"{router.name} {up.router_interface} has {uplink_cidr}",
            HasAddress(router_ns, up.router_interface, uplink_cidr),
            (
                Run(
                    (
                        "ip",
                        "address",
                        "add",
                        uplink_cidr,
                        "brd",
                        "+",
                        "dev",
                        up.router_interface,
                    ),
                    router_ns,
                ),
            ),
        ),
    ]
    return plan


def _router_route_steps(topology: Topology, layout: Layout) -> Plan:
    """The router's default route (to the uplink gateway) and its sysctls."""
    router = topology.router
    router_ns = layout.ns(router.name)
    up = topology.uplink
    plan: Plan = []
    plan.append(
        Step(
            f"{router.name} default route via {up.gateway}",
            DefaultRoute(router_ns, str(up.gateway)),
            (
                Run(
                    (
                        "ip",
                        "route",
                        "replace",
                        "default",
                        "via",
                        str(up.gateway),
                        "dev",
                        up.router_interface,
                    ),
                    router_ns,
                ),
            ),
        )
    )
    sysctls = dict(router.sysctls)
    sysctls["net.ipv4.ip_forward"] = "1"  # a router whatever the file says
    plan += [
        Step(
            f"{router.name} {key}={value}",
            SysctlIs(router_ns, key, value),
            (Run(("sysctl", "-qw", f"{key}={value}"), router_ns),),
        )
        for key, value in sorted(sysctls.items())
    ]
    return plan


def _firewall_steps(topology: Topology, layout: Layout) -> Plan:
    """The router's firewall: the rendered rules on disk, and loaded."""
    router = topology.router
    router_ns = layout.ns(router.name)
    paths = dhcpd_paths(layout)
    plan: Plan = []
    rules = render_iptables_rules(topology)
    plan += [
        Step(
            f"{paths['firewall']}",
            FileHas(paths["firewall"], rules),
            (WriteFile(paths["firewall"], rules),),
        ),
        Step(
            f"{router.name} firewall loaded",
            FirewallIs(router_ns, rules),
            (Run(("iptables-restore",), router_ns, input=rules),),
        ),
    ]
    return plan


def _dhcpd_steps(topology: Topology, layout: Layout) -> Plan:
    """dhcpd in the router, on its VLAN interfaces, restarted when its config changed."""
    router_ns = layout.ns(topology.router.name)
    paths = dhcpd_paths(layout)
    plan: Plan = []
    conf = render_dhcpd_conf(topology)
    interfaces = tuple(v.router_interface for v in topology.vlans)
    plan += [
        Step(paths["conf"], FileHas(paths["conf"], conf), (WriteFile(paths["conf"], conf),)),
        Step(paths["leases"], PathExists(paths["leases"]), (WriteFile(paths["leases"], ""),)),
        Step(
            f"dhcpd in {router_ns} on {' '.join(interfaces)}",
            DaemonRunning(paths["pid"], "dhcpd", config=paths["conf"]),
            (
                StopDaemon(paths["pid"], "dhcpd"),  # one started before its config changed
                StartDaemon(
                    (
                        "dhcpd",
                        "-4",
                        "-f",
                        "-cf",
                        paths["conf"],
                        "-lf",
                        paths["leases"],
                        "-pf",
                        paths["pid"],
                        *interfaces,
                    ),
                    router_ns,
                    paths["pid"],
                    paths["log"],
                ),
            ),
        ),
    ]
    return plan


def _node_steps(topology: Topology, layout: Layout, leases: Mapping[str, IPv4Address]) -> Plan:
    """Containers, and stand-ins for the physical devices: plugged into their VLAN's bridge."""
    host = layout.host_ns
    plan: Plan = []
    nodes: list[tuple[str, str, str, IPv4Address | None, str]] = []
    for c in topology.containers:
        address = c.address or leases.get(c.name)
        nodes.append(("container", c.name, c.vlan, address, c.effective_mac))
    if layout.simulate_devices:
        nodes += [("device", d.name, d.vlan, d.address, d.effective_mac) for d in topology.devices]
    netns_option = f" --netns {host}" if host is not None else ""
    for kind, name, vlan_name, address, mac in nodes:
        vlan = topology.vlan(vlan_name)
        ns = layout.ns(name)
        plan.append(_namespace_step(ns))
        cidr = _cidr(address, vlan.subnet) if address is not None else None
        plan += _plug_steps(layout, ns, name, "eth0", mac, vlan.bridge, cidr)
        if address is None:
            plan.append(
                Note(
                    f"{name}: no address yet: `crosscast lease {name} --vlan {vlan.name} "
                    f"--interface {vlan.bridge}{netns_option}` gets one (MAC {mac}); "
                    f"then apply again with --lease {name}=ADDRESS"
                    if kind == "container"
                    else f"{name}: no fixed address; it takes one from DHCP"
                )
            )
            continue
        plan.append(
            Step(
                f"{name} default route via {vlan.router_address}",
                DefaultRoute(ns, str(vlan.router_address)),
                (
                    Run(
                        ("ip", "route", "replace", "default", "via", str(vlan.router_address)),
                        ns,
                    ),
                ),
            )
        )
    return plan


def namespaces(topology: Topology, layout: Layout) -> list[str]:
    """Every namespace apply creates, in the order destroy removes them."""
    names = [layout.ns(c.name) for c in topology.containers]
    if layout.simulate_devices:
        names += [layout.ns(d.name) for d in topology.devices]
    names.append(layout.ns(topology.router.name))
    if layout.host_ns is not None:
        names.append(layout.host_ns)
    return names


def plan_destroy(topology: Topology, layout: Layout) -> Plan:
    """Everything destroy does: stop the relay (netns mode) and dhcpd, delete namespaces (and
    on this host, the bridges and VLAN devices), remove the state directory."""
    paths = dhcpd_paths(layout)
    plan: Plan = []
    if layout.host_ns is not None:
        relay = relay_paths(layout)
        plan.append(
            Step(
                f"stop {RELAY}",
                Not(DaemonRunning(relay["pid"], RELAY, args=relay_identity(layout))),
                (StopDaemon(relay["pid"], RELAY, relay_identity(layout)),),
            )
        )
    plan += [
        Step(
            "stop dhcpd",
            Not(DaemonRunning(paths["pid"], "dhcpd")),
            (StopDaemon(paths["pid"], "dhcpd"),),
        )
    ]
    plan += [
        Step(f"delete namespace {name}", Not(NamespaceExists(name)), (DeleteNamespace(name),))
        for name in namespaces(topology, layout)
    ]
    if layout.host_ns is None:
        links: Sequence[str] = [v.bridge for v in topology.vlans]
        if layout.vlan_devices:
            links = [*links, *(v.vlan_device(topology.trunk) for v in topology.vlans)]
        plan += [
            Step(f"delete {link}", Not(LinkExists(None, link)), (Run(("ip", "link", "del", link)),))
            for link in links
        ]
    plan.append(
        Step(
            f"remove {layout.state_dir}",
            Not(PathExists(layout.state_dir)),
            (RemoveTree(layout.state_dir),),
        )
    )
    return plan
