"""The DHCP client codec against frames scapy builds and parses (scapy is used here only)."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet

from crosscast.net.frames import FrameError, mac_from_str, parse_udp_frame
from crosscast.topology.leases import dhcp

MAC = "02:11:22:33:44:55"
SERVER_MAC = "02:aa:bb:cc:dd:ee"
IP1 = ipaddress.IPv4Address("10.0.1.7")
SERVER = ipaddress.IPv4Address("10.0.1.3")
XID = 0x1234ABCD


def _opts(pkt: BOOTP) -> dict[str, object]:
    return {o[0]: o[1] for o in pkt[DHCP].options if isinstance(o, tuple)}


def _scapy_reply(message_type: str, *extra: tuple[object, ...]) -> bytes:
    options: list[object] = [("message-type", message_type), *extra, "end"]
    return bytes(
        BOOTP(
            op=2,
            xid=XID,
            flags=0x8000,
            yiaddr=str(IP1),
            siaddr=str(SERVER),
            chaddr=mac_from_str(MAC) + bytes(10),
        )
        / DHCP(options=options)
    )


def test_discover_is_a_broadcast_bootrequest_with_identity_options() -> None:
    pkt = BOOTP(dhcp.build_discover(XID, MAC, hostname="container1"))
    assert (pkt.op, pkt.htype, pkt.hlen, pkt.xid, pkt.flags) == (1, 1, 6, XID, 0x8000)
    assert pkt.chaddr[:6] == mac_from_str(MAC)
    opts = _opts(pkt)
    assert opts["message-type"] == 1
    assert opts["client_id"] == b"\x01" + mac_from_str(MAC)
    assert opts["hostname"] == b"container1"
    assert 3 in opts["param_req_list"]  # type: ignore[operator]


def test_discover_is_padded_to_the_bootp_minimum() -> None:
    assert len(dhcp.build_discover(XID, MAC)) >= 300


def test_request_in_selecting_state_names_the_server_and_the_offer() -> None:
    pkt = BOOTP(dhcp.build_request(XID, MAC, IP1, server_id=SERVER, hostname="c1"))
    opts = _opts(pkt)
    assert opts["message-type"] == 3
    assert opts["requested_addr"] == str(IP1)
    assert opts["server_id"] == str(SERVER)
    assert pkt.ciaddr == "0.0.0.0"
    assert pkt.flags == 0x8000


def test_request_in_init_reboot_state_has_no_server_id() -> None:
    opts = _opts(BOOTP(dhcp.build_request(XID, MAC, IP1)))
    assert opts["requested_addr"] == str(IP1)
    assert "server_id" not in opts


def test_decline_names_the_address_and_server() -> None:
    opts = _opts(BOOTP(dhcp.build_decline(XID, MAC, IP1, SERVER)))
    assert opts["message-type"] == 4
    assert (opts["requested_addr"], opts["server_id"]) == (str(IP1), str(SERVER))


def test_release_carries_the_address_in_ciaddr() -> None:
    pkt = BOOTP(dhcp.build_release(XID, MAC, IP1, SERVER))
    assert pkt.ciaddr == str(IP1)
    opts = _opts(pkt)
    assert opts["message-type"] == 7
    assert opts["server_id"] == str(SERVER)


def test_parse_ack_reads_every_lease_option() -> None:
    reply = dhcp.parse_reply(
        _scapy_reply(
            "ack",
            ("server_id", str(SERVER)),
            ("lease_time", 3600),
            ("subnet_mask", "255.255.255.0"),
            ("router", str(SERVER)),
            ("name_server", "8.8.8.8", "8.8.4.4"),
        )
    )
    assert reply.message_type is dhcp.MessageType.ACK
    assert reply.xid == XID
    assert reply.chaddr == MAC
    assert reply.yiaddr == IP1
    assert reply.server_id == SERVER
    assert reply.lease_time == 3600
    assert reply.subnet_mask == ipaddress.IPv4Address("255.255.255.0")
    assert reply.prefix_length == 24
    assert reply.router == SERVER
    assert reply.dns == (ipaddress.IPv4Address("8.8.8.8"), ipaddress.IPv4Address("8.8.4.4"))


def test_parse_offer_without_optional_options() -> None:
    reply = dhcp.parse_reply(_scapy_reply("offer"))
    assert reply.message_type is dhcp.MessageType.OFFER
    assert (reply.server_id, reply.lease_time, reply.router, reply.dns) == (None, None, None, ())
    assert reply.prefix_length is None


def test_parse_nak_keeps_the_servers_message() -> None:
    reply = dhcp.parse_reply(_scapy_reply("nak", ("error_message", b"wrong network")))
    assert reply.message_type is dhcp.MessageType.NAK
    assert reply.message == "wrong network"


def test_parse_reads_options_overloaded_into_the_file_field() -> None:
    file_options = bytes([51, 4, 0, 0, 0x0E, 0x10, 255])
    pkt = BOOTP(op=2, xid=XID, yiaddr=str(IP1), chaddr=mac_from_str(MAC), file=file_options) / DHCP(
        options=[("message-type", "ack"), ("dhcp-option-overload", 1), "end"]
    )
    assert dhcp.parse_reply(bytes(pkt)).lease_time == 3600


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("truncated", _scapy_reply("ack")[:200]),
        ("a request", bytes(BOOTP(op=1) / DHCP(options=[("message-type", "ack"), "end"]))),
        ("no cookie", bytes(BOOTP(op=2, chaddr=mac_from_str(MAC)))),
        ("no message type", bytes(BOOTP(op=2) / DHCP(options=[("lease_time", 5), "end"]))),
        ("option runs past the end", _scapy_reply("ack").rstrip(b"\x00")[:-1] + b"\x33\x09"),
    ],
)
def test_parse_rejects_malformed_messages(what: str, message: bytes) -> None:
    with pytest.raises(ValueError, match=r".+"):
        dhcp.parse_reply(message)


def test_client_frame_is_valid_ethernet_ip_udp_for_scapy() -> None:
    message = dhcp.build_discover(XID, MAC)
    frame = Ether(dhcp.client_frame(message, MAC))
    assert (frame.src, frame.dst) == (MAC, "ff:ff:ff:ff:ff:ff")
    assert (frame[IP].src, frame[IP].dst) == ("0.0.0.0", "255.255.255.255")
    assert (frame[UDP].sport, frame[UDP].dport) == (68, 67)
    ip_sum, udp_sum = frame[IP].chksum, frame[UDP].chksum
    del frame[IP].chksum, frame[UDP].chksum
    rebuilt = Ether(bytes(frame))
    assert (rebuilt[IP].chksum, rebuilt[UDP].chksum) == (ip_sum, udp_sum)
    assert bytes(frame[UDP].payload) == message


def test_parse_reply_frame_reads_a_scapy_reply() -> None:
    payload = _scapy_reply("offer")
    raw = bytes(
        Ether(src=SERVER_MAC, dst="ff:ff:ff:ff:ff:ff")
        / IP(src=str(SERVER), dst="255.255.255.255")
        / UDP(sport=67, dport=68)
        / payload
    )
    reply, server_mac = dhcp.parse_reply_frame(raw + b"\x00" * 4)  # Ethernet padding ignored
    assert server_mac == SERVER_MAC
    assert reply == dhcp.parse_reply(payload)


def test_client_frame_parses_with_the_frame_codec() -> None:
    message = dhcp.build_discover(XID, MAC)
    f = parse_udp_frame(dhcp.client_frame(message, MAC))
    assert (f.src_mac, f.src_ip, f.dst_ip) == (mac_from_str(MAC), 0, 0xFFFFFFFF)
    assert (f.src_port, f.dst_port, f.payload) == (68, 67, message)


@pytest.mark.parametrize(
    ("what", "raw"),
    [
        ("fragment", Ether() / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / UDP(dport=68)),
        ("not-udp", Ether() / IP(src="10.0.0.1", dst="10.0.0.2", proto=6) / (b"\x00" * 20)),
        ("not-ipv4", Ether() / ARP()),
    ],
)
def test_parse_reply_frame_rejects_what_the_frame_codec_rejects(what: str, raw: Packet) -> None:
    with pytest.raises(FrameError) as exc:
        dhcp.parse_reply_frame(bytes(raw))
    assert exc.value.reason == what


def test_parse_reply_frame_rejects_another_udp_port() -> None:
    raw = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=67, dport=69) / b"x"
    with pytest.raises(ValueError, match="port 69"):
        dhcp.parse_reply_frame(bytes(raw))


def test_arp_probe_has_sender_ip_zero() -> None:
    frame = Ether(dhcp.build_arp_probe(MAC, IP1))
    assert frame.dst == "ff:ff:ff:ff:ff:ff"
    assert frame[ARP].op == 1
    assert (frame[ARP].hwsrc, frame[ARP].psrc, frame[ARP].pdst) == (MAC, "0.0.0.0", str(IP1))


def test_reply_from_the_probed_address_is_a_conflict() -> None:
    raw = bytes(
        Ether(src=SERVER_MAC, dst=MAC)
        / ARP(op=2, hwsrc=SERVER_MAC, psrc=str(IP1), hwdst=MAC, pdst="0.0.0.0")
    )
    assert dhcp.is_conflict(dhcp.parse_arp_frame(raw), IP1, {MAC})


def test_another_hosts_probe_for_the_same_address_is_a_conflict() -> None:
    raw = bytes(Ether(src=SERVER_MAC) / ARP(op=1, hwsrc=SERVER_MAC, psrc="0.0.0.0", pdst=str(IP1)))
    assert dhcp.is_conflict(dhcp.parse_arp_frame(raw), IP1, {MAC})


def test_our_own_probe_and_unrelated_arp_are_not_conflicts() -> None:
    own = dhcp.parse_arp_frame(dhcp.build_arp_probe(MAC, IP1))
    other = dhcp.parse_arp_frame(
        bytes(Ether() / ARP(op=1, hwsrc=SERVER_MAC, psrc=str(SERVER), pdst="10.0.1.9"))
    )
    assert not dhcp.is_conflict(own, IP1, {MAC})
    assert not dhcp.is_conflict(other, IP1, {MAC})


def test_a_reply_from_one_of_our_macs_is_not_a_conflict() -> None:
    raw = bytes(Ether(src=SERVER_MAC) / ARP(op=2, hwsrc=SERVER_MAC, psrc=str(IP1), pdst="0.0.0.0"))
    assert not dhcp.is_conflict(dhcp.parse_arp_frame(raw), IP1, {MAC, SERVER_MAC})
