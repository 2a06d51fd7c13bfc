"""The relay's Prometheus exposition (through prometheus_client) and the tiny HTTP listener for
/metrics and /healthz.

Owns the mapping from counter keys to metric names and labels, the collector that turns one
`Snapshot` into metric families, and the listener. It must not be called per packet: the
engine and the sockets count into tuple-keyed Counters (their keys are the interface,
`COUNTERS` below), the Runtime copies them into a Snapshot when /metrics is scraped, and only
then does anything here run. /healthz answers 503 when a capture or receive task is not running
(the service says which through `health()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crosscast import __version__
from crosscast.relay.engine import Drop

# text format 0.0.4, which generate_latest writes (CONTENT_TYPE_LATEST names a newer one)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Spec:
    """One exported counter: its name (without `_total`), the label names taken from the
    counter key's remaining elements in order (a shorter key leaves the rest empty, which
    Prometheus reads as the label being absent), and its help."""

    name: str
    labels: tuple[str, ...]
    help: str


# counter key (its first element) -> the metric it is exported as
COUNTERS: dict[str, Spec] = {
    "captured": Spec(
        "crosscast_captured_frames", ("interface",), "Frames the kernel filter passed to the relay."
    ),
    "captured_bytes": Spec(
        "crosscast_captured_bytes", ("interface",), "Bytes of the frames captured (Ethernet)."
    ),
    "checksum_completed": Spec(
        "crosscast_checksum_completed_frames",
        ("interface",),
        "Captured frames from a local sender whose partial UDP checksum was completed.",
    ),
    "emitted": Spec(
        "crosscast_emitted_frames", ("interface",), "Frames written to a segment, by interface."
    ),
    "emitted_bytes": Spec(
        "crosscast_emitted_bytes", ("interface",), "Bytes of the frames written to a segment."
    ),
    "rule": Spec("crosscast_relayed_frames", ("rule",), "Frames relayed, by forwarding rule."),
    "rule_bytes": Spec("crosscast_relayed_bytes", ("rule",), "Bytes relayed, by forwarding rule."),
    "send_errors": Spec(
        "crosscast_send_errors", ("interface",), "Frames that could not be written to a segment."
    ),
    "kernel_drops": Spec(
        "crosscast_kernel_drops",
        ("interface",),
        "Frames the kernel dropped before the relay read them (PACKET_STATISTICS tp_drops).",
    ),
    "ring_skipped": Spec(
        "crosscast_ring_skipped_slots",
        ("interface",),
        "Receive-ring slots given up on because the kernel moved past them without filling them.",
    ),
    "capture_late": Spec(
        "crosscast_capture_late_frames",
        ("interface",),
        "Captured frames dropped unread because they had waited in the receive ring too long "
        "(the relay could not keep up).",
    ),
    "mesh_late": Spec(
        "crosscast_mesh_late_datagrams",
        (),
        "Mesh datagrams dropped unread because they had queued in the socket too long "
        "(the relay could not keep up).",
    ),
    "mesh_socket_drops": Spec(
        "crosscast_mesh_socket_drops",
        (),
        "Mesh datagrams the kernel dropped because the socket's receive buffer was full.",
    ),
    "mesh_received": Spec(
        "crosscast_mesh_received_datagrams", ("peer",), "Datagrams received from the mesh."
    ),
    "rule_dropped": Spec(
        "crosscast_rule_dropped_frames",
        ("rule", "reason"),
        "Frames a rule matched but did not relay (rate-limit), by rule and reason.",
    ),
    "reloads": Spec("crosscast_reloads", (), "Configurations reloaded on SIGHUP."),
    "reload_failures": Spec(
        "crosscast_reload_failures", (), "SIGHUP reloads refused (the old configuration stays)."
    ),
    "mesh_sent": Spec("crosscast_mesh_sent_datagrams", ("peer",), "Datagrams sent, by peer."),
    "mesh_send_errors": Spec(
        "crosscast_mesh_send_errors", ("peer",), "Datagrams that could not be sent, by peer."
    ),
    "mesh_gso_refused": Spec(
        "crosscast_mesh_gso_refused",
        (),
        "Segmented mesh sends (UDP GSO) the kernel refused; each lowers the size offloaded "
        "from then on (segments over the path MTU) or turns offload off (no support).",
    ),
    "mesh_receive_errors": Spec(
        "crosscast_mesh_receive_errors",
        (),
        "Errors reading the mesh socket (an ICMP error for an earlier send surfaces there).",
    ),
    "decoded": Spec(
        "crosscast_decoded_messages",
        ("protocol", "kind"),
        "Captured discovery messages decoded by --decode-pvaccess, by protocol and kind.",
    ),
    "internal_errors": Spec(
        "crosscast_internal_errors",
        ("where",),
        "Unexpected exceptions caught at a task boundary.",
    ),
}

# ("dropped", reason[, where]) is split by what was dropped: a whole mesh datagram (the
# envelope or its sender was refused, so no frame was ever looked at) or a frame.
DROPPED_FRAMES = Spec(
    "crosscast_dropped_frames", ("reason", "where"), "Frames dropped, by reason and place."
)
DROPPED_DATAGRAMS = Spec(
    "crosscast_mesh_dropped_datagrams", ("reason",), "Mesh datagrams dropped whole, by reason."
)
DATAGRAM_REASONS = frozenset(
    {
        Drop.BAD_MAGIC,
        Drop.BAD_VERSION,
        Drop.BAD_KIND,
        Drop.BAD_TAG,
        Drop.UNEXPECTED_TAG,
        Drop.UNAUTHENTICATED,
        Drop.REPLAY,
        Drop.STALE,
        Drop.HOP_LIMIT,
        Drop.NOT_PEER,
    }
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one scrape exports: the summed counters, whether every task runs, and the current
    peers with the seconds since each was last heard (None: not heard since it became one)."""

    counters: Mapping[tuple[str, ...], float]
    up: bool
    peers: Mapping[str, float | None] = field(default_factory=dict)


