"""The DHCP client's wire formats: BOOTP/DHCP messages, ARP probes, and their framing.

Bytes in, values out. This module owns encoding and decoding only: it opens no socket, reads no
clock and keeps no state, so `crosscast lease` (which owns the AF_PACKET socket and the timers)
and its tests share one codec. The Ethernet/IPv4/UDP layer around a DHCP message is not coded
here but by crosscast.net.frames, the one frame codec. Malformed input raises `ValueError`
(`frames.FrameError` is one); the caller drops it.

References: RFC 2131 (DHCP, BOOTP header and the client's states), RFC 2132 (options),
RFC 826 / RFC 5227 (ARP and the address-conflict probe), RFC 791 / RFC 768 (IPv4, UDP).
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Collection
from dataclasses import dataclass

from crosscast.net import frames
from crosscast.net.frames import ETH_HLEN, ETH_P_IP, mac_from_str, mac_to_str

# --- constants, with where they come from ----------------------------------------------------

BOOTREQUEST = 1  # RFC 2131 section 2, op
BOOTREPLY = 2
HTYPE_ETHERNET = 1  # RFC 1700 hardware type
FLAG_BROADCAST = 0x8000  # RFC 2131 section 2, flags: ask the server to broadcast its reply
MAGIC_COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 section 3
BOOTP_FIXED_LEN = 236  # op .. file, before the cookie
SERVER_PORT = 67
CLIENT_PORT = 68

ETH_P_ARP = 0x0806  # linux/if_ether.h
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
IPTOS_LOWDELAY = 0x10  # netinet/ip.h: the type of service ISC's dhclient sends with
ANY = ipaddress.IPv4Address("0.0.0.0")
LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")

ARPOP_REQUEST = 1  # RFC 826
ARPOP_REPLY = 2


class MessageType(enum.IntEnum):
    """DHCP message type, option 53 (RFC 2132 section 9.6)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class Option(enum.IntEnum):
    """The RFC 2132 option codes this client sends or reads."""

    PAD = 0
    SUBNET_MASK = 1
    ROUTER = 3
    DNS = 6
    HOST_NAME = 12
    BROADCAST_ADDRESS = 28
    REQUESTED_IP = 50
    LEASE_TIME = 51
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAMETER_REQUEST_LIST = 55
    MESSAGE = 56
    RENEWAL_TIME = 58
    REBINDING_TIME = 59
    CLIENT_ID = 61
    END = 255


# What we ask the server for (option 55): enough to configure a container's static address.
PARAMETERS_WANTED = bytes(
    [Option.SUBNET_MASK, Option.ROUTER, Option.DNS, Option.BROADCAST_ADDRESS, Option.LEASE_TIME]
)


# --- addresses ---------------------------------------------------------------------------------


def client_id_for(mac: str) -> bytes:
    """Option 61 as RFC 2132 section 9.14 suggests: hardware type 1, then the MAC."""
    return bytes([HTYPE_ETHERNET]) + mac_from_str(mac)


# --- BOOTP/DHCP messages ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A server's BOOTREPLY, with the options a lease needs decoded."""

    message_type: MessageType
    xid: int
    chaddr: str
    yiaddr: ipaddress.IPv4Address
    siaddr: ipaddress.IPv4Address
    flags: int
    server_id: ipaddress.IPv4Address | None
    lease_time: int | None
    subnet_mask: ipaddress.IPv4Address | None
    router: ipaddress.IPv4Address | None
    dns: tuple[ipaddress.IPv4Address, ...]
    message: str | None  # option 56, why a NAK was sent

    @property
    def prefix_length(self) -> int | None:
        if self.subnet_mask is None:
            return None
        return ipaddress.IPv4Network(f"0.0.0.0/{self.subnet_mask}").prefixlen


