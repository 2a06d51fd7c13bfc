"""`crosscast topology verify`: the seed architecture's connectivity checks on a live topology.

What it checks, all derived from the topology (who is on which VLAN), never hard-coded:

- the reachability matrix of the seeds' ping table: every container and device reaches the
  others on its VLAN, the router's address on its VLAN and the uplink ("the Internet") through
  the router; the router reaches every one of them; nobody reaches another VLAN's hosts or the
  router's address on another VLAN (unless a firewall exception forwards ICMP there);
- UDP broadcast on each VLAN (the seeds' `nc -ulp 5000` / `nc -u -b` test: "foo" from the
  router's address to the VLAN's broadcast address), and multicast to 233.54.12.234:22001 (the
  socat test: a member joined on eth0, another member sending);
- that broadcast to port 5000 and multicast to the group sent on one VLAN do not arrive on
  another, except for the crossings passed in (`expected_crossings`, empty by default; with the
  router-mode relay running, `crossings_of_relay_rules` gives the ones its rules create), and
  that broadcast to a port no relay rule names and multicast to a group none names never cross
  (each also checked to arrive on its own VLAN, so that "not received" means something).

The derivation (`layout_of`, `expected_pings`, `expected_traffic`) is pure and lives in
crosscast.topology.expect (re-exported here); this module is the probing I/O: it resolves
addresses, runs `ping` in parallel threads, moves datagrams through sockets created inside the
namespaces, and reads apply's state to know whether the relay runs. Only namespace topologies
(`apply --netns-prefix P`) are supported: P+name is the namespace of host `name`, P+"host"
holds the uplink bridge whose address is "the Internet".
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from crosscast.net import netns
from crosscast.topology.expect import (
    BROADCAST_PORT,
    GROUP,
    GROUP_PORT,
    LIMITED_BROADCAST,
    NO,
    OK,
    QUIET_GROUP,
    QUIET_PORT,
    Crossing,
    Datagram,
    Forward,
    IPv4,
    Layout,
    Ping,
    Row,
    Segment,
    crossings_of_relay_rules,
    expected_pings,
    expected_traffic,
    format_table,
    layout_of,
    outcome_word,
)
from crosscast.topology.model import Topology

OnRow = Callable[[Row], None]

# The pure names are re-exported: callers (the CLI, the tests) know verify as one API.
__all__ = [
    "BROADCAST_PORT",
    "CLEAR_LINE",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "GROUP",
    "GROUP_PORT",
    "HOST_NS",
    "LIMITED_BROADCAST",
    "MEMBER_IFACE",
    "NO",
    "OK",
    "QUIET_GROUP",
    "QUIET_PORT",
    "Crossing",
    "Datagram",
    "Expectation",
    "Forward",
    "IPv4",
    "Layout",
    "Ping",
    "Progress",
    "Report",
    "Row",
    "Segment",
    "check",
    "crossings_of_relay_rules",
    "expected_pings",
    "expected_traffic",
    "format_table",
    "layout_of",
    "progress_line",
    "relay_expectation",
    "report_json",
    "row_json",
    "run_verify",
    "write_tables",
]

HOST_NS = "host"  # apply's namespace for the bridges and the uplink gateway
MEMBER_IFACE = "eth0"  # a container's or device's interface in its namespace

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

CLEAR_LINE = "\r\x1b[K"  # carriage return, then ECMA-48 EL: erase to the end of the line
SO_BINDTODEVICE = 25  # asm-generic/socket.h (socket.SO_BINDTODEVICE is missing on some builds)


# --- the relay: is it running? -----------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """What verify expects of the relay, and the line that says so."""

    crossings: tuple[Crossing, ...]
    summary: str


def relay_expectation(
    topology: Topology, netns_prefix: str, *, state_root: str | None = None
) -> Expectation:
    """Expect the crossings of the relay rules when apply started the router-mode relay.

    A relay whose PID file is there but which is no longer running is still expected: apply
    started it for these rules, so its crossings missing is a failure to report, not a reason
    to expect less.
    """
    from crosscast.topology import apply, plan

    nothing = "expecting nothing to cross between VLANs"
    if not topology.relay_rules:
        return Expectation((), f"relay: the topology has no relay rules: {nothing}")
    try:
        layout = plan.layout_for(topology, netns_prefix, state_root=state_root or plan.STATE_ROOT)
    except ValueError:
        return Expectation((), f"relay: {nothing}")
    paths = plan.relay_paths(layout)
    crossings = tuple(crossings_of_relay_rules(topology))
    named = ", ".join(f"{c.kind} {c.source} -> {c.destination}" for c in crossings)
    theirs = f"its rules' crossings: {named or 'none on these ports and groups'}"
    if not Path(paths["pid"]).exists():
        return Expectation((), f"relay: not started ({paths['pid']} absent): {nothing}")
    pid = apply.daemon_pid(paths["pid"], plan.RELAY, plan.relay_identity(layout))
    router = netns_prefix + topology.router.name
    if pid is None:
        return Expectation(
            crossings,
            f"relay: started by apply in {router} but not running (`topology apply` starts it "
            f"again): still expecting {theirs}",
        )
    return Expectation(crossings, f"relay: running in {router} (pid {pid}): expecting {theirs}")


# --- I/O: addresses, pings, datagrams ----------------------------------------------------------


def eth0_address(ns: str, iface: str = MEMBER_IFACE) -> IPv4 | None:
    """The first IPv4 address of `iface` in namespace `ns`, or None."""
    proc = netns.run(["ip", "-j", "-4", "addr", "show", "dev", iface], ns, check=False)
    if proc.returncode != 0:
        return None
    for link in json.loads(proc.stdout or "[]"):
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                return IPv4(a["local"])
    return None


def ping(ns: str, address: IPv4, *, tries: int = 1) -> bool:
    for _ in range(tries):
        proc = netns.run(["ping", "-n", "-q", "-c1", "-W1", str(address)], ns, check=False)
        if proc.returncode == 0:
            return True
    return False


def run_pings(
    prefix: str,
    rows: Sequence[Ping],
    addresses: Mapping[str, IPv4],
    on_row: OnRow = lambda _row: None,
) -> list[Row]:
    """Every ping at once (one thread each): a "No connection" row costs its 1 s only once.
    Each row is handed to `on_row` as it completes; the list comes back in `rows`' order."""

    def one(p: Ping) -> Row:
        target = p.target_address or addresses.get(p.target_host or "")
        if target is None:
            return Row("ping", p.source, p.target, p.expected, False, p.why, "no address")
        # A row expected OK gets a second try: the first echo also pays for ARP and may race it.
        got = ping(prefix + p.source, target, tries=2 if p.expected else 1)
        return Row("ping", p.source, p.target, p.expected, got, p.why)

    with ThreadPoolExecutor(max_workers=max(1, len(rows))) as pool:
        futures = [pool.submit(one, p) for p in rows]
        for done in as_completed(futures):
            on_row(done.result())
        return [f.result() for f in futures]


