"""Live reconfiguration against a fake host: SIGHUP reloads, address changes, waiting for
interfaces (issue 9). No root, no kernel."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

import pytest

from crosscast.net.bpf import run_program
from crosscast.net.frames import ip_from_str
from crosscast.relay import eventloop, service
from crosscast.relay import settings as config
from crosscast.relay.capture import StartupError

from .fakes import FakeHost
from .test_service import ETH0, ETH2, NOW, frame, host, settings

GPS = "gps from eth0 to eth2 port 10110"
SENSORS = "sensors from eth0 to eth2 port 6000"


def reloading(h: FakeHost, *rules: str) -> tuple[service.Runtime, Callable[..., None]]:
    """A router relay on `h` whose reload reads `current` (set it with the returned function)."""
    current = {"argv": [a for r in rules for a in ("--rule", r)]}

    def load() -> config.RelaySettings:
        return config.load(current["argv"], {})

    def set_rules(*new: str, argv: list[str] | None = None) -> None:
        current["argv"] = argv if argv is not None else [a for r in new for a in ("--rule", r)]

    rt = service.Runtime(load(), h, relay_id=1, clock=lambda: NOW, reload=load)
    return rt, set_rules


def run(rt: service.Runtime, body: Callable[[], object]) -> object:
    """`body` inside a running loop (the reload adds and removes readers)."""

    async def main() -> object:
        result = body()
        readers = eventloop.readers()
        for port in rt.ports.values():
            readers.unwatch(port.sock.fileno())
        return result

    return eventloop.run(main())


def captured(rt: service.Runtime, iface: str, data: bytes) -> list[tuple[str, bytes]]:
    """What the engine emits for `data` captured on `iface` (a drain of one)."""
    return [(name, bytes(f)) for name, f in rt.relay.on_capture(iface, [(data, 0)], NOW).emits]


def relayed(rt: service.Runtime, port: int) -> list[str]:
    return [name for name, _ in captured(rt, "eth0", frame(port=port))]


def test_a_valid_reload_swaps_the_rules_and_keeps_unchanged_captures() -> None:
    h = host()
    rt, set_rules = reloading(h, GPS)
    eth2 = rt.ports["eth2"]
    assert h.probes_only == {"eth0": False, "eth2": True}  # eth2 is egress only: a small ring
    set_rules(GPS, "sensors from eth2 to eth0 port 6000")
    assert run(rt, rt.reload) is True
    assert rt.ports["eth2"] is not eth2  # its filter now passes 6000: a new capture
    assert eth2.closed
    assert h.probes_only["eth2"] is False  # with a full ring
    set_rules(GPS, "sensors from eth2 to eth0 port 6000", "more from eth0 to eth2 port 10110")
    eth0, eth2 = rt.ports["eth0"], rt.ports["eth2"]
    assert run(rt, rt.reload) is True
    assert (rt.ports["eth0"], rt.ports["eth2"]) == (eth0, eth2)  # same filters: same sockets
    assert rt.counters["reloads",] == 2


def test_a_reload_takes_effect_in_the_engine() -> None:
    h = host()
    rt, set_rules = reloading(h, GPS)
    set_rules("gps from eth0 to eth2 port 10111")
    run(rt, rt.reload)
    assert relayed(rt, 10110) == []
    assert relayed(rt, 10111) == ["eth2"]


def test_a_broken_configuration_is_refused_with_one_line_and_a_counter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = host()
    rt, set_rules = reloading(h, GPS)
    before = dict(rt.ports)
    set_rules("gps from eth0 to eth2 port 99999")
    with caplog.at_level(logging.ERROR, "crosscast"):
        assert run(rt, rt.reload) is False
    assert rt.counters["reload_failures",] == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "reload refused, the old configuration stays: --rule #1: rule 'gps': port 99999 is out "
        "of range 1-65535"
    ]
    assert rt.ports == before
    assert relayed(rt, 10110) == ["eth2"]


def test_a_reload_naming_a_missing_interface_is_refused_and_opens_nothing() -> None:
    h = host()
    rt, set_rules = reloading(h, GPS)
    before, opened = dict(rt.ports), len(h.ports)
    set_rules(GPS, "other from eth0 to eth9 port 7")
    assert run(rt, rt.reload) is False
    assert all(port.closed for port in h.ports[opened:])  # eth0's new capture, closed again
    assert rt.ports == before
    assert not any(port.closed for port in before.values())
    assert rt.counters["reload_failures",] == 1


def test_a_reload_that_drops_an_interface_closes_its_capture() -> None:
    h = host()
    h.nics["eth3"] = dataclasses.replace(ETH2, name="eth3", address=ip_from_str("10.0.3.3"))
    rt, set_rules = reloading(h, GPS, "x from eth0 to eth3 port 7")
    eth3 = rt.ports["eth3"]
    set_rules(GPS)
    assert run(rt, rt.reload) is True
    assert eth3.closed
    assert "eth3" not in rt.ports
    assert "eth3" not in rt.relay.interfaces


def test_a_sighup_handler_error_is_counted_not_raised() -> None:
    h = host()
    rt, _ = reloading(h, GPS)

    def broken() -> config.RelaySettings:
        raise RuntimeError("boom")

    rt._reload = broken
    rt.on_sighup()
    assert rt.counters["reload_failures",] == 1


def test_a_reload_with_other_peers_keeps_the_old_ones_until_the_new_resolve() -> None:
    h = host()
    rt = service.Runtime(
        settings("-t", "eth0", "--other-relays", "10.0.9.2"), h, relay_id=1, clock=lambda: NOW,
        reload=lambda: settings("-t", "eth0", "--other-relays", "10.0.9.3"),
    )  # fmt: skip
    asyncio.run(rt.discovery.refresh())
    assert run(rt, rt.reload) is True
    assert rt.discovery.peers == {"10.0.9.2"}
    asyncio.run(rt.discovery.refresh())
    assert rt.discovery.peers == {"10.0.9.3"}


def test_a_renumbered_interface_gets_a_filter_for_its_new_broadcast_address() -> None:
    h = host()
    rt, _ = reloading(h, "gps from eth2 to eth0 port 10110")
    h.nics["eth0"] = dataclasses.replace(ETH0, address=ip_from_str("10.0.7.3"), prefix_len=16)
    h.addresses = ["10.0.7.3"]
    run(rt, rt.check_interfaces)
    assert rt.relay.interfaces["eth0"].broadcast == ip_from_str("10.0.255.255")
    assert rt.own == {"10.0.7.3"}
    out = captured(rt, "eth2", frame(dst="10.0.2.255", port=10110))
    assert [ip_from_str("10.0.255.255").to_bytes(4, "big")] == [f[30:34] for _, f in out]


def test_a_renumbered_ingress_captures_its_new_broadcast() -> None:
    h = host()
    rt, _ = reloading(h, GPS)
    old = rt.ports["eth0"]
    h.nics["eth0"] = dataclasses.replace(ETH0, address=ip_from_str("10.0.7.3"), prefix_len=24)
    run(rt, rt.check_interfaces)
    assert old.closed
    assert run_program(h.programs["eth0"], frame(dst="10.0.7.255", port=10110))
    assert not run_program(h.programs["eth0"], frame(dst="10.0.1.255", port=10110))


def test_an_unchanged_interface_keeps_its_capture() -> None:
    h = host()
    rt, _ = reloading(h, GPS)
    ports = dict(rt.ports)
    run(rt, rt.check_interfaces)
    assert rt.ports == ports


def test_wait_for_interfaces_returns_when_they_appear() -> None:
    h = FakeHost(nics={"eth0": ETH0})
    looks: list[float] = []

    def sleep(seconds: float) -> None:
        looks.append(seconds)
        if len(looks) == 3:
            h.nics["eth2"] = ETH2

    assert service.wait_for_interfaces(h, ("eth0", "eth2"), sleep=sleep) is True
    assert len(looks) == 3


def test_without_the_option_a_missing_interface_is_still_a_start_up_error() -> None:
    h = FakeHost(nics={"eth0": ETH0})
    with pytest.raises(StartupError, match="interface eth2 does not exist"):
        service.Runtime(settings("--rule", GPS), h)


def test_what_a_replaced_capture_had_queued_is_relayed_before_it_closes() -> None:
    h = host()
    rt, set_rules = reloading(h, GPS)
    old = rt.ports["eth0"]
    old.queued.append((frame(port=10110), False))  # type: ignore[attr-defined]
    set_rules(GPS, "more from eth0 to eth2 port 10111")  # eth0's filter changes
    assert run(rt, rt.reload) is True
    assert old.closed
    assert len(rt.ports["eth2"].sent) == 1  # type: ignore[attr-defined]


def test_the_reload_log_names_only_the_rules_that_changed(caplog: pytest.LogCaptureFixture) -> None:
    rt, set_rules = reloading(host(), GPS, SENSORS)
    set_rules(GPS, "sensors from eth0 to eth2 port 6001")
    with caplog.at_level(logging.INFO, logger="crosscast"):
        assert run(rt, rt.reload) is True
    assert "(added none; removed none; changed sensors)" in caplog.text
