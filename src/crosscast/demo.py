"""`crosscast demo`: a throw-away lab in network namespaces that shows what the relay does.

It builds two topologies with `crosscast.lab` (two routed VLANs behind one router, and two
Swarm-like nodes joined by a VXLAN overlay that carries unicast but no broadcast), runs real
`crosscast relay` processes inside them, and checks with real sockets that what a rule allows
crosses (destination rewritten for the egress segment, source MAC the relay's own) and that
nothing else does. Everything it creates carries one random namespace prefix and is removed at
the end, also on Ctrl-C or SIGTERM.

It owns only the demo's story and its output; topologies, processes and sockets are the lab's.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from crosscast import lab
from crosscast.net import netns

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

PREFIX_STEM = "ccdemo"
VLAN_BASE = 231  # VLAN n is 10.231.n.0/24 (inside the demo's namespaces only)
OVERLAY_BASE = 232  # overlay 10.232.10.0/24, underlay 10.232.9.0/24
GPS_PORT = 10110  # NMEA 0183 over UDP
OTHER_PORT = 10111
VIDEO_GROUP = "233.54.12.234"  # the seeds' multicast test group
VIDEO_PORT = 22001
PVA_PORT = 5076  # SnowSignal's default: PVAccess searches
SERVICE = "crosscast"  # the fake Swarm service: relays find each other as tasks.crosscast
ROUTER_RULES = (
    f"gps from br1 to br2 port {GPS_PORT}",
    f"video from br1 to br2 group {VIDEO_GROUP} port {VIDEO_PORT}",
)

START_TIMEOUT = 15.0  # seconds for a relay to log that it is ready
ARRIVAL = 5.0  # seconds a datagram that should cross may take (IGMP snooping, discovery)
RESEND = 0.25  # seconds between re-sends while waiting for an arrival
QUIET = 0.5  # seconds the negative checks listen for what must not arrive


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; the lab is torn down on the way out.

    A BaseException, like KeyboardInterrupt, so that no broad `except Exception` swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "demo",
        help="show broadcast and multicast crossing in a throw-away lab (root, Linux)",
        description="Build two routed VLANs and a two-node Swarm-like overlay in network "
        "namespaces, run crosscast relays in them, check what crosses and what does not, and "
        "remove everything again. Needs root on Linux, iproute2, and a few seconds.",
    )
    p.set_defaults(func=run)


def why_not_here() -> str | None:
    """Why the demo cannot run on this machine, in one line; None when it can."""
    if not sys.platform.startswith("linux"):
        return "needs Linux (network namespaces)"
    if os.geteuid() != 0:
        return "needs root (network namespaces and raw sockets): run it with sudo"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`)"
    return None


def run(_args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The `crosscast demo` command: 0 when every check passed, 1 when one failed, 2 if unable."""
    out = out or sys.stdout
    why = why_not_here()
    if why is not None:
        print(f"crosscast demo: {why}", file=sys.stderr)
        return EXIT_USAGE
    report = Report(out)
    prefix = lab.unique_prefix(PREFIX_STEM)
    report.say(f"crosscast demo: a throw-away lab in network namespaces {prefix}-*")
    interrupted: Interrupted | None = None
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in _SIGNALS}
    try:
        with tempfile.TemporaryDirectory(prefix="crosscast-demo-") as logs:
            _Demo(prefix, Path(logs), report).run()
    except Interrupted as e:
        interrupted = e
        report.say(f"interrupted ({e}): cleaning up")
    except (OSError, subprocess.SubprocessError, RuntimeError, ValueError) as e:
        # A lab that cannot be built (a missing kernel feature, a relay that would not start)
        # is one failed line; the lab is still removed.
        report.fail(f"the demo could not run: {_one_line(e)}")
    finally:
        for sig in _SIGNALS:  # a second Ctrl-C must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        try:
            lab.teardown(prefix)
            left = netns.names(prefix + "-")
            report.check(not left, f"cleanup: every namespace {prefix}-* is gone",
                         f"cleanup: left behind: {' '.join(left)}")  # fmt: skip
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if interrupted is not None:
        return 128 + interrupted.signum
    if report.all_passed:
        report.say(f"all {report.passed} checks passed")
        return EXIT_OK
    report.say(f"{report.failed} of {report.passed + report.failed} checks FAILED")
    return EXIT_FAILED


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _one_line(e: BaseException) -> str:
    if isinstance(e, subprocess.CalledProcessError):
        detail = (e.stderr or "").strip().splitlines()
        return f"`{' '.join(map(str, e.cmd))}` failed" + (f": {detail[-1]}" if detail else "")
    return str(e).strip()