@contextlib.contextmanager
def _sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        yield opened
    finally:
        for s in opened:
            s.close()


def _listener(ns: str, port: int, groups: Iterable[IPv4]) -> socket.socket:
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            for group in groups:
                # Join on eth0, as socat's ip-add-membership=GROUP:eth0 does (struct ip_mreqn).
                index = socket.if_nametoindex(MEMBER_IFACE)
                mreqn = struct.pack("4s4si", group.packed, bytes(4), index)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            s.setblocking(False)
        except BaseException:
            s.close()
            raise
    return s


def _sender(ns: str, source: IPv4, destination: IPv4) -> socket.socket:
    with netns.inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((str(source), 0))
            if destination.is_multicast:
                # What `ip route add 233.54.12.234/32 dev eth0` does for socat: leave by this
                # address's interface.
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, source.packed)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            else:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        except BaseException:
            s.close()
            raise
    return s


def run_traffic(
    prefix: str,
    rows: Sequence[Datagram],
    addresses: Mapping[str, IPv4],
    *,
    resend: float = 0.2,
    settle: float = 0.5,
    limit: float = 3.0,
    on_row: OnRow = lambda _row: None,
) -> list[Row]:
    """Send every row's datagram, with its own payload, and see which listener got what.

    A row whose datagram arrived is complete then and goes to `on_row` at once (arriving
    cannot be undone); the others go when the wait is over. The list is in `rows`' order.

    All listeners are open before the first send. Every datagram is sent again each `resend`
    seconds: a bridge that snoops IGMP with a querier forwards a group only once the
    listener's membership report has reached it, which a first datagram can outrun. We stop
    `settle` seconds after every expected datagram is in (the unexpected ones get as many
    chances as the expected ones needed, and more), or after `limit` seconds.
    """
    payloads = {i: f"foo #{i}".encode() for i in range(len(rows))}
    received: set[tuple[str, int, bytes]] = set()  # (receiver, port, payload)
    row_of = {(r.receiver, r.port, payloads[i]): i for i, r in enumerate(rows)}
    reported: set[int] = set()

    def result(i: int) -> Row:
        r = rows[i]
        return Row(
            r.test,
            r.source if r.source_address is None else f"{r.source} ({r.source_address})",
            r.target,
            r.expected,
            (r.receiver, r.port, payloads[i]) in received,
            r.why,
            None if i in senders else "source has no address",
        )

    senders: dict[int, socket.socket] = {}
    with _sockets() as opened, selectors.DefaultSelector() as sel:
        # One socket per receiver and port, joined to every group sent to that port.
        listening: dict[tuple[str, int], set[IPv4]] = {}
        for r in rows:
            groups = listening.setdefault((r.receiver, r.port), set())
            if r.destination.is_multicast:
                groups.add(r.destination)
        for (receiver, port), groups in sorted(listening.items()):
            s = _listener(prefix + receiver, port, sorted(groups))
            opened.append(s)
            sel.register(s, selectors.EVENT_READ, (receiver, port))
        for i, r in enumerate(rows):
            source = r.source_address or addresses.get(r.source)
            if source is not None:
                senders[i] = _sender(prefix + r.source, source, r.destination)
                opened.append(senders[i])
        wanted = {(r.receiver, r.port, payloads[i]) for i, r in enumerate(rows) if r.expected}
        start = time.monotonic()
        next_send = start
        quiet_from: float | None = None
        while (now := time.monotonic()) - start < limit:
            if wanted <= received:
                quiet_from = quiet_from or now
                if now - quiet_from >= settle:
                    break
            if now >= next_send:
                for i, sock in senders.items():
                    r = rows[i]
                    if (r.receiver, r.port, payloads[i]) not in received:
                        sock.sendto(payloads[i], (str(r.destination), r.port))
                next_send = now + resend
            for key, _ in sel.select(timeout=min(0.05, max(0.0, next_send - now))):
                receiver, port = key.data
                with contextlib.suppress(BlockingIOError):
                    while True:
                        data = key.fileobj.recv(2048)  # type: ignore[union-attr]
                        received.add((receiver, port, data))
                        index = row_of.get((receiver, port, data))
                        if index is not None and index not in reported:
                            reported.add(index)
                            on_row(result(index))
    for i in range(len(rows)):
        if i not in reported:
            on_row(result(i))
    return [result(i) for i in range(len(rows))]


