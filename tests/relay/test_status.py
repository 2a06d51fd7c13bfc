"""`crosscast status` against a loopback HTTP server that serves a real exposition page: every
sample shown (zeros too), the JSON shape, and the exit statuses."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from crosscast import cli
from crosscast.relay import metrics

PEER = "10.0.0.2"


class Page:
    health = (200, "ok")
    text = metrics.exposition(
        metrics.registry(
            lambda: metrics.Snapshot(
                {("rule", "gps"): 3, ("emitted", "eth2"): 0}, up=False, peers={PEER: None}
            ),
            process=False,
        )
    )


@pytest.fixture
def relay() -> Iterator[tuple[str, type[Page]]]:
    page = type("P", (Page,), {})

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code, body = page.health if self.path == "/healthz" else (200, page.text)
            self.send_response(code)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", page
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def status(url: str, *extra: str) -> int:
    return cli.main(["status", "--url", url, *extra])


def test_status_shows_zeros_too(
    relay: tuple[str, type[Page]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = relay
    assert status(url) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "health: ok"
    assert "  crosscast_up 0" in out
    assert '  crosscast_emitted_frames_total{interface="eth2"} 0' in out
    assert '  crosscast_relayed_frames_total{rule="gps"} 3' in out


def test_status_json_has_the_documented_shape(
    relay: tuple[str, type[Page]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = relay
    assert status(url, "--format", "json") == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"url", "healthy", "health", "samples"}
    assert (report["url"], report["healthy"], report["health"]) == (url, True, "ok")
    for sample in report["samples"]:
        assert set(sample) == {"name", "labels", "value"}
        assert isinstance(sample["name"], str)
        assert all(isinstance(v, str) for v in sample["labels"].values())
        assert sample["value"] is None or isinstance(sample["value"], float)
    by_name = {(s["name"], tuple(s["labels"].items())): s["value"] for s in report["samples"]}
    assert by_name["crosscast_up", ()] == 0.0
    # +Inf (a peer not heard yet) is not JSON: it is null
    assert by_name["crosscast_peer_last_heard_seconds", (("peer", PEER),)] is None


def test_an_unhealthy_relay_is_exit_1(
    relay: tuple[str, type[Page]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, page = relay
    page.health = (503, "not running: capture eth0")
    assert status(url, "--format", "json") == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["healthy"], report["health"]) == (False, "not running: capture eth0")


def test_a_page_that_is_not_metrics_is_exit_2(
    relay: tuple[str, type[Page]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, page = relay
    page.text = "<html>hello</html>\n"
    assert status(url) == 2
    assert "is not a metrics page" in capsys.readouterr().err
