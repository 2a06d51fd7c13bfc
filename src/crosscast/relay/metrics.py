"""Counters as Prometheus text, and the tiny HTTP server for /metrics and /healthz.

Owns the rendering of counters and the HTTP listener; the counters themselves live with the
engine and the sockets that count them. /healthz answers 503 when a capture or receive task is
not running (the service says which through `health()`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterable

# counter key (its first element) -> metric name, label names for the remaining elements, help
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "captured": (
        "crosscast_captured_frames_total",
        ("interface",),
        "frames the kernel filter passed to the relay",
    ),
    "checksum_completed": (
        "crosscast_checksum_completed_total",
        ("interface",),
        "captured frames from a local sender whose partial UDP checksum was completed",
    ),
    "emitted": ("crosscast_emitted_frames_total", ("interface",), "frames written to a segment"),
    "dropped": ("crosscast_dropped_total", ("reason",), "frames and datagrams dropped, by reason"),
    "rule": ("crosscast_rule_matches_total", ("rule",), "frames matched, by rule"),
    "rule_dropped": (
        "crosscast_rule_dropped_total",
        ("rule", "reason"),
        "frames a rule matched but did not relay (rate-limit), by rule and reason",
    ),
    "reloads": ("crosscast_reloads_total", (), "configurations reloaded on SIGHUP"),
    "reload_failures": (
        "crosscast_reload_failures_total",
        (),
        "SIGHUP reloads refused (the old configuration stays)",
    ),
    "mesh_received": ("crosscast_mesh_received_total", (), "datagrams received from peers"),
    "mesh_sent": ("crosscast_mesh_sent_total", ("peer",), "datagrams sent, by peer"),
    "mesh_send_errors": (
        "crosscast_mesh_send_errors_total",
        ("peer",),
        "datagrams that could not be sent, by peer",
    ),
    "mesh_receive_errors": (
        "crosscast_mesh_receive_errors_total",
        (),
        "errors reading the mesh socket (an ICMP error for an earlier send surfaces there)",
    ),
    "send_errors": (
        "crosscast_send_errors_total",
        ("interface",),
        "frames that could not be written to a segment",
    ),
    "decoded": (
        "crosscast_decoded_messages_total",
        ("protocol", "kind"),
        "captured discovery messages decoded by --decode-pvaccess, by protocol and kind",
    ),
    "internal_errors": (
        "crosscast_internal_errors_total",
        ("where",),
        "unexpected exceptions caught at a task boundary",
    ),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(counters: Iterable[Counter[tuple[str, ...]]], gauges: dict[str, float]) -> str:
    """Prometheus text exposition format 0.0.4, sorted so the output is stable."""
    merged: Counter[tuple[str, ...]] = Counter()
    for c in counters:
        merged.update(c)
    lines: list[str] = []
    for key in sorted(METRICS):
        name, labels, help_text = METRICS[key]
        rows = sorted((k, v) for k, v in merged.items() if k[0] == key)
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for k, v in rows:
            pairs = ",".join(
                f'{n}="{_escape(str(x))}"' for n, x in zip(labels, k[1:], strict=False)
            )
            lines.append(f"{name}{{{pairs}}} {v}" if pairs else f"{name} {v}")
    for name, value in sorted(gauges.items()):
        lines += [f"# TYPE {name} gauge", f"{name} {value:g}"]
    return "\n".join(lines) + "\n"


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
                f"HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n"
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