def _labels(spec: Spec, values: tuple[str, ...]) -> list[str]:
    padded = [str(v) for v in values[: len(spec.labels)]]
    return padded + [""] * (len(spec.labels) - len(padded))


def families(snapshot: Snapshot, version: str = __version__) -> list[Metric]:
    """The relay's metric families for one snapshot, sorted by name, each with its HELP even
    when it has no sample yet. Counter keys nobody declared are not exported."""
    out: dict[str, CounterMetricFamily] = {
        spec.name: CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        for spec in (*COUNTERS.values(), DROPPED_FRAMES, DROPPED_DATAGRAMS)
    }
    for key, value in sorted(snapshot.counters.items()):
        kind, rest = key[0], key[1:]
        if kind == "dropped":
            datagram = bool(rest) and rest[0] in DATAGRAM_REASONS
            spec = DROPPED_DATAGRAMS if datagram else DROPPED_FRAMES
        elif kind in COUNTERS:
            spec = COUNTERS[kind]
        else:
            continue
        out[spec.name].add_metric(_labels(spec, rest), value)

    build = GaugeMetricFamily(
        "crosscast_build_info", "The running crosscast's version; always 1.", labels=["version"]
    )
    build.add_metric([version], 1)
    up = GaugeMetricFamily(
        "crosscast_up", "1 while every capture, receive and housekeeping task runs, else 0."
    )
    up.add_metric([], 1 if snapshot.up else 0)
    peers = GaugeMetricFamily("crosscast_peers", "Mesh peers the relay sends to now.")
    peers.add_metric([], len(snapshot.peers))
    heard = GaugeMetricFamily(
        "crosscast_peer_last_heard_seconds",
        "Seconds since a datagram last came from each current peer (+Inf: not heard yet).",
        labels=["peer"],
    )
    for peer, age in sorted(snapshot.peers.items()):
        heard.add_metric([peer], math.inf if age is None else age)
    gauges: list[Metric] = [build, up, peers, heard]
    return sorted([*out.values(), *gauges], key=lambda m: m.name)


class RelayCollector(Collector):
    """A prometheus_client collector that asks for a fresh Snapshot on every scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from families(self._snapshot())


def registry(snapshot: Callable[[], Snapshot], *, process: bool = True) -> CollectorRegistry:
    """A registry of our own (not prometheus_client's global one, so two relays in one test
    process do not collide) with the relay's metrics and, on Linux, the process_* metrics."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RelayCollector(snapshot))
    if process:
        ProcessCollector(registry=reg)
    return reg


def exposition(reg: CollectorRegistry) -> str:
    """The registry in the Prometheus text format 0.0.4."""
    return generate_latest(reg).decode()


async def serve(
    address: str,
    port: int,
    metrics: Callable[[], str],
    health: Callable[[], tuple[bool, str]],
) -> None:
    """Serve until cancelled. Requests are tiny; anything unexpected gets a 404 or is closed."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            path = request.split(b" ")[1].decode("ascii", "replace") if b" " in request else ""
            if path == "/metrics":
                status, body = "200 OK", metrics()
            elif path == "/healthz":
                ok, detail = health()
                status, body = ("200 OK" if ok else "503 Service Unavailable"), detail + "\n"
            else:
                status, body = "404 Not Found", "not found\n"
            data = body.encode()
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (OSError, TimeoutError, IndexError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, address, port)
    async with server:
        await server.serve_forever()
