"""`crosscast status` against the relay's own listener on loopback serving a real page: every
sample shown (zeros too), the JSON shape, and the exit statuses."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from crosscast import cli
from crosscast.relay import metrics

PEER = "10.0.0.2"


class Page:
    health = (True, "ok")
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
    """The relay's own /metrics and /healthz listener on loopback, in a thread of its own."""
    page = type("P", (Page,), {})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    server = loop.create_task(
        metrics.serve("127.0.0.1", port, lambda: page.text, lambda: page.health)
    )
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        for _ in range(500):  # until it listens
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}", page
    finally:
        loop.call_soon_threadsafe(server.cancel)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(asyncio.gather(server, return_exceptions=True))
        loop.close()


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
    page.health = (False, "not running: capture eth0")
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