# ---------------------------------------------------------------------------------------------
# Output


@dataclass
class Report:
    """The demo's lines: plain statements, and checks marked ✓/✗ (ok/FAIL without UTF-8)."""

    out: TextIO
    passed: int = 0
    failed: int = 0
    marks: tuple[str, str] = field(init=False)

    def __post_init__(self) -> None:
        encoding = getattr(self.out, "encoding", None) or "ascii"
        try:
            "✓✗".encode(encoding)
            self.marks = ("✓", "✗")
        except (UnicodeEncodeError, LookupError):
            self.marks = ("ok", "FAIL")

    @property
    def all_passed(self) -> bool:
        return self.failed == 0 and self.passed > 0

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def check(self, ok: bool, passed: str, failed: str | None = None) -> bool:
        if ok:
            self.passed += 1
            self.say(f"  {self.marks[0]} {passed}")
        else:
            self.failed += 1
            self.say(f"  {self.marks[1]} {failed or passed}")
        return ok

    def fail(self, line: str) -> None:
        self.check(False, line)


# ---------------------------------------------------------------------------------------------
# The demo itself


def _tag(what: str) -> bytes:
    return f"{what}-{secrets.token_hex(4)}".encode()


@dataclass(frozen=True)
class _Outcome:
    """A check's result, kept until its section is printed."""

    ok: bool
    passed: str
    failed: str