def _options(items: list[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for code, value in items:
        if len(value) > 255:
            raise ValueError(f"option {code} is {len(value)} bytes, longer than 255")
        out += bytes([code, len(value)]) + value
    out.append(Option.END)
    return bytes(out)


def _message(
    message_type: MessageType,
    xid: int,
    mac: str,
    options: list[tuple[int, bytes]],
    *,
    ciaddr: ipaddress.IPv4Address = ANY,
    broadcast: bool = True,
) -> bytes:
    chaddr = mac_from_str(mac)
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        BOOTREQUEST,
        HTYPE_ETHERNET,
        len(chaddr),
        0,  # hops
        xid,
        0,  # secs
        FLAG_BROADCAST if broadcast else 0,
        ciaddr.packed,
        ANY.packed,  # yiaddr
        ANY.packed,  # siaddr
        ANY.packed,  # giaddr
        chaddr,
        b"",  # sname
        b"",  # file
    )
    body = _options([(Option.MESSAGE_TYPE, bytes([message_type])), *options])
    message = header + MAGIC_COOKIE + body
    # RFC 2131 section 2: a client must accept 576-byte messages; old relays and some servers
    # drop BOOTP messages shorter than the 300 bytes of RFC 951, so pad to that.
    return message.ljust(300, b"\x00")


def _identity(mac: str, hostname: str | None) -> list[tuple[int, bytes]]:
    items = [(int(Option.CLIENT_ID), client_id_for(mac))]
    if hostname:
        items.append((int(Option.HOST_NAME), hostname.encode("utf-8")))
    return items


def build_discover(xid: int, mac: str, *, hostname: str | None = None) -> bytes:
    """DHCPDISCOVER (RFC 2131 section 4.4.1), broadcast flag set."""
    return _message(
        MessageType.DISCOVER,
        xid,
        mac,
        [*_identity(mac, hostname), (Option.PARAMETER_REQUEST_LIST, PARAMETERS_WANTED)],
    )


def build_request(
    xid: int,
    mac: str,
    requested_ip: ipaddress.IPv4Address,
    *,
    server_id: ipaddress.IPv4Address | None = None,
    hostname: str | None = None,
) -> bytes:
    """DHCPREQUEST with 'requested IP address' and ciaddr 0 (RFC 2131 section 4.3.2).

    With `server_id` it is the SELECTING state's answer to an OFFER; without, the INIT-REBOOT
    state's "may I keep this address?", which is how a stored binding is renewed: our client has
    no IP address of its own on the link, so the RENEWING state's unicast cannot be used.
    """
    items = [*_identity(mac, hostname), (int(Option.REQUESTED_IP), requested_ip.packed)]
    if server_id is not None:
        items.append((int(Option.SERVER_ID), server_id.packed))
    items.append((int(Option.PARAMETER_REQUEST_LIST), PARAMETERS_WANTED))
    return _message(MessageType.REQUEST, xid, mac, items)


def build_decline(
    xid: int,
    mac: str,
    declined_ip: ipaddress.IPv4Address,
    server_id: ipaddress.IPv4Address,
) -> bytes:
    """DHCPDECLINE: the offered address answered an ARP probe (RFC 2131 sections 3.1.5, 4.4.1)."""
    return _message(
        MessageType.DECLINE,
        xid,
        mac,
        [
            (Option.CLIENT_ID, client_id_for(mac)),
            (Option.REQUESTED_IP, declined_ip.packed),
            (Option.SERVER_ID, server_id.packed),
        ],
        broadcast=False,
    )


def build_release(
    xid: int,
    mac: str,
    ip: ipaddress.IPv4Address,
    server_id: ipaddress.IPv4Address,
) -> bytes:
    """DHCPRELEASE: ciaddr is the address given back (RFC 2131 section 4.4.6)."""
    return _message(
        MessageType.RELEASE,
        xid,
        mac,
        [(Option.CLIENT_ID, client_id_for(mac)), (Option.SERVER_ID, server_id.packed)],
        ciaddr=ip,
        broadcast=False,
    )


def _read_options(data: bytes, into: dict[int, bytes]) -> None:
    """Walk an option area; a repeated option is concatenated (RFC 3396)."""
    i = 0
    while i < len(data):
        code = data[i]
        if code == Option.PAD:
            i += 1
            continue
        if code == Option.END:
            return
        if i + 1 >= len(data):
            raise ValueError("option area ends inside an option header")
        length = data[i + 1]
        value = data[i + 2 : i + 2 + length]
        if len(value) != length:
            raise ValueError(f"option {code} claims {length} bytes, {len(value)} are left")
        into[code] = into.get(code, b"") + value
        i += 2 + length


def _address(raw: bytes | None, what: str) -> ipaddress.IPv4Address | None:
    if raw is None:
        return None
    if len(raw) < 4:
        raise ValueError(f"{what} option has {len(raw)} bytes, fewer than 4")
    return ipaddress.IPv4Address(raw[:4])


def parse_reply(message: bytes) -> Reply:
    """Decode a BOOTREPLY carrying a DHCP message type; anything else is a ValueError."""
    if len(message) < BOOTP_FIXED_LEN + len(MAGIC_COOKIE):
        raise ValueError(f"{len(message)} bytes is too short for a DHCP message")
    op, htype, hlen, _hops, xid, _secs, flags = struct.unpack_from("!BBBBIHH", message)
    if op != BOOTREPLY:
        raise ValueError(f"op {op} is not BOOTREPLY")
    if htype != HTYPE_ETHERNET or hlen != 6:
        raise ValueError(f"hardware type {htype}/{hlen} is not Ethernet")
    yiaddr = ipaddress.IPv4Address(message[16:20])
    siaddr = ipaddress.IPv4Address(message[20:24])
    chaddr = mac_to_str(message[28:34])
    if message[BOOTP_FIXED_LEN : BOOTP_FIXED_LEN + 4] != MAGIC_COOKIE:
        raise ValueError("no DHCP magic cookie")
    options: dict[int, bytes] = {}
    _read_options(message[BOOTP_FIXED_LEN + 4 :], options)
    # Option 52 (RFC 2132 section 9.3): more options in `file` (1), `sname` (2) or both (3).
    overload = options.get(Option.OVERLOAD, b"\x00")[:1]
    if overload in (b"\x01", b"\x03"):
        _read_options(message[108:236], options)
    if overload in (b"\x02", b"\x03"):
        _read_options(message[44:108], options)
    raw_type = options.get(Option.MESSAGE_TYPE)
    if raw_type is None or len(raw_type) != 1:
        raise ValueError("no DHCP message type option: a plain BOOTP reply")
    try:
        message_type = MessageType(raw_type[0])
    except ValueError:
        raise ValueError(f"unknown DHCP message type {raw_type[0]}") from None
    lease = options.get(Option.LEASE_TIME)
    if lease is not None and len(lease) != 4:
        raise ValueError(f"lease time option has {len(lease)} bytes, not 4")
    dns_raw = options.get(Option.DNS, b"")
    if len(dns_raw) % 4:
        raise ValueError(f"DNS server option has {len(dns_raw)} bytes, not a multiple of 4")
    text = options.get(Option.MESSAGE)
    return Reply(
        message_type=message_type,
        xid=xid,
        chaddr=chaddr,
        yiaddr=yiaddr,
        siaddr=siaddr,
        flags=flags,
        server_id=_address(options.get(Option.SERVER_ID), "server identifier"),
        lease_time=None if lease is None else struct.unpack("!I", lease)[0],
        subnet_mask=_address(options.get(Option.SUBNET_MASK), "subnet mask"),
        router=_address(options.get(Option.ROUTER), "router"),
        dns=tuple(ipaddress.IPv4Address(dns_raw[i : i + 4]) for i in range(0, len(dns_raw), 4)),
        message=None if text is None else text.decode("utf-8", "replace").rstrip("\x00"),
    )


# --- Ethernet / IPv4 / UDP framing: the one codec, crosscast.net.frames -------------------------


def client_frame(
    message: bytes,
    mac: str,
    *,
    src_ip: ipaddress.IPv4Address = ANY,
    dst_ip: ipaddress.IPv4Address = LIMITED_BROADCAST,
    dst_mac: str = BROADCAST_MAC,
) -> bytes:
    """A client's DHCP message framed from port 68 to the server's port 67."""
    return frames.build_udp_frame(
        src_mac=mac_from_str(mac),
        dst_mac=mac_from_str(dst_mac),
        src_ip=int(src_ip),
        dst_ip=int(dst_ip),
        src_port=CLIENT_PORT,
        dst_port=SERVER_PORT,
        payload=message,
        tos=IPTOS_LOWDELAY,
    )


def parse_reply_frame(frame: bytes) -> tuple[Reply, str]:
    """A server's reply framed to the client port: (the reply, the server's MAC).

    Anything else (not IPv4/UDP, a fragment, a bad IP checksum, another port, not a DHCP
    reply) is a ValueError: a `frames.FrameError` from the framing, or one from `parse_reply`.
    """
    f = frames.parse_udp_frame(frame)
    if f.dst_port != CLIENT_PORT:
        raise ValueError(f"UDP port {f.dst_port} is not the DHCP client's")
    return parse_reply(f.payload), mac_to_str(f.src_mac)


# --- ARP (RFC 826) and the address-conflict probe (RFC 5227) -----------------------------------


@dataclass(frozen=True)
class Arp:
    op: int
    sender_mac: str
    sender_ip: ipaddress.IPv4Address
    target_mac: str
    target_ip: ipaddress.IPv4Address


def build_arp_probe(mac: str, target_ip: ipaddress.IPv4Address) -> bytes:
    """An ARP probe (RFC 5227 section 2.1.1): a broadcast request from `mac` (the interface's
    own address) with sender IP 0.0.0.0, so no neighbour cache learns the address we test."""
    eth = mac_from_str(BROADCAST_MAC) + mac_from_str(mac) + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack(
        "!HHBBH6s4s6s4s",
        HTYPE_ETHERNET,
        ETH_P_IP,
        6,
        4,
        ARPOP_REQUEST,
        mac_from_str(mac),
        ANY.packed,
        bytes(6),
        target_ip.packed,
    )
    return (eth + arp).ljust(60, b"\x00")  # minimum Ethernet frame without FCS


def parse_arp_frame(frame: bytes) -> Arp:
    if len(frame) < ETH_HLEN + 28:
        raise ValueError(f"{len(frame)} bytes is too short for an ARP frame")
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype != ETH_P_ARP:
        raise ValueError(f"ethertype {ethertype:#06x} is not ARP")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = struct.unpack_from(
        "!HHBBH6s4s6s4s", frame, ETH_HLEN
    )
    if (htype, ptype, hlen, plen) != (HTYPE_ETHERNET, ETH_P_IP, 6, 4):
        raise ValueError("not Ethernet/IPv4 ARP")
    return Arp(
        op, mac_to_str(sha), ipaddress.IPv4Address(spa), mac_to_str(tha), ipaddress.IPv4Address(tpa)
    )


def is_conflict(arp: Arp, probed_ip: ipaddress.IPv4Address, ours: Collection[str]) -> bool:
    """RFC 5227 section 2.1.1: the probed address is in use if anyone else sends ARP *from* it,
    or probes for it at the same time as we do. `ours`: the MACs that are not "anyone else"
    (the prober's, and the container's, which may already hold its own address)."""
    if arp.sender_mac in ours:
        return False
    if arp.sender_ip == probed_ip:
        return True
    return arp.op == ARPOP_REQUEST and arp.sender_ip == ANY and arp.target_ip == probed_ip