# --- the command --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    pings: list[Row]
    traffic: list[Row]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in [*self.pings, *self.traffic])


def hosts_of(layout: Layout) -> list[str]:
    return [layout.router, *(m for s in layout.segments for m in s.members)]


def check(
    layout: Layout,
    prefix: str,
    expected_crossings: Iterable[Crossing] = (),
    progress: Progress | None = None,
) -> Report:
    """Run every check against the namespaces of an applied topology; `progress` hears of
    each row as it completes (pings and datagrams run at the same time)."""
    members = [m for s in layout.segments for m in s.members]
    with ThreadPoolExecutor(max_workers=max(1, len(members))) as pool:
        found = dict(
            zip(members, pool.map(lambda m: eth0_address(prefix + m), members), strict=True)
        )
    addresses = {m: a for m, a in found.items() if a is not None}
    ping_rows = expected_pings(layout, addresses)
    traffic_rows = expected_traffic(layout, expected_crossings, addresses)
    on_row: OnRow = lambda _row: None  # noqa: E731 -- the default of run_pings/run_traffic
    if progress is not None:
        progress.start(len(ping_rows) + len(traffic_rows))
        on_row = progress.row
    with ThreadPoolExecutor(max_workers=2) as pool:
        pings = pool.submit(run_pings, prefix, ping_rows, addresses, on_row)
        traffic = run_traffic(prefix, traffic_rows, addresses, on_row=on_row)
        return Report(pings.result(), traffic)