class _Demo:
    """Build both labs, start every relay, then tell the story one section at a time.

    The labs are built and the relays started up front, so that their start-ups overlap; the
    checks that need no relay (a broadcast stays in its segment) run before any relay exists.
    """

    def __init__(self, prefix: str, logs: Path, report: Report) -> None:
        self.prefix = prefix
        self.logs = logs
        self.report = report

    def run(self) -> None:
        say = self.report.say
        vlans = lab.RoutedVlans.build(
            self.prefix, n_vlans=2, hosts_per_vlan=1, relay_hosts=False, base=VLAN_BASE
        )
        isolated = self._isolate(vlans.router, ("br1", "br2"))
        overlay = lab.SwarmOverlay.build(self.prefix, nodes=2, apps_per_node=1, base=OVERLAY_BASE)
        vlan_alone, node_alone = self._baseline(vlans, overlay)

        router_relay = self._start(
            "router", vlans.router, [a for rule in ROUTER_RULES for a in ("--rule", rule)]
        )
        dns = lab.FakeSwarmDns({f"tasks.{SERVICE}": [r.ip for r in overlay.relays]})
        node_relays = []
        for node in overlay.nodes:
            dns.serve_in(node.relay.ns)
            node_relays.append(
                self._start(
                    f"node {node.index}",
                    node.relay.ns,
                    ["-t", "eth0", "-b", str(PVA_PORT), "--discovery-interval", "1"],
                    {"SERVICENAME": SERVICE},
                )
            )

        v1, v2 = vlans.vlans[1].network, vlans.vlans[2].network
        say(
            f"router mode: VLANs {v1} and {v2} on one router"
            + (", which routes nothing between them" if isolated else "")
        )
        self._print(vlan_alone)
        say(f"  relay in the router: {ROUTER_RULES[0]}")
        for rule in ROUTER_RULES[1:]:
            say(f"                       {rule}")
        self._wait_ready(router_relay)
        self._router_checks(vlans, router_relay)

        say(
            f"Swarm mode: 2 nodes, overlay {overlay.overlay.network} (VXLAN: unicast crosses "
            "nodes, broadcast does not)"
        )
        self._print(node_alone)
        say(f"  a relay on each node; they find each other as tasks.{SERVICE}")
        for relay in node_relays:
            self._wait_ready(relay)
        self._swarm_checks(overlay, node_relays[1])

        for relay in (router_relay, *node_relays):
            if relay.proc.poll() is not None:
                self.report.fail(f"the relay {relay.name} exited ({relay.proc.returncode})")
                say(_tail(relay))

    def _print(self, outcome: _Outcome) -> None:
        self.report.check(outcome.ok, outcome.passed, outcome.failed)

    def _check(
        self, ok: bool, passed: str, failed: str, relay: lab.RelayProcess | None = None
    ) -> None:
        self.report.check(ok, passed, failed)
        if not ok and relay is not None:
            self.report.say(f"    the {relay.name} relay's log ends with:\n{_tail(relay)}")

    # -- building -------------------------------------------------------------------------

    def _isolate(self, router_ns: str, bridges: tuple[str, ...]) -> bool:
        """FORWARD DROP between the VLAN bridges, as the seed router's iptables do; without
        iptables the router still forwards no broadcast."""
        if shutil.which("iptables") is None:
            return False
        lab.isolate_vlans(router_ns, bridges)
        return True

    def _start(
        self, name: str, ns: str, args: list[str], env: dict[str, str] | None = None
    ) -> lab.RelayProcess:
        log = self.logs / f"relay-{name.replace(' ', '')}.log"
        return lab.spawn_relay(ns, args, log, log_level="info", env=env, name=name)

    def _wait_ready(self, relay: lab.RelayProcess) -> None:
        try:
            relay.wait_ready(START_TIMEOUT)
        except TimeoutError:
            raise RuntimeError(
                f"the {relay.name} relay did not start; its log ends with:\n{_tail(relay)}"
            ) from None

    def _until_received(
        self, send: Callable[[bytes], None], listener: socket.socket, tag: bytes
    ) -> tuple[bytes, str] | None:
        return lab.send_until_received(send, listener, tag, ARRIVAL, RESEND)

    def _quiet(self, *listeners: tuple[socket.socket, bytes]) -> list[bool]:
        """For each (listener, tag): whether nothing starting with its tag arrived during one
        shared QUIET window (the tags differ, so each listener is read for its own)."""
        deadline = time.monotonic() + QUIET
        return [
            not lab.arrivals({"l": sock}, tag, max(0.0, deadline - time.monotonic()))
            for sock, tag in listeners
        ]

    # -- checks ---------------------------------------------------------------------------

    def _baseline(
        self, vlans: lab.RoutedVlans, overlay: lab.SwarmOverlay
    ) -> tuple[_Outcome, _Outcome]:
        """Before any relay runs: a broadcast is delivered in its own segment and nowhere else."""
        v1, v2 = vlans.hosts[1][0], vlans.hosts[2][0]
        app1, app2 = overlay.nodes[0].apps[0], overlay.nodes[1].apps[0]
        bcast1, bcast = vlans.vlans[1].broadcast, overlay.overlay.broadcast
        listeners = [
            lab.udp_listener(vlans.router, GPS_PORT),  # the router's own address on VLAN 1
            lab.udp_listener(v2.ns, GPS_PORT),
            lab.udp_listener(overlay.nodes[0].relay.ns, PVA_PORT),  # another container on node 1
            lab.udp_listener(app2.ns, PVA_PORT),
        ]
        try:
            tag = _tag("baseline")
            lab.send_broadcast(v1.ns, bcast1, GPS_PORT, tag)
            lab.send_broadcast(app1.ns, bcast, PVA_PORT, tag)
            vlan1_got, node1_got = (
                lab.receive(s, ARRIVAL, lambda d, _s: d == tag) is not None
                for s in (listeners[0], listeners[2])
            )
            vlan2_quiet, node2_quiet = self._quiet((listeners[1], tag), (listeners[3], tag))
        finally:
            for s in listeners:
                s.close()

        def outcome(got: bool, quiet: bool, what: str, here: str, there: str) -> _Outcome:
            return _Outcome(
                got and quiet,
                f"no relay yet: a broadcast to {what} stays on {here}",
                f"no relay yet: a broadcast to {what} "
                + (f"reached {there}" if not quiet else f"was not delivered on {here}"),
            )

        return (
            outcome(vlan1_got, vlan2_quiet, f"{bcast1}:{GPS_PORT}", "VLAN 1", "VLAN 2"),
            outcome(node1_got, node2_quiet, f"{bcast}:{PVA_PORT}", "node 1", "node 2"),
        )

    def _router_checks(self, vlans: lab.RoutedVlans, relay: lab.RelayProcess) -> None:
        v1, v2 = vlans.hosts[1][0], vlans.hosts[2][0]
        bcast1, bcast2 = vlans.vlans[1].broadcast, vlans.vlans[2].broadcast
        br2_mac = lab.link_mac(vlans.router, "br2")
        gps2 = lab.udp_listener(v2.ns, GPS_PORT)
        other2 = lab.udp_listener(v2.ns, OTHER_PORT)
        gps1 = lab.udp_listener(v1.ns, GPS_PORT)
        video2 = lab.multicast_listener(v2.ns, VIDEO_GROUP, VIDEO_PORT)
        try:
            with lab.sniff(v2.ns) as wire2:
                tag = _tag("gps")
                got = self._until_received(
                    lambda p: lab.send_broadcast(v1.ns, bcast1, GPS_PORT, p), gps2, tag
                )
                frame = wire2.wait_for(lambda f: f.payload.startswith(tag), 1.0) if got else None
            what = f"broadcast to {bcast1}:{GPS_PORT}"
            self._check(
                frame is not None
                and (frame.ip_dst, frame.ip_src, frame.src_mac) == (bcast2, v1.ip, br2_mac),
                f"{what} reaches VLAN 2 as {bcast2} (source MAC: the router's)",
                f"{what} never reached VLAN 2"
                if frame is None
                else f"{what} reached VLAN 2 as {frame.ip_dst} from {frame.ip_src} via MAC "
                f"{frame.src_mac} (expected {bcast2} from {v1.ip} via {br2_mac})",
                relay,
            )

            tag = _tag("video")
            got = self._until_received(
                lambda p: lab.send_multicast(v1.ns, VIDEO_GROUP, VIDEO_PORT, p), video2, tag
            )
            self._check(
                got is not None and got[1] == v1.ip,
                f"multicast to {VIDEO_GROUP}:{VIDEO_PORT} reaches a member on VLAN 2",
                f"multicast to {VIDEO_GROUP}:{VIDEO_PORT} never reached the member on VLAN 2",
                relay,
            )

            other, unicast, back = _tag("other-port"), _tag("unicast"), _tag("way-back")
            lab.send_broadcast(v1.ns, bcast1, OTHER_PORT, other)
            lab.send_udp(v1.ns, vlans.gateway(1), GPS_PORT, unicast)  # the relay captures br1
            lab.send_broadcast(v2.ns, bcast2, GPS_PORT, back)
            quiet = self._quiet((other2, other), (gps2, unicast), (gps1, back))
        finally:
            for s in (gps2, other2, gps1, video2):
                s.close()
        for ok, (passed, failed) in zip(
            quiet,
            (
                (
                    f"a broadcast to port {OTHER_PORT} (no rule) stays on VLAN 1",
                    f"a broadcast to port {OTHER_PORT} (no rule) reached VLAN 2",
                ),
                (
                    f"a unicast to port {GPS_PORT} is not relayed",
                    f"a unicast to port {GPS_PORT} reached VLAN 2",
                ),
                (
                    f"a broadcast to port {GPS_PORT} on VLAN 2 stays there (rules are one-way)",
                    f"a broadcast to port {GPS_PORT} on VLAN 2 reached VLAN 1",
                ),
            ),
            strict=True,
        ):
            self._check(ok, passed, failed, relay)

    def _swarm_checks(self, overlay: lab.SwarmOverlay, relay: lab.RelayProcess) -> None:
        app1, app2 = overlay.nodes[0].apps[0], overlay.nodes[1].apps[0]
        relay2 = overlay.nodes[1].relay
        bcast = overlay.overlay.broadcast
        pva2, other2 = lab.udp_listener(app2.ns, PVA_PORT), lab.udp_listener(app2.ns, PVA_PORT + 1)
        try:
            with lab.sniff(app2.ns) as wire2:
                tag = _tag("pva")
                got = self._until_received(
                    lambda p: lab.send_broadcast(app1.ns, bcast, PVA_PORT, p), pva2, tag
                )
                frame = wire2.wait_for(lambda f: f.payload.startswith(tag), 1.0) if got else None
            what = f"broadcast to {bcast}:{PVA_PORT} on node 1"
            self._check(
                frame is not None and (frame.ip_src, frame.src_mac) == (app1.ip, relay2.mac),
                f"{what} reaches node 2 (source MAC: node 2's relay)",
                f"{what} never reached node 2"
                if frame is None
                else f"{what} reached node 2 from {frame.ip_src} via MAC {frame.src_mac} "
                f"(expected {app1.ip} via {relay2.mac})",
                relay,
            )
            other = _tag("other-port")
            lab.send_broadcast(app1.ns, bcast, PVA_PORT + 1, other)
            (quiet,) = self._quiet((other2, other))
        finally:
            pva2.close()
            other2.close()
        text = f"a broadcast to port {PVA_PORT + 1} stays on node 1"
        self._check(quiet, text, f"a broadcast to port {PVA_PORT + 1} reached node 2", relay)


def _tail(relay: lab.RelayProcess, lines: int = 8) -> str:
    return "\n".join(f"      | {line}" for line in relay.last_lines(lines))
