"""`crosscast lease` without root: MAC derivation, the SQLite store, output, and the client's
DORA / ARP-probe / renewal logic against a fake DHCP server on a fake link with a fake clock."""

from __future__ import annotations

import argparse
import ipaddress
import json
import shlex
import subprocess
from collections import deque
from collections.abc import Callable
from pathlib import Path

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from crosscast.topology import leases
from crosscast.topology.model import mac_for_name

IPv4 = ipaddress.IPv4Address
SERVER = IPv4("10.0.1.3")
SERVER_MAC = "02:00:0a:00:01:03"
SQUATTER_MAC = "02:00:0a:00:01:63"
BRIDGE_MAC = "02:00:00:00:00:b0"  # the interface the client runs on
FAST = leases.Timing(exchange_timeout=3.0, retries=2, probe_count=3, probe_window=1.0)


# --- fakes --------------------------------------------------------------------------------------


class FakeDhcpServer:
    """Answers a client's frames the way isc-dhcp-server does, built with scapy."""

    def __init__(
        self, pool: list[str], *, squatters: tuple[str, ...] = (), squatter_mac: str = SQUATTER_MAC
    ) -> None:
        self.free = [IPv4(a) for a in pool]
        self.squatter_mac = squatter_mac
        self.bound: dict[str, IPv4] = {}  # chaddr -> address
        self.squatters = {IPv4(a) for a in squatters}  # answer ARP, as a static host would
        self.silent = False
        self.nak_renewals = False
        self.seen: list[str] = []  # message types received, in order
        self.declined: list[IPv4] = []
        self.released: list[IPv4] = []

    def answer(self, frame: bytes) -> list[bytes]:
        pkt = Ether(frame)
        if ARP in pkt:
            target = IPv4(pkt[ARP].pdst)
            if target in self.squatters:
                return [
                    bytes(
                        Ether(src=self.squatter_mac, dst=pkt.src)
                        / ARP(op=2, hwsrc=self.squatter_mac, psrc=str(target), hwdst=pkt.src)
                    )
                ]
            return []
        if self.silent or DHCP not in pkt:
            return []
        opts = {o[0]: o[1] for o in pkt[DHCP].options if isinstance(o, tuple)}
        kind = {1: "discover", 3: "request", 4: "decline", 7: "release"}[opts["message-type"]]
        self.seen.append(kind)
        mac = pkt.src
        if kind == "discover":
            if mac not in self.bound and not self.free:
                return []  # pool exhausted: isc-dhcp-server logs "no free leases" and is silent
            ip = self.bound.get(mac) or self.free[0]
            return [self._reply(pkt, "offer", ip)]
        if kind == "request":
            ip = IPv4(opts["requested_addr"])
            if "server_id" not in opts and (self.nak_renewals or self.bound.get(mac) != ip):
                return [self._reply(pkt, "nak", IPv4("0.0.0.0"))]
            if ip in self.free:
                self.free.remove(ip)
            self.bound[mac] = ip
            return [self._reply(pkt, "ack", ip)]
        if kind == "decline":
            # isc-dhcp-server abandons a declined address, and hands it out again once the
            # pool has nothing else ("Reclaiming abandoned lease").
            self.declined.append(IPv4(opts["requested_addr"]))
            self.free.append(self.bound.pop(mac))
        if kind == "release":
            self.released.append(IPv4(pkt[BOOTP].ciaddr))
        return []

    def _reply(self, request: Ether, kind: str, ip: IPv4) -> bytes:
        options: list[object] = [("message-type", kind), ("server_id", str(SERVER))]
        if kind != "nak":
            options += [
                ("lease_time", 3600),
                ("subnet_mask", "255.255.255.0"),
                ("router", str(SERVER)),
                ("name_server", "8.8.8.8", "8.8.4.4"),
            ]
        else:
            options.append(("error_message", b"wrong address"))
        return bytes(
            Ether(src=SERVER_MAC, dst="ff:ff:ff:ff:ff:ff")
            / IP(src=str(SERVER), dst="255.255.255.255")
            / UDP(sport=67, dport=68)
            / BOOTP(
                op=2,
                xid=request[BOOTP].xid,
                flags=0x8000,
                yiaddr=str(ip),
                siaddr=str(SERVER),
                chaddr=request[BOOTP].chaddr,
            )
            / DHCP(options=[*options, "end"])
        )


class FakeLink:
    """Frames a send provokes are queued; an empty recv lets the fake clock run out."""

    def __init__(self, server: FakeDhcpServer) -> None:
        self.server = server
        self.mac = BRIDGE_MAC
        self.now = 1000.0
        self.queue: deque[bytes] = deque()
        self.sent: list[bytes] = []
        self.closed = False

    def clock(self) -> float:
        return self.now

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)
        self.queue.extend(self.server.answer(frame))

    def recv(self, timeout: float) -> bytes | None:
        if self.queue:
            return self.queue.popleft()
        self.now += timeout
        return None

    def close(self) -> None:
        self.closed = True


