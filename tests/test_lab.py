"""The lab's pure parts: the fake Swarm DNS's answers, and the frame oracle agreeing with
crosscast.net.frames on frames both can read (the namespaces themselves are integration/)."""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from crosscast import lab
from crosscast.net import frames


def ask(server: lab.FakeSwarmDns, name: str, rdtype: str = "A") -> dns.message.Message:
    reply = server.answer(dns.message.make_query(name, rdtype).to_wire())
    assert reply is not None
    return dns.message.from_wire(reply)


def addresses(reply: dns.message.Message) -> set[str]:
    return {rr.address for rrset in reply.answer for rr in rrset}


def test_fake_dns_answers_the_table_and_follows_set() -> None:
    server = lab.FakeSwarmDns({"tasks.svc": ["10.0.0.1", "10.0.0.2"]})
    reply = ask(server, "TASKS.svc.")
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == {"10.0.0.1", "10.0.0.2"}
    assert all(rrset.ttl == 0 for rrset in reply.answer)
    server.set("tasks.svc.", ["10.0.0.3"])
    assert addresses(ask(server, "tasks.svc")) == {"10.0.0.3"}


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode"),
    [
        ("tasks.other", "A", dns.rcode.NXDOMAIN),
        ("tasks.svc", "AAAA", dns.rcode.NOERROR),  # the name exists, it has no IPv6 records
        ("tasks.empty", "A", dns.rcode.NOERROR),  # a service with no task yet
    ],
)
def test_fake_dns_answers_nothing_else(name: str, rdtype: str, rcode: int) -> None:
    server = lab.FakeSwarmDns({"tasks.svc": ["10.0.0.1"], "tasks.empty": []})
    reply = ask(server, name, rdtype)
    assert (reply.rcode(), reply.answer) == (rcode, [])


def test_fake_dns_ignores_what_is_not_a_query() -> None:
    assert lab.FakeSwarmDns().answer(b"\x00\x01junk") is None


def test_the_oracle_and_the_codec_agree_on_a_frame() -> None:
    raw = lab.build_udp_frame(
        "02:00:0a:00:00:01", "ff:ff:ff:ff:ff:ff", "10.0.0.1", "10.0.0.255", 40000, 5076, b"x" * 7
    )
    seen = lab.parse_udp_frame(raw)
    assert seen is not None
    assert seen.ip_checksum_ok
    assert seen.udp_checksum_ok
    assert (seen.ip_dst, seen.dport, seen.payload) == ("10.0.0.255", 5076, b"x" * 7)
    parsed = frames.parse_udp_frame(raw)
    assert (frames.ip_to_str(parsed.dst_ip), parsed.dst_port) == ("10.0.0.255", 5076)
    # A frame the relay rewrote (new destination, checksums recomputed) still verifies.
    out = frames.rewrite_for_egress(
        parsed,
        src_mac=frames.mac_from_str("02:00:0a:00:01:01"),
        dst_ip=frames.ip_from_str("10.0.1.255"),
    )
    again = lab.parse_udp_frame(out)
    assert again is not None
    assert again.ip_checksum_ok
    assert again.udp_checksum_ok
    assert again.ip_dst == "10.0.1.255"
    corrupt = bytearray(out)
    corrupt[-1] ^= 0xFF
    broken = lab.parse_udp_frame(bytes(corrupt))
    assert broken is not None
    assert not broken.udp_checksum_ok


def test_relays_do_not_inherit_the_callers_relay_settings() -> None:
    argv = lab.relays.hermetic(["crosscast", "relay"], {"SERVICENAME": "svc"})
    assert argv[0] == "env"
    assert argv[-2:] == ["crosscast", "relay"]
    unset = {argv[i + 1] for i, a in enumerate(argv[:-2]) if a == "-u"}
    assert {"RULES", "RULES_FILE", "MESH_SECRET_FILE", "TARGET_INTERFACE"} <= unset
    assert "SERVICENAME" not in unset  # what the caller passes on purpose stays
