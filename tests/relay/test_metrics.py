"""The relay's Prometheus exposition, read back with prometheus_client's own parser (and
promtool's linter when Debian's prometheus package is installed), and the /metrics and
/healthz listener on loopback."""

from __future__ import annotations

import asyncio
import math
import shutil
import socket
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crosscast import __version__
from crosscast.relay import metrics
from crosscast.relay.engine import Drop


def scrape(snapshot: metrics.Snapshot, *, process: bool = False) -> str:
    return metrics.exposition(metrics.registry(lambda: snapshot, process=process))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, as Prometheus' own parser reads the page."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def families(text: str) -> dict[str, tuple[str, str]]:
    return {f.name: (f.type, f.documentation) for f in text_string_to_metric_families(text)}


def test_frames_and_bytes_relayed_are_exported_per_rule_and_interface() -> None:
    counts = {
        ("rule", "gps"): 3,
        ("rule_bytes", "gps"): 180,
        ("emitted", "eth2"): 3,
        ("emitted_bytes", "eth2"): 180,
        ("captured", "eth0"): 4,
    }
    got = samples(scrape(metrics.Snapshot(counts, up=True)))
    assert got["crosscast_relayed_frames_total", (("rule", "gps"),)] == 3
    assert got["crosscast_relayed_bytes_total", (("rule", "gps"),)] == 180
    assert got["crosscast_emitted_frames_total", (("interface", "eth2"),)] == 3
    assert got["crosscast_emitted_bytes_total", (("interface", "eth2"),)] == 180
    assert got["crosscast_captured_frames_total", (("interface", "eth0"),)] == 4


def test_frame_drops_carry_reason_and_place_and_datagram_drops_are_apart() -> None:
    counts = {
        ("dropped", Drop.NO_RULE, "eth0"): 2,
        ("dropped", Drop.BAD_TAG, "mesh"): 1,
        ("dropped", Drop.NOT_PEER): 5,
    }
    got = samples(scrape(metrics.Snapshot(counts, up=True)))
    frames = "crosscast_dropped_frames_total"
    datagrams = "crosscast_mesh_dropped_datagrams_total"
    assert got[frames, (("reason", "no-rule"), ("where", "eth0"))] == 2
    assert got[datagrams, (("reason", "bad-tag"),)] == 1
    assert got[datagrams, (("reason", "not-peer"),)] == 5
    assert not any(name == frames and ("reason", "bad-tag") in labels for name, labels in got)


def test_a_drop_counted_without_its_place_is_exported_with_the_place_empty() -> None:
    got = samples(scrape(metrics.Snapshot({("dropped", Drop.DUPLICATE): 1}, up=True)))
    # Prometheus reads an empty label as an absent one: the series is still one of a kind.
    assert got["crosscast_dropped_frames_total", (("reason", "duplicate"), ("where", ""))] == 1


def test_kernel_drops_are_exported_per_interface() -> None:
    got = samples(scrape(metrics.Snapshot({("kernel_drops", "eth0"): 7}, up=True)))
    assert got["crosscast_kernel_drops_total", (("interface", "eth0"),)] == 7


def test_build_info_up_and_peers_are_gauges() -> None:
    snap = metrics.Snapshot({}, up=False, peers={"10.0.0.2": 1.5, "10.0.0.3": None})
    text = scrape(snap)
    got = samples(text)
    assert got["crosscast_build_info", (("version", __version__),)] == 1
    assert got["crosscast_up", ()] == 0
    assert got["crosscast_peers", ()] == 2
    assert got["crosscast_peer_last_heard_seconds", (("peer", "10.0.0.2"),)] == 1.5
    assert math.isinf(got["crosscast_peer_last_heard_seconds", (("peer", "10.0.0.3"),)])
    kinds = families(text)
    for name in ("crosscast_build_info", "crosscast_up", "crosscast_peers"):
        assert kinds[name][0] == "gauge"


def test_every_metric_has_help_and_a_type_even_with_no_samples() -> None:
    kinds = families(scrape(metrics.Snapshot({}, up=True)))
    declared = {s.name for s in metrics.COUNTERS.values()}
    declared |= {metrics.DROPPED_FRAMES.name, metrics.DROPPED_DATAGRAMS.name}
    assert declared <= set(kinds)
    for name in declared:
        assert kinds[name][0] == "counter"
        assert kinds[name][1]


def test_a_counter_key_nobody_declared_is_not_exported() -> None:
    got = samples(scrape(metrics.Snapshot({("something_new", "x"): 1}, up=True)))
    assert not any("something_new" in name for name, _ in got)


def test_label_values_are_escaped() -> None:
    got = samples(scrape(metrics.Snapshot({("rule", 'a"b\\c\nd'): 1}, up=True)))
    assert got["crosscast_relayed_frames_total", (("rule", 'a"b\\c\nd'),)] == 1


def test_process_metrics_come_from_prometheus_client() -> None:
    got = samples(scrape(metrics.Snapshot({}, up=True), process=True))
    assert ("process_resident_memory_bytes", ()) in got
    assert ("process_open_fds", ()) in got


def test_output_does_not_depend_on_the_order_counted() -> None:
    a = {("emitted", "eth3"): 1, ("emitted", "eth2"): 1}
    b = {("emitted", "eth2"): 1, ("emitted", "eth3"): 1}
    assert scrape(metrics.Snapshot(a, up=True)) == scrape(metrics.Snapshot(b, up=True))


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus)")
def test_promtool_finds_no_problem_in_the_page() -> None:
    counts = {
        ("rule", "gps"): 3,
        ("rule_bytes", "gps"): 180,
        ("dropped", Drop.NO_RULE, "eth0"): 2,
        ("dropped", Drop.BAD_TAG): 1,
        ("kernel_drops", "eth0"): 1,
        ("mesh_sent", "10.0.0.2"): 4,
        ("mesh_receive_errors",): 1,
    }
    text = scrape(metrics.Snapshot(counts, up=True, peers={"10.0.0.2": 0.5}), process=True)
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout + check.stderr == ""


# -- the HTTP listener ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def get(port: int, request: bytes) -> bytes:
    for _ in range(500):  # the server task may not be listening yet
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except ConnectionRefusedError:
            await asyncio.sleep(0.01)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


@pytest.mark.parametrize(
    ("request_line", "healthy", "status", "body"),
    [
        (b"GET /metrics HTTP/1.0\r\n", True, "200 OK", "crosscast_up 1\n"),
        (b"GET /healthz HTTP/1.0\r\n", True, "200 OK", "ok\n"),
        (b"GET /healthz HTTP/1.0\r\n", False, "503 Service Unavailable", "not running: x\n"),
        (b"GET /other HTTP/1.0\r\n", True, "404 Not Found", "not found\n"),
        (b"nonsense\r\n", True, "404 Not Found", "not found\n"),
    ],
)
def test_the_listener_answers(request_line: bytes, healthy: bool, status: str, body: str) -> None:
    port = free_port()

    def health() -> tuple[bool, str]:
        return (True, "ok") if healthy else (False, "not running: x")

    async def run() -> bytes:
        server = asyncio.create_task(
            metrics.serve("127.0.0.1", port, lambda: "crosscast_up 1\n", health)
        )
        try:
            return await asyncio.wait_for(get(port, request_line), 10)
        finally:
            server.cancel()
            with pytest.raises(asyncio.CancelledError):
                await server

    head, _, got = asyncio.run(run()).decode().partition("\r\n\r\n")
    assert head.startswith(f"HTTP/1.0 {status}\r\n")
    assert f"Content-Length: {len(body)}" in head
    assert got == body