def run_verify(
    topology: Topology,
    netns_prefix: str | None = None,
    *,
    expected_crossings: Iterable[Crossing] = (),
    assumption: str | None = None,
    out: TextIO | None = None,
    output_format: str = "text",
    progress: TextIO | None = None,
) -> int:
    """Print the checks as tables (or one JSON object, `output_format="json"`); 0 if every row
    is as expected, 1 if not, 2 if not applied.

    `assumption` (what the crossings expected stand for, see relay_expectation) is printed on
    the line before the tables. While the checks run, each row is reported on `progress`
    (stderr by default) as it completes, so that the report on `out` stays whole.
    """
    stream = out or sys.stdout
    if netns_prefix is None:
        print(
            "verify: only namespace topologies are supported so far: pass --netns-prefix P",
            file=sys.stderr,
        )
        return EXIT_USAGE
    layout = layout_of(topology)
    missing = [h for h in [HOST_NS, *hosts_of(layout)] if not netns.exists(netns_prefix + h)]
    if missing:
        print(
            f"verify: namespace {netns_prefix}{missing[0]} does not exist"
            f" (apply the topology with --netns-prefix {netns_prefix} first)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    unaddressed = [
        m for s in layout.segments for m in s.members if eth0_address(netns_prefix + m) is None
    ]
    started = time.monotonic()
    reporter = Progress(progress or sys.stderr)
    try:
        report = check(layout, netns_prefix, expected_crossings, reporter)
    finally:
        reporter.close()
    took = time.monotonic() - started
    if output_format == "json":
        doc = report_json(report, assumption, took, [netns_prefix + m for m in unaddressed])
        stream.write(json.dumps(doc, indent=2) + "\n")
    else:
        write_tables(stream, report, assumption, took)
    for m in unaddressed:
        print(f"verify: {netns_prefix}{m} has no address on {MEMBER_IFACE}", file=sys.stderr)
    return EXIT_OK if report.passed else EXIT_FAILED


def write_tables(stream: TextIO, report: Report, assumption: str | None, took: float) -> None:
    """The text report: the assumption, the ping table, the datagram table, the tally."""
    if assumption:
        stream.write(assumption + "\n\n")
    stream.write("Reachability (ping)\n")
    stream.write(format_table(report.pings, with_test=False))
    stream.write("\nBroadcast and multicast (UDP)\n")
    stream.write(format_table(report.traffic, with_test=True))
    rows = [*report.pings, *report.traffic]
    passed = sum(r.passed for r in rows)
    stream.write(f"\n{passed}/{len(rows)} checks as expected in {took:.1f} s\n")


# --- JSON and progress ----------------------------------------------------------------------------


def row_json(row: Row) -> dict[str, object]:
    """One check as JSON: `expected` and `got` are booleans (reached / received)."""
    return {
        "test": row.test,
        "source": row.source,
        "target": row.target,
        "expected": row.expected,
        "got": row.got,
        "passed": row.passed,
        "why": row.why,
        "error": row.error,
    }


def report_json(
    report: Report, assumption: str | None, took: float, unaddressed: Sequence[str] = ()
) -> dict[str, object]:
    """`topology verify --format json` (its shape is documented in the README)."""
    rows = [*report.pings, *report.traffic]
    return {
        "ok": report.passed,
        "relay": assumption,
        "passed": sum(r.passed for r in rows),
        "total": len(rows),
        "seconds": round(took, 3),
        "unaddressed": list(unaddressed),
        "pings": [row_json(r) for r in report.pings],
        "traffic": [row_json(r) for r in report.traffic],
    }


def progress_line(done: int, total: int, row: Row) -> str:
    """One completed check, counted: "[ 7/42] pass  ping  a -> b" (the plain-line form)."""
    verdict = "pass" if row.passed else "FAIL"
    got = row.error or outcome_word(row.test, row.got)
    width = len(str(total))
    return f"[{done:>{width}}/{total}] {verdict}  {row.test}  {row.source} -> {row.target}: {got}"


class Progress:
    """Each check as it completes, on a stream of its own (stderr). On a terminal: one live
    line, rewritten in place, with the failures kept above it; elsewhere (a CI log, a pipe):
    one plain line per check. Rows come from the ping threads and the datagram loop at once,
    hence the lock."""

    def __init__(self, stream: TextIO, *, live: bool | None = None) -> None:
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.total = 0
        self.done = 0
        self.failed = 0
        self._lock = threading.Lock()

    def start(self, total: int) -> None:
        self.total = total
        if not self.live:
            self.stream.write(f"verify: {total} checks\n")
            self.stream.flush()

    def row(self, row: Row) -> None:
        with self._lock:
            self.done += 1
            self.failed += not row.passed
            line = progress_line(self.done, self.total, row)
            if not self.live:
                self.stream.write(f"verify: {line}\n")
            else:
                kept = f"verify: {line}\n" if not row.passed else ""
                tally = f"{self.done}/{self.total} checks, {self.failed} failed"
                self.stream.write(f"{CLEAR_LINE}{kept}verify: {tally}: {line}")
            self.stream.flush()

    def close(self) -> None:
        if self.live and self.done:
            self.stream.write(CLEAR_LINE)
            self.stream.flush()
