"""The relay's composition root against a fake host: what it opens, what it does with what
arrives, what it logs and counts, and how it starts, fails and stops. No root, no kernel."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pytest

from crosscast.net.frames import build_udp_frame, ip_from_str, mac_from_str
from crosscast.relay import READY, eventloop, metrics, service
from crosscast.relay import settings as config
from crosscast.relay.capture import StartupError
from crosscast.relay.engine import TP_STATUS_CSUMNOTREADY, Interface
from crosscast.relay.envelope import encode_snowsignal

from .fakes import FakeHost, FakeResolver

NOW = 1_800_000_000.0
PEER = "10.0.9.2"
ETH0 = Interface("eth0", mac_from_str("02:cc:00:00:00:10"), ip_from_str("10.0.1.3"), 24)
ETH2 = Interface("eth2", mac_from_str("02:cc:00:00:00:12"), ip_from_str("10.0.2.3"), 24)
SENDER_MAC = mac_from_str("02:00:00:00:01:0b")


def frame(
    dst: str = "10.0.1.255",
    port: int = 5076,
    dst_mac: bytes = b"\xff" * 6,
    payload: bytes = b"search",
) -> bytes:
    return build_udp_frame(
        src_mac=SENDER_MAC,
        dst_mac=dst_mac,
        src_ip=ip_from_str("10.0.1.11"),
        dst_ip=ip_from_str(dst),
        src_port=40000,
        dst_port=port,
        payload=payload,
    )


HOSTS: list[FakeHost] = []


@pytest.fixture(autouse=True)
def _close_fake_sockets() -> Iterator[None]:
    yield
    while HOSTS:
        h = HOSTS.pop()
        for sock in (*h.ports, *h.meshes):
            sock.close()


def host(**kw: object) -> FakeHost:
    h = FakeHost(nics={"eth0": ETH0, "eth2": ETH2}, **kw)  # type: ignore[arg-type]
    HOSTS.append(h)
    return h


def settings(*argv: str) -> config.RelaySettings:
    return config.load(list(argv), {})


MESH_RELAY = ("-t", "eth0", "--other-relays", PEER)  # SnowSignal-style: eth0 <-> mesh, 5076
ROUTER = ("--rule", "gps from eth0 to eth2 port 10110")


def runtime(*argv: str, h: FakeHost | None = None) -> service.Runtime:
    return service.Runtime(settings(*argv), h or host(), relay_id=1, clock=lambda: NOW)


def with_peers(rt: service.Runtime) -> service.Runtime:
    asyncio.run(rt.discovery.refresh())
    return rt


# -- start-up ---------------------------------------------------------------------------------


def test_a_router_relay_opens_one_capture_per_interface_and_no_mesh() -> None:
    h = host()
    rt = runtime(*ROUTER, h=h)
    assert sorted(rt.ports) == ["eth0", "eth2"]
    assert [p.name for p in h.ports] == ["eth0", "eth2"]
    assert h.meshes == []
    assert rt.mesh is None


def test_a_mesh_relay_opens_the_mesh_port_it_was_given() -> None:
    h = host()
    rt = runtime(*MESH_RELAY, "-m", "7200", h=h)
    assert [m.port for m in h.meshes] == [7200]
    assert rt.mesh is h.meshes[0]


def test_captures_join_the_groups_their_rules_name() -> None:
    h = host()
    runtime("--rule", "video from eth0 to eth2 group 233.54.12.234 port 22001", h=h)
    assert {p.name: p.groups for p in h.ports} == {
        "eth0": [ip_from_str("233.54.12.234")],
        "eth2": [],
    }


def test_a_failure_to_open_the_mesh_closes_the_captures_already_open() -> None:
    h = host(fail_mesh=True)
    with pytest.raises(StartupError, match="cannot listen on mesh port"):
        runtime(*MESH_RELAY, h=h)
    assert [p.closed for p in h.ports] == [True]


def test_main_reports_a_missing_interface_in_one_line_with_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = service.main(["-t", "eth9"], environ={}, host=host())
    assert status == 2
    assert capsys.readouterr().err == "crosscast relay: interface eth9 does not exist\n"


def test_check_judges_the_interfaces_of_the_host_it_is_given(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert service.main(["-t", "eth2", "--check"], environ={}, host=host()) == 0
    assert service.main(["-t", "eth7", "--check"], environ={}, host=host()) == 2
    assert "interface 'eth7' does not exist" in capsys.readouterr().err


def test_the_environment_given_to_main_is_the_one_read(capsys: pytest.CaptureFixture[str]) -> None:
    assert service.main(["--check"], environ={"MESH_PORT": "7300"}, host=host()) == 0
    assert "mesh port           7300  [env MESH_PORT]" in capsys.readouterr().out


# -- per packet -------------------------------------------------------------------------------


def test_a_captured_broadcast_goes_to_every_peer() -> None:
    rt = with_peers(runtime(*MESH_RELAY))
    port = rt.ports["eth0"]
    port.queued.append((frame(), 0))  # type: ignore[attr-defined]
    rt.on_port_readable(port)
    assert rt.mesh is not None
    assert [peer for _, peer in rt.mesh.sent] == [PEER]  # type: ignore[attr-defined]


def test_a_datagram_from_a_peer_is_written_on_the_interface() -> None:
    rt = with_peers(runtime(*MESH_RELAY))
    assert rt.mesh is not None
    rt.mesh.queued.append((encode_snowsignal(frame()), PEER))  # type: ignore[attr-defined]
    rt.on_mesh_readable()
    (written,) = rt.ports["eth0"].sent  # type: ignore[attr-defined]
    assert written[6:12] == ETH0.mac  # re-emitted with the interface's own MAC


def test_a_datagram_from_a_stranger_is_dropped_as_not_peer() -> None:
    rt = with_peers(runtime(*MESH_RELAY))
    assert rt.mesh is not None
    rt.mesh.queued.append((encode_snowsignal(frame()), "10.0.9.66"))  # type: ignore[attr-defined]
    rt.on_mesh_readable()
    assert rt.ports["eth0"].sent == []  # type: ignore[attr-defined]
    assert rt.counters["dropped", "not-peer"] == 1


def test_a_frame_that_cannot_be_written_is_counted_as_a_send_error() -> None:
    rt = runtime(*ROUTER)
    eth2 = rt.ports["eth2"]

    def refuse(frame: bytes) -> None:
        raise OSError("link down")

    eth2.send = refuse  # type: ignore[method-assign]
    rt.ports["eth0"].queued.append((frame(port=10110), 0))  # type: ignore[attr-defined]
    rt.on_port_readable(rt.ports["eth0"])
    assert rt.counters["send_errors", "eth2"] == 1


def test_an_error_in_the_engine_is_counted_and_the_relay_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt = runtime(*ROUTER)
    calls = []

    def explode(*args: object, **kw: object) -> list[object]:
        calls.append(args)
        raise RuntimeError("bug")

    rt.relay.on_capture = explode  # type: ignore[method-assign,assignment]
    port = rt.ports["eth0"]
    with caplog.at_level(logging.ERROR, "crosscast"):
        for _ in range(2):  # two wake-ups, each a drain of two frames
            port.queued += [(frame(port=10110), 0)] * 2  # type: ignore[attr-defined]
            rt.on_port_readable(port)
    assert len(calls) == 2
    assert rt.counters["internal_errors", "capture"] == 2
    assert len(caplog.records) == 1  # logged the first time only


def test_each_drop_reason_is_logged_once_at_warning_then_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt = runtime(*ROUTER)
    port = rt.ports["eth0"]
    unicast = frame(dst="10.0.1.12", dst_mac=SENDER_MAC)
    port.queued += [(unicast, 0), (unicast, 0), (frame(port=10111), 0)]  # type: ignore[attr-defined]
    with caplog.at_level(logging.DEBUG, "crosscast"):
        rt.on_port_readable(port)
    got = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert got == [
        (
            "WARNING",
            "dropped a frame (not-broadcast) on eth0; further drops are counted, not logged",
        ),
        ("DEBUG", "dropped a frame (not-broadcast) on eth0"),
        ("WARNING", "dropped a frame (no-rule) on eth0; further drops are counted, not logged"),
    ]


def test_a_relay_joining_a_segment_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    other = service.Runtime(settings(*ROUTER), host(), relay_id=9, clock=lambda: NOW)
    rt = runtime(*ROUTER)
    probe = next(frame for name, frame in other.relay.on_tick(NOW).emits if name == "eth0")
    rt.ports["eth0"].queued.append((bytes(probe), 0))  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO, "crosscast"):
        rt.on_port_readable(rt.ports["eth0"])
    assert [r.getMessage() for r in caplog.records] == [
        "relay 0000000000000009 (02:cc:00:00:00:10) shares segment eth0; we forwards for it"
    ]


def test_a_receive_error_is_counted() -> None:
    rt = runtime(*ROUTER)
    port = rt.ports["eth0"]
    port.error = OSError(100, "Network is down")  # type: ignore[attr-defined]
    rt.on_port_readable(port)
    assert rt.counters["dropped", "capture-enetdown"] == 1


# -- interfaces that go away and come back ------------------------------------------------------


def test_an_interface_that_comes_back_is_captured_again_and_health_follows() -> None:
    h = host()
    rt = runtime(*ROUTER, h=h)

    async def cycle() -> list[bool]:
        health = [rt.health()[0]]
        rt._close_port(rt.ports["eth2"])
        health.append(rt.health()[0])
        rt._reopen("eth2")
        health.append(rt.health()[0])
        assert eventloop.readers().unwatch(rt.ports["eth2"].sock.fileno())
        return health

    assert eventloop.run(cycle()) == [True, False, True]
    assert [p.name for p in h.ports] == ["eth0", "eth2", "eth2"]
    assert h.ports[1].closed
    assert not h.ports[2].closed
    assert rt.ports["eth2"] is h.ports[2]


def test_health_names_what_is_not_running() -> None:
    rt = runtime(*ROUTER)
    rt.down.add("capture eth2")
    assert rt.health() == (False, "not running: capture eth2")


# -- the running service ------------------------------------------------------------------------


def test_serve_says_ready_relays_what_arrives_and_stops_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = host(dns=FakeResolver())
    rt = service.Runtime(settings(*MESH_RELAY), h, relay_id=0xAB, clock=time.time)

    ready, sent = asyncio.Event(), asyncio.Event()

    class SetReady(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith(READY):
                ready.set()

    assert rt.mesh is not None
    mesh_send = rt.mesh.send

    def send(datagrams: Sequence[bytes], peers: Iterable[str]) -> None:
        mesh_send(datagrams, peers)
        sent.set()

    rt.mesh.send = send  # type: ignore[method-assign]

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(rt.serve(stop))
        await ready.wait()
        port = rt.ports["eth0"]
        port.queued.append((frame(), 0))  # type: ignore[attr-defined]
        port.wake()  # type: ignore[attr-defined]
        await sent.wait()
        stop.set()
        await task

    handler = SetReady()
    logging.getLogger("crosscast").addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, "crosscast"):
            eventloop.run(asyncio.wait_for(run(), 10))
    finally:
        logging.getLogger("crosscast").removeHandler(handler)
    messages = [r.getMessage() for r in caplog.records]
    line = next(m for m in messages if m.startswith(READY))
    assert line.startswith(f"{READY}: relay 00000000000000ab on eth0 (10.0.1.3); mesh crosscast")
    assert f"peers: {PEER}" in line
    assert messages[-1] == "stopping; counted since start: captured{eth0}=1 rule{snowsignal-out}=1"
    assert h.slices == [100_000]  # --scheduler-slice's default, 100 µs
    assert "scheduler slice: 0.1 ms" in messages
    text = rt.metrics_text()
    assert "crosscast_peers 1.0\n" in text
    assert 'crosscast_captured_frames_total{interface="eth0"} 1.0' in text


def test_a_scheduler_slice_of_0_asks_the_kernel_for_nothing() -> None:
    h = host(dns=FakeResolver())
    rt = service.Runtime(settings(*MESH_RELAY, "--scheduler-slice", "0"), h, clock=time.time)
    stop = asyncio.Event()
    stop.set()
    eventloop.run(asyncio.wait_for(rt.serve(stop), 10))
    assert h.slices == []


def test_every_counter_the_service_keeps_has_a_metric() -> None:
    # A counter key without an entry in metrics.COUNTERS would never be exported.
    rt = with_peers(runtime(*MESH_RELAY))
    assert rt.mesh is not None
    rt.mesh.queued += [  # type: ignore[attr-defined]
        (encode_snowsignal(frame()), PEER),
        (b"junk", PEER),
        (b"junk", "10.0.9.66"),
    ]
    rt.on_mesh_readable()
    rt.ports["eth0"].queued.append((frame(), TP_STATUS_CSUMNOTREADY))  # type: ignore[attr-defined]
    rt.on_port_readable(rt.ports["eth0"])
    keys = {k[0] for source in (rt.counters, rt.relay.counters, rt.mesh.counters) for k in source}
    assert keys <= {*metrics.COUNTERS, "dropped"}
    assert {"captured", "checksum_completed", "emitted", "dropped", "rule", "mesh_received"} <= keys


def test_frames_the_kernel_dropped_are_counted_on_the_tick() -> None:
    rt = runtime(*ROUTER)
    rt.ports["eth0"].kernel_dropped = 7  # type: ignore[attr-defined]
    rt.ports["eth2"].kernel_dropped = 2  # type: ignore[attr-defined]
    rt.ports["eth2"].too_long = 1  # type: ignore[attr-defined]
    rt.ports["eth2"].skipped = 3  # type: ignore[attr-defined]
    rt.ports["eth2"].late = 4  # type: ignore[attr-defined]
    rt._count_kernel_drops()
    rt._count_kernel_drops()  # reading resets the kernel's counter: nothing twice
    assert rt.counters["kernel_drops", "eth0"] == 7
    assert rt.counters["kernel_drops", "eth2"] == 2
    assert rt.counters["dropped", "too-long", "eth2"] == 1
    assert rt.counters["ring_skipped", "eth2"] == 3
    assert rt.counters["capture_late", "eth2"] == 4
    assert 'crosscast_kernel_drops_total{interface="eth0"} 7.0' in rt.metrics_text()
    assert 'crosscast_ring_skipped_slots_total{interface="eth2"} 3.0' in rt.metrics_text()


def test_mesh_datagrams_the_kernel_dropped_are_counted_on_the_tick() -> None:
    rt = runtime(*MESH_RELAY)
    assert rt.mesh is not None
    rt.mesh.socket_dropped = 5  # type: ignore[attr-defined]
    rt._count_kernel_drops()
    rt._count_kernel_drops()
    assert "crosscast_mesh_socket_drops_total 5.0" in rt.metrics_text()


def test_the_mesh_frames_of_one_drain_go_to_each_peer_in_one_datagram() -> None:
    rt = with_peers(runtime(*MESH_RELAY))
    port = rt.ports["eth0"]
    port.queued += [(frame(), 0), (frame(payload=b"search 2"), 0)]  # type: ignore[attr-defined]
    rt.on_port_readable(port)
    assert rt.mesh is not None
    assert [peer for _, peer in rt.mesh.sent] == [PEER]  # type: ignore[attr-defined]
    assert rt.relay.counters["rule", "snowsignal-out"] == 2


def test_a_peer_is_heard_when_its_datagram_arrives_and_its_age_is_exported() -> None:
    now = [NOW]
    rt = service.Runtime(settings(*MESH_RELAY), host(), relay_id=1, clock=lambda: now[0])
    with_peers(rt)
    assert rt.snapshot().peers == {PEER: None}
    assert rt.mesh is not None
    rt.mesh.queued.append((encode_snowsignal(frame()), PEER))  # type: ignore[attr-defined]
    rt.on_mesh_readable()
    now[0] += 2.5
    assert rt.snapshot().peers == {PEER: 2.5}
    assert f'crosscast_peer_last_heard_seconds{{peer="{PEER}"}} 2.5\n' in rt.metrics_text()


def test_a_runtime_with_a_task_down_scrapes_up_0() -> None:
    rt = runtime(*ROUTER)
    rt.down.add("capture eth2")
    assert "\ncrosscast_up 0.0\n" in rt.metrics_text()


# -- --check --format json ----------------------------------------------------------------------


def check_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    status = service.main([*argv, "--check", "--format", "json"], environ={}, host=host())
    out, err = capsys.readouterr()
    assert err == ""
    report: dict[str, Any] = json.loads(out)
    return status, report


def assert_check_shape(report: dict[str, Any]) -> None:
    assert set(report) == {"ok", "problems", "settings", "rules"}
    assert isinstance(report["ok"], bool)
    assert all(isinstance(p, str) for p in report["problems"])
    for value in report["settings"].values():
        assert set(value) == {"value", "origin"}
        assert all(isinstance(v, str) for v in value.values())
    rule_keys = {"name", "from", "to", "ports", "groups", "broadcast", "allow", "deny", "origin"}
    for rule in report["rules"]:
        assert set(rule) == rule_keys


def test_check_json_has_settings_with_origins_and_rules(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, report = check_json(capsys, "--rule", "gps from eth0 to eth2 port 10110", "-m", "7200")
    assert status == 0
    assert_check_shape(report)
    assert (report["ok"], report["problems"]) == (True, [])
    assert report["settings"]["mesh port"] == {"value": "7200", "origin": "command line"}
    assert report["settings"]["log level"] == {"value": "info", "origin": "default"}
    assert report["rules"] == [
        {
            "name": "gps",
            "from": "eth0",
            "to": ["eth2"],
            "ports": [10110],
            "groups": [],
            "broadcast": True,
            "allow": [],
            "deny": [],
            "origin": "--rule #1",
        }
    ]


def test_check_json_reports_problems_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, report = check_json(capsys, "-t", "eth9")
    assert status == 2
    assert_check_shape(report)
    assert report["ok"] is False
    assert len(report["problems"]) == 1
    assert "interface 'eth9' does not exist" in report["problems"][0]
    assert (report["settings"], report["rules"]) == ({}, [])


def test_check_json_reports_a_flag_syntax_error_too(capsys: pytest.CaptureFixture[str]) -> None:
    status, report = check_json(capsys, "--mesh-port", "x")
    assert status == 2
    assert report["ok"] is False
    assert "--mesh-port" in report["problems"][0]