TARGET = leases.Target("1", "br0", "ns-host")


def _lease(
    name: str,
    store: leases.LeaseStore,
    link: FakeLink,
    target: leases.Target | None = TARGET,
    **kw: object,
) -> leases.Outcome:
    notes: list[str] = kw.pop("notes", [])  # type: ignore[assignment]
    return leases.lease(
        name,
        target,
        store,
        timing=FAST,
        now=lambda: 1_700_000_000.0,
        clock=link.clock,
        open_link=lambda _t: link,
        notify=notes.append,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def store(tmp_path: Path) -> leases.LeaseStore:
    return leases.LeaseStore(tmp_path / "sub" / "leases.sqlite3")


def _binding(name: str = "container1", **changes: object) -> leases.Binding:
    values: dict[str, object] = {
        "name": name,
        "mac": mac_for_name(name),
        "ip": IPv4("10.0.1.100"),
        "prefix": 24,
        "gateway": SERVER,
        "vlan": "1",
        "server_id": SERVER,
        "server_mac": SERVER_MAC,
        "lease_time": 3600,
        "obtained_at": 1_700_000_000.0,
        "interface": "br0",
        "netns": None,
        "dns": (IPv4("8.8.8.8"),),
    }
    values.update(changes)
    return leases.Binding(**values)  # type: ignore[arg-type]


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


# --- the store ------------------------------------------------------------------------------------


def test_store_round_trips_a_binding_and_creates_its_directory(
    store: leases.LeaseStore,
) -> None:
    b = _binding(netns="ccl-host", dns=(IPv4("8.8.8.8"), IPv4("8.8.4.4")))
    store.put(b)
    assert store.get("container1") == b


def test_store_survives_reopening(tmp_path: Path) -> None:
    leases.LeaseStore(tmp_path / "l.db").put(_binding())
    assert leases.LeaseStore(tmp_path / "l.db").get("container1") == _binding()


def test_store_put_replaces_the_binding_of_the_same_name(store: leases.LeaseStore) -> None:
    store.put(_binding())
    store.put(_binding(ip=IPv4("10.0.1.101"), gateway=None))
    assert store.all() == [_binding(ip=IPv4("10.0.1.101"), gateway=None)]


def test_store_lists_by_name_and_deletes(store: leases.LeaseStore) -> None:
    store.put(_binding("b"))
    store.put(_binding("a"))
    assert [b.name for b in store.all()] == ["a", "b"]
    assert store.delete("a")
    assert not store.delete("a")
    assert store.get("a") is None


def test_store_in_an_unwritable_place_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(leases.UsageError, match="cannot open the lease database"):
        leases.LeaseStore(tmp_path / "file" / "l.db").all()


# --- output ---------------------------------------------------------------------------------------


def test_env_output_has_the_six_variables() -> None:
    assert leases.format_env(_binding()) == (
        "CROSSCAST_NAME=container1\n"
        "CROSSCAST_MAC=02:45:4e:61:a0:da\n"
        "CROSSCAST_IP=10.0.1.100\n"
        "CROSSCAST_PREFIX=24\n"
        "CROSSCAST_GATEWAY=10.0.1.3\n"
        "CROSSCAST_VLAN=1\n"
    )


def test_env_output_quotes_values_for_eval() -> None:
    nasty = "it's $(rm -rf /) `x`; a b"
    text = leases.format_env(_binding(vlan=nasty, gateway=None))
    out = subprocess.run(
        [
            "sh",
            "-c",
            'eval "$1"; printf "%s|%s" "$CROSSCAST_VLAN" "$CROSSCAST_GATEWAY"',
            "sh",
            text,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == f"{nasty}|"
    assert shlex.split(text.splitlines()[5]) == [f"CROSSCAST_VLAN={nasty}"]


def test_json_output_has_addresses_and_times() -> None:
    data = json.loads(leases.format_json(_binding()))
    assert data["ip"] == "10.0.1.100"
    assert data["subnet"] == "10.0.1.0/24"
    assert data["prefix"] == 24
    assert data["mac"] == "02:45:4e:61:a0:da"
    assert data["obtained_at"] == "2023-11-14T22:13:20+00:00"
    assert data["expires_at"] == "2023-11-14T23:13:20+00:00"
    assert data["dns"] == ["8.8.8.8"]


def test_table_lists_one_row_per_binding_under_a_header() -> None:
    lines = leases.format_table([_binding("a"), _binding("bb", gateway=None)]).splitlines()
    assert lines[0].split() == ["NAME", "VLAN", "ADDRESS", "MAC", "GATEWAY", "SERVER", "EXPIRES"]
    assert lines[1].split()[:3] == ["a", "1", "10.0.1.100/24"]
    assert lines[2].split()[4] == "-"


# --- the client against a fake server ------------------------------------------------------


def test_first_call_does_dora_and_stores_the_binding(store: leases.LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100", "10.0.1.101"])
    link = FakeLink(server)
    outcome = _lease("container1", store, link)
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


def test_frames_carry_the_derived_mac_and_the_broadcast_flag(store: leases.LeaseStore) -> None:
    link = FakeLink(FakeDhcpServer(["10.0.1.100"]))
    _lease("container1", store, link)
    dhcp_frames = [Ether(f) for f in link.sent if Ether(f).type == 0x0800]
    for f in dhcp_frames:
        assert f.src == mac_for_name("container1")
        assert f[BOOTP].chaddr[:6] == bytes.fromhex(mac_for_name("container1").replace(":", ""))
        assert f[BOOTP].flags == 0x8000
        opts = {o[0]: o[1] for o in f[DHCP].options if isinstance(o, tuple)}
        assert opts["hostname"] == b"container1"


def test_the_address_is_arp_probed_before_it_is_used(store: leases.LeaseStore) -> None:
    link = FakeLink(FakeDhcpServer(["10.0.1.100"]))
    _lease("container1", store, link)
    probes = [Ether(f)[ARP] for f in link.sent if ARP in Ether(f)]
    assert len(probes) == FAST.probe_count
    assert {(p.hwsrc, p.psrc, p.pdst) for p in probes} == {(BRIDGE_MAC, "0.0.0.0", "10.0.1.100")}


def test_an_address_in_use_is_declined_and_another_one_taken(store: leases.LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100", "10.0.1.101"], squatters=("10.0.1.100",))
    notes: list[str] = []
    b = _lease("container1", store, FakeLink(server), notes=notes).binding
    assert b.ip == IPv4("10.0.1.101")
    assert server.declined == [IPv4("10.0.1.100")]
    assert any("10.0.1.100 is already in use by " + SQUATTER_MAC in n for n in notes)


def test_the_container_itself_holding_the_address_is_not_a_conflict(
    store: leases.LeaseStore,
) -> None:
    # A namespace topology: the container's eth0 (same MAC) already has the address.
    server = FakeDhcpServer(
        ["10.0.1.100"], squatters=("10.0.1.100",), squatter_mac=mac_for_name("container1")
    )
    assert _lease("container1", store, FakeLink(server)).binding.ip == IPv4("10.0.1.100")
    assert server.declined == []


def test_giving_up_after_every_offer_is_in_use(store: leases.LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100"], squatters=("10.0.1.100",))
    with pytest.raises(leases.LeaseError, match=r"every address offered was in use \(3 declined\)"):
        _lease("container1", store, FakeLink(server))
    assert store.get("container1") is None


def test_no_server_is_a_lease_error_after_the_retries(store: leases.LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100"])
    server.silent = True
    link = FakeLink(server)
    with pytest.raises(leases.LeaseError, match=r"no DHCPOFFER within 9 s"):
        _lease("container1", store, link)
    assert len(link.sent) == 3  # the first try and two retries
    assert link.now == pytest.approx(1009.0)


def test_an_exhausted_pool_is_a_lease_error(store: leases.LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100"])
    _lease("container1", store, FakeLink(server))
    with pytest.raises(leases.LeaseError, match="pool is exhausted"):
        _lease("container2", store, FakeLink(server))


def test_second_call_renews_the_same_address(store: leases.LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100", "10.0.1.101"])
    first = _lease("container1", store, FakeLink(server)).binding
    server.seen.clear()
    again = _lease("container1", store, FakeLink(server))
    assert again.action == "renewed"
    assert (again.binding.ip, again.binding.mac) == (first.ip, first.mac)
    assert server.seen == ["request"]


def test_renewal_without_vlan_uses_the_stored_target(store: leases.LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100"])
    _lease("container1", store, FakeLink(server))
    opened: list[leases.Target] = []
    link = FakeLink(server)
    leases.lease(
        "container1",
        None,
        store,
        timing=FAST,
        clock=link.clock,
        open_link=lambda t: opened.append(t) or link,
    )
    assert opened == [TARGET]


def test_silent_server_on_renewal_keeps_the_stored_binding(store: leases.LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100"])
    first = _lease("container1", store, FakeLink(server)).binding
    server.silent = True
    notes: list[str] = []
    again = _lease("container1", store, FakeLink(server), notes=notes)
    assert again.action == "kept"
    assert again.binding == first
    assert any("keeping the stored binding 10.0.1.100" in n for n in notes)


def test_nak_on_renewal_is_an_error_and_keeps_the_record(store: leases.LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100", "10.0.1.101"])
    _lease("container1", store, FakeLink(server))
    server.nak_renewals = True
    with pytest.raises(leases.LeaseError, match=r"refused to renew 10\.0\.1\.100 \(DHCPNAK: wrong"):
        _lease("container1", store, FakeLink(server))
    assert store.get("container1") is not None


def test_nak_with_rebind_gets_a_fresh_lease(store: leases.LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100", "10.0.1.101"])
    _lease("container1", store, FakeLink(server))
    server.nak_renewals = True
    server.bound.clear()
    outcome = _lease("container1", store, FakeLink(server), rebind=True)
    assert outcome.action == "leased"
    assert store.get("container1") == outcome.binding


def test_asking_for_another_vlan_than_the_stored_one_is_a_usage_error(
    store: leases.LeaseStore,
) -> None:
    store.put(_binding())
    with pytest.raises(leases.UsageError, match=r"holds 10\.0\.1\.100 on VLAN 1, not VLAN 2"):
        _lease("container1", store, FakeLink(FakeDhcpServer([])), leases.Target("2", "br1", None))


def test_release_sends_dhcprelease_to_the_server_and_forgets(store: leases.LeaseStore) -> None:
    server = FakeDhcpServer(["10.0.1.100"])
    _lease("container1", store, FakeLink(server))
    link = FakeLink(server)
    gone = leases.release("container1", store, open_link=lambda _t: link)
    assert gone.ip == IPv4("10.0.1.100")
    assert server.released == [IPv4("10.0.1.100")]
    frame = Ether(link.sent[0])
    assert (frame.dst, frame[IP].dst, frame[IP].src) == (SERVER_MAC, str(SERVER), "10.0.1.100")
    assert store.get("container1") is None


def test_release_of_an_unknown_name_is_an_error(store: leases.LeaseStore) -> None:
    with pytest.raises(leases.LeaseError, match="no lease recorded for ghost"):
        leases.release("ghost", store)


def test_frames_not_for_us_are_dropped_and_counted() -> None:
    server = FakeDhcpServer(["10.0.1.100"])
    link = FakeLink(server)
    client = leases.DhcpClient(link, mac_for_name("c1"), "c1", timing=FAST, clock=link.clock)
    other = leases.DhcpClient(link, mac_for_name("c2"), "c2", timing=FAST, clock=link.clock)
    other_offer = server.answer(bytes(Ether(src=mac_for_name("c2")) / IP() / UDP() / b""))
    assert other_offer == []  # not DHCP: nothing
    link.queue.extend([b"\x00" * 10, bytes(Ether() / ARP())])
    acked = client.obtain()
    assert acked.ip == IPv4("10.0.1.100")
    assert client.dropped >= 1
    assert other.dropped == 0


# --- the command line ---------------------------------------------------------------------------


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="crosscast")
    leases.register_cli(parser.add_subparsers())
    args = parser.parse_args(["lease", *argv])
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["c1"], "no lease recorded for c1: say which VLAN"),
        (["c1", "--vlan", "1"], "--vlan needs --interface IFACE or --topology FILE"),
        (["c1", "--interface", "br0"], "--interface needs --vlan"),
        ([], "give a container NAME, --list, or --release NAME"),
        (["c1", "--vlan", "1", "--interface", "br0", "--timeout", "0"], "--timeout must be"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert _cli(*argv, "--db", str(tmp_path / "l.db")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err


def test_cli_reads_the_database_path_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    leases.LeaseStore(tmp_path / "env.db").put(_binding())
    monkeypatch.setenv("CROSSCAST_LEASE_DB", str(tmp_path / "env.db"))
    assert _cli("--list", "--format", "json") == 0
    assert [b["name"] for b in json.loads(capsys.readouterr().out)] == ["container1"]


def test_cli_unknown_vlan_in_the_topology_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeds = Path(__file__).resolve().parents[2] / "examples" / "topology-seeds.yaml"
    rc = _cli("c1", "--vlan", "7", "--topology", str(seeds), "--db", str(tmp_path / "l.db"))
    assert rc == 2
    assert "no VLAN '7'; it has 1 (vlan1), 2 (vlan2)" in capsys.readouterr().err


def test_cli_vlan_name_maps_to_its_id_and_bridge(tmp_path: Path) -> None:
    seeds = Path(__file__).resolve().parents[2] / "examples" / "topology-seeds.yaml"
    assert leases._bridge_for_vlan(seeds, "vlan2") == ("2", "br1")
    assert leases._bridge_for_vlan(seeds, "1") == ("1", "br0")
