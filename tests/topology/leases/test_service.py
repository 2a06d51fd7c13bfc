"""The lease client and service against a fake DHCP server on a fake link with a fake clock:
MAC derivation, DORA, the ARP probe, renewal, release."""

from __future__ import annotations

from ipaddress import IPv4Address as IPv4

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from crosscast.topology.leases.binding import LeaseError, Target, UsageError
from crosscast.topology.leases.client import DhcpClient
from crosscast.topology.leases.service import lease, release
from crosscast.topology.leases.store import LeaseStore
from crosscast.topology.model import mac_for_name
from tests.topology.leases.helpers import (
    BRIDGE_MAC,
    FAST,
    SERVER,
    SERVER_MAC,
    SQUATTER_MAC,
    TARGET,
    FakeDhcpServer,
    FakeLink,
    make_binding,
    run_lease,
)

# --- the MAC --------------------------------------------------------------------------------------


def test_mac_for_name_is_stable_across_runs() -> None:
    # sha256("container1") starts 45 4e 61 a0 da: the value must never change between releases.
    assert mac_for_name("container1") == "02:45:4e:61:a0:da"


@pytest.mark.parametrize("name", ["container1", "Container2", "a", "x" * 64, "thermal-cam"])
def test_mac_for_name_is_locally_administered_unicast(name: str) -> None:
    first = int(mac_for_name(name).split(":")[0], 16)
    assert first & 0x02, "locally administered bit"
    assert not first & 0x01, "group (multicast) bit"


def test_mac_for_name_differs_between_names() -> None:
    names = [f"container{i}" for i in range(200)]
    assert len({mac_for_name(n) for n in names}) == len(names)


# --- the client against a fake server ------------------------------------------------------


