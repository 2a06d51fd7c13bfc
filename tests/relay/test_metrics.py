"""Counters as Prometheus text, and the /metrics and /healthz listener on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter

import pytest

from crosscast.relay import metrics
from crosscast.relay.engine import Drop

Counts = Counter[tuple[str, ...]]


def rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_counters_from_every_source_are_summed_by_key() -> None:
    engine: Counts = Counter({("emitted", "eth2"): 2, ("dropped", Drop.NO_RULE): 1})
    service: Counts = Counter({("dropped", Drop.NO_RULE): 3, ("send_errors", "eth2"): 1})
    text = metrics.render([engine, service], {})
    assert rows(text) == [
        'crosscast_dropped_total{reason="no-rule"} 4',
        'crosscast_emitted_frames_total{interface="eth2"} 2',
        'crosscast_send_errors_total{interface="eth2"} 1',
    ]


def test_every_metric_has_help_and_type_even_with_no_samples() -> None:
    text = metrics.render([], {})
    for name, _labels, help_text in metrics.METRICS.values():
        assert f"# HELP {name} {help_text}\n# TYPE {name} counter\n" in text


def test_a_metric_without_labels_has_no_braces() -> None:
    counts: Counts = Counter({("mesh_received",): 5, ("mesh_receive_errors",): 1})
    text = metrics.render([counts], {})
    assert rows(text) == [
        "crosscast_mesh_receive_errors_total 1",
        "crosscast_mesh_received_total 5",
    ]


def test_label_values_are_escaped() -> None:
    counts: Counts = Counter({("rule", 'a"b\\c\nd'): 1})
    text = metrics.render([counts], {})
    assert rows(text) == ['crosscast_rule_matches_total{rule="a\\"b\\\\c\\nd"} 1']


def test_gauges_follow_the_counters_sorted() -> None:
    text = metrics.render([], {"crosscast_up": 1.0, "crosscast_peers": 3.0})
    assert text.endswith(
        "# TYPE crosscast_peers gauge\ncrosscast_peers 3\n"
        "# TYPE crosscast_up gauge\ncrosscast_up 1\n"
    )


def test_output_does_not_depend_on_the_order_counted() -> None:
    a: Counts = Counter({("emitted", "eth3"): 1, ("emitted", "eth2"): 1})
    b: Counts = Counter({("emitted", "eth2"): 1, ("emitted", "eth3"): 1})
    assert metrics.render([a], {}) == metrics.render([b], {})


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