def test_first_call_does_dora_and_stores_the_binding(store: LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100", "10.0.1.101"])
    link = FakeLink(server)
    outcome = run_lease("container1", store, link)
    assert outcome.action == "leased"
    b = outcome.binding
    assert (b.ip, b.prefix, b.gateway, b.mac) == (
        IPv4("10.0.1.100"),
        24,
        SERVER,
        mac_for_name("container1"),
    )
    assert (b.server_id, b.server_mac, b.lease_time, b.vlan) == (SERVER, SERVER_MAC, 3600, "1")
    assert server.seen == ["discover", "request"]
    assert store.get("container1") == b
    assert link.closed


def test_frames_carry_the_derived_mac_and_the_broadcast_flag(store: LeaseStore) -> None:
    link = FakeLink(FakeDhcpServer(["10.0.1.100"]))
    run_lease("container1", store, link)
    dhcp_frames = [Ether(f) for f in link.sent if Ether(f).type == 0x0800]
    for f in dhcp_frames:
        assert f.src == mac_for_name("container1")
        assert f[BOOTP].chaddr[:6] == bytes.fromhex(mac_for_name("container1").replace(":", ""))
        assert f[BOOTP].flags == 0x8000
        opts = {o[0]: o[1] for o in f[DHCP].options if isinstance(o, tuple)}
        assert opts["hostname"] == b"container1"


def test_the_address_is_arp_probed_before_it_is_used(store: LeaseStore) -> None:
    link = FakeLink(FakeDhcpServer(["10.0.1.100"]))
    run_lease("container1", store, link)
    probes = [Ether(f)[ARP] for f in link.sent if ARP in Ether(f)]
    assert len(probes) == FAST.probe_count
    assert {(p.hwsrc, p.psrc, p.pdst) for p in probes} == {(BRIDGE_MAC, "0.0.0.0", "10.0.1.100")}


def test_an_address_in_use_is_declined_and_another_one_taken(store: LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100", "10.0.1.101"], squatters=("10.0.1.100",))
    notes: list[str] = []
    b = run_lease("container1", store, FakeLink(server), notes=notes).binding
    assert b.ip == IPv4("10.0.1.101")
    assert server.declined == [IPv4("10.0.1.100")]
    assert any("10.0.1.100 is already in use by " + SQUATTER_MAC in n for n in notes)


def test_the_container_itself_holding_the_address_is_not_a_conflict(
    store: LeaseStore,
) -> None:
    # A namespace topology: the container's eth0 (same MAC) already has the address.
    server = FakeDhcpServer(
        ["10.0.1.100"], squatters=("10.0.1.100",), squatter_mac=mac_for_name("container1")
    )
    assert run_lease("container1", store, FakeLink(server)).binding.ip == IPv4("10.0.1.100")
    assert server.declined == []


def test_giving_up_after_every_offer_is_in_use(store: LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100"], squatters=("10.0.1.100",))
    with pytest.raises(LeaseError, match=r"every address offered was in use \(3 declined\)"):
        run_lease("container1", store, FakeLink(server))
    assert store.get("container1") is None


def test_no_server_is_a_lease_error_after_the_retries(store: LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100"])
    server.silent = True
    link = FakeLink(server)
    with pytest.raises(LeaseError, match=r"no DHCPOFFER within 9 s"):
        run_lease("container1", store, link)
    assert len(link.sent) == 3  # the first try and two retries
    assert link.now == pytest.approx(1009.0)


def test_each_retransmission_is_reported(store: LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100"])
    server.silent = True
    notes: list[str] = []
    with pytest.raises(LeaseError):
        run_lease("container1", store, FakeLink(server), notes=notes)
    assert notes == [
        "no answer to DHCPDISCOVER within 3 s: sending it again (1/2)",
        "no answer to DHCPDISCOVER within 3 s: sending it again (2/2)",
    ]


def test_a_renewal_retransmission_names_the_address(store: LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100"])
    run_lease("container1", store, FakeLink(server))
    server.silent = True
    notes: list[str] = []
    run_lease("container1", store, FakeLink(server), notes=notes)
    assert "no answer to DHCPREQUEST renewing 10.0.1.100 within 3 s: sending it again (1/2)" in (
        notes
    )


def test_an_answer_at_the_first_try_reports_no_retransmission(store: LeaseStore) -> None:
    notes: list[str] = []
    run_lease("container1", store, FakeLink(FakeDhcpServer(["10.0.1.100"])), notes=notes)
    assert not any("sending it again" in n for n in notes)


def test_an_exhausted_pool_is_a_lease_error(store: LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100"])
    run_lease("container1", store, FakeLink(server))
    with pytest.raises(LeaseError, match="pool is exhausted"):
        run_lease("container2", store, FakeLink(server))


def test_second_call_renews_the_same_address(store: LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100", "10.0.1.101"])
    first = run_lease("container1", store, FakeLink(server)).binding
    server.seen.clear()
    again = run_lease("container1", store, FakeLink(server))
    assert again.action == "renewed"
    assert (again.binding.ip, again.binding.mac) == (first.ip, first.mac)
    assert server.seen == ["request"]


def test_renewal_without_vlan_uses_the_stored_target(store: LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100"])
    run_lease("container1", store, FakeLink(server))
    opened: list[Target] = []
    link = FakeLink(server)
    lease(
        "container1",
        None,
        store,
        timing=FAST,
        clock=link.clock,
        open_link=lambda t: opened.append(t) or link,
    )
    assert opened == [TARGET]


def test_silent_server_on_renewal_keeps_the_stored_binding(store: LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100"])
    first = run_lease("container1", store, FakeLink(server)).binding
    server.silent = True
    notes: list[str] = []
    again = run_lease("container1", store, FakeLink(server), notes=notes)
    assert again.action == "kept"
    assert again.binding == first
    assert any("keeping the stored binding 10.0.1.100" in n for n in notes)


def test_nak_on_renewal_is_an_error_and_keeps_the_record(store: LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100", "10.0.1.101"])
    run_lease("container1", store, FakeLink(server))
    server.nak_renewals = True
    with pytest.raises(LeaseError, match=r"refused to renew 10\.0\.1\.100 \(DHCPNAK: wrong"):
        run_lease("container1", store, FakeLink(server))
    assert store.get("container1") is not None


def test_nak_with_rebind_gets_a_fresh_lease(store: LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100", "10.0.1.101"])
    run_lease("container1", store, FakeLink(server))
    server.nak_renewals = True
    server.bound.clear()
    outcome = run_lease("container1", store, FakeLink(server), rebind=True)
    assert outcome.action == "leased"
    assert store.get("container1") == outcome.binding


def test_asking_for_another_vlan_than_the_stored_one_is_a_usage_error(
    store: LeaseStore,
) -> None:
    store.put(make_binding())
    with pytest.raises(UsageError, match=r"holds 10\.0\.1\.100 on VLAN 1, not VLAN 2"):
        run_lease("container1", store, FakeLink(FakeDhcpServer([])), Target("2", "br1", None))


def test_release_sends_dhcprelease_to_the_server_and_forgets(store: LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100"])
    run_lease("container1", store, FakeLink(server))
    link = FakeLink(server)
    gone = release("container1", store, open_link=lambda _t: link)
    assert gone.ip == IPv4("10.0.1.100")
    assert server.released == [IPv4("10.0.1.100")]
    frame = Ether(link.sent[0])
    assert (frame.dst, frame[IP].dst, frame[IP].src) == (SERVER_MAC, str(SERVER), "10.0.1.100")
    assert store.get("container1") is None


def test_release_of_an_unknown_name_is_an_error(store: LeaseStore) -> None:
    with pytest.raises(LeaseError, match="no lease recorded for ghost"):
        release("ghost", store)


def test_frames_not_for_us_are_dropped_and_counted() -> None:
    server = FakeDhcpServer(["10.0.1.100"])
    link = FakeLink(server)
    client = DhcpClient(link, mac_for_name("c1"), "c1", timing=FAST, clock=link.clock)
    other = DhcpClient(link, mac_for_name("c2"), "c2", timing=FAST, clock=link.clock)
    other_offer = server.answer(bytes(Ether(src=mac_for_name("c2")) / IP() / UDP() / b""))
    assert other_offer == []  # not DHCP: nothing
    link.queue.extend([b"\x00" * 10, bytes(Ether() / ARP())])
    acked = client.obtain()
    assert acked.ip == IPv4("10.0.1.100")
    assert client.dropped >= 1
    assert other.dropped == 0
