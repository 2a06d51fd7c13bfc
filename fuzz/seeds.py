"""Build the seed corpus, fuzz/corpus/<target>/, from real inputs: `python -m fuzz.seeds`.

Frames come from net.frames.build_udp_frame (and scapy for IP options and fragments), envelopes
from the relay's own codec in both formats, with and without a secret, DHCP replies from scapy
(as tests/topology/leases/test_dhcp.py does), rules from the rule tests and examples/, topologies
from examples/, PVA and CA discovery from tests/relay/data (p4p and caproto captures). Seeds are
named for what they are; libFuzzer adds its own (sha1) names when scripts/fuzz --update-corpus
merges new coverage in.
"""

from __future__ import annotations

import ipaddress
import shutil
import struct

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from crosscast.net.frames import build_udp_frame, ip_from_str, mac_from_str
from crosscast.relay.envelope import KIND_FRAME, KIND_PROBE, CrosscastCodec, Envelope
from crosscast.relay.envelope import encode_snowsignal as snowsignal
from crosscast.topology.leases import dhcp
from fuzz import CORPUS, TARGETS
from fuzz.world import MESH_PORT, NOW, SECRET, pack

ROOT = CORPUS.parent.parent
SENDER = mac_from_str("02:00:00:00:01:0b")
BCAST = b"\xff" * 6


def udp(
    dst: str, port: int, payload: bytes = b"search", src: str = "10.0.1.11", **kw: int
) -> bytes:
    dst_mac = BCAST if not dst.startswith("233.") else bytes.fromhex("01005e36 0cea")
    return build_udp_frame(
        src_mac=SENDER,
        dst_mac=dst_mac,
        src_ip=ip_from_str(src),
        dst_ip=ip_from_str(dst),
        src_port=40000,
        dst_port=port,
        payload=payload,
        **kw,
    )


def frames() -> dict[str, bytes]:
    options = Ether(src="02:00:00:00:01:0b", dst="ff:ff:ff:ff:ff:ff") / IP(
        src="10.0.1.11", dst="10.0.1.255", options=b"\x94\x04\x00\x00"
    )
    return {
        "limited-broadcast-5076": udp("255.255.255.255", 5076),
        "directed-broadcast-5076": udp("10.0.1.255", 5076, b"\x00" * 48),
        "directed-broadcast-eth1": udp("10.0.2.255", 5076, src="10.0.2.11"),
        "denied-source": udp("10.0.2.255", 5076, src="10.0.2.66"),
        "multicast-22001": udp("233.54.12.234", 22001, b"video" * 20),
        "unicast": udp("10.0.1.7", 5076),
        "range-5005": udp("255.255.255.255", 5005, ttl=1, ident=7),
        "no-rule-port": udp("255.255.255.255", 9999),
        "empty-payload": udp("255.255.255.255", 5076, b""),
        "large": udp("255.255.255.255", 5076, bytes(range(256)) * 5),
        "ip-options": bytes(options / UDP(sport=40000, dport=5076) / b"search"),
        "first-fragment": bytes(
            Ether(dst="ff:ff:ff:ff:ff:ff")
            / IP(src="10.0.1.11", dst="255.255.255.255", flags="MF", id=9)
            / UDP(sport=40000, dport=5076)
            / (b"x" * 64)
        ),
        "udp-checksum-zero": bytes(
            Ether(dst="ff:ff:ff:ff:ff:ff")
            / IP(src="10.0.1.11", dst="255.255.255.255")
            / UDP(sport=40000, dport=5076, chksum=0)
            / b"search"
        ),
    }


def probe(origin: int, secret: bytes | None = None) -> bytes:
    """A segment probe as another relay on the segment sends it."""
    body = MESH_PORT.to_bytes(2, "big")
    env = CrosscastCodec(secret).encode(Envelope(KIND_PROBE, origin, 1, 0, int(NOW * 1000), body))
    return BCAST + mac_from_str("02:cc:00:00:00:09") + b"\x88\xb5" + env


def envelopes(secret: bytes | None) -> dict[str, bytes]:
    codec = CrosscastCodec(secret)
    ms = int(NOW * 1000)
    out = {
        f"frame-{name}": codec.encode(Envelope(KIND_FRAME, 7, seq, 1, ms, frame))
        for seq, (name, frame) in enumerate(frames().items(), start=1)
    }
    out["probe"] = codec.encode(Envelope(KIND_PROBE, 7, 99, 0, ms, MESH_PORT.to_bytes(2, "big")))
    out["stale"] = codec.encode(Envelope(KIND_FRAME, 7, 100, 4, ms - 60_000, b""))
    return out


def dhcp_replies() -> dict[str, bytes]:
    mac = mac_from_str("02:11:22:33:44:55")

    def reply(message_type: str, *extra: tuple[object, ...]) -> bytes:
        options: list[object] = [("message-type", message_type), *extra, "end"]
        return bytes(
            BOOTP(op=2, xid=0x1234ABCD, flags=0x8000, yiaddr="10.0.1.7", siaddr="10.0.1.3",
                  chaddr=mac + bytes(10))
            / DHCP(options=options)
        )  # fmt: skip

    full = (
        ("server_id", "10.0.1.3"),
        ("lease_time", 3600),
        ("subnet_mask", "255.255.255.0"),
        ("router", "10.0.1.1"),
        ("name_server", "10.0.1.1", "10.0.1.2"),
        ("renewal_time", 1800),
    )
    return {
        "offer": reply("offer", *full),
        "ack": reply("ack", *full),
        "nak": reply("nak", ("server_id", "10.0.1.3")),
        "ack-minimal": reply("ack"),
        "discover": dhcp.build_discover(0x1234ABCD, "02:11:22:33:44:55", hostname="c1"),
    }


def dhcp_frames() -> dict[str, bytes]:
    """The replies above as the server frames them to the client port."""
    return {
        name: build_udp_frame(
            src_mac=mac_from_str("02:aa:bb:cc:dd:ee"),
            dst_mac=BCAST,
            src_ip=ip_from_str("10.0.1.3"),
            dst_ip=ip_from_str("255.255.255.255"),
            src_port=dhcp.SERVER_PORT,
            dst_port=dhcp.CLIENT_PORT,
            payload=message,
        )
        for name, message in dhcp_replies().items()
    }


def arp_frames() -> dict[str, bytes]:
    probed = ipaddress.IPv4Address("10.0.1.7")
    return {
        "probe": dhcp.build_arp_probe("02:11:22:33:44:55", probed),
        "reply-conflict": bytes(
            Ether(src="02:aa:bb:cc:dd:ee", dst="02:11:22:33:44:55")
            / ARP(op=2, hwsrc="02:aa:bb:cc:dd:ee", psrc="10.0.1.7", pdst="0.0.0.0")
        ),
        "probe-from-other": bytes(
            Ether(src="02:aa:bb:cc:dd:ee", dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc="02:aa:bb:cc:dd:ee", psrc="0.0.0.0", pdst="10.0.1.7")
        ),
    }


RULE_LINES = {
    "every-field": "cam from eth0 to eth2,mesh port 22001,5000-5010 group 233.54.12.234 "
    "broadcast allow 10.0.1.0/24 deny 10.0.1.66",
    "any-order": "gps port 10110 to eth2,eth3 from eth0",
    "spaces": "gps from eth0 to eth2, eth3 port 10110 , 10111",
    "several": "gps from eth0 to eth2 port 10110; pva from eth0 to mesh port 5076\n"
    "back from mesh to eth0 port 5076",
    "comments": "# GPS only\ngps from eth0 to eth2 port 10110\n;;\n",
    "problems": "a from eth0 to eth2 port 0; b from eth0 to eth2,eth0 port x group 10.0.0.1",
    "overlaps": "p from eth0 to eth2 port 7000,5005-5010,5000-5004,5008",
}


def rules_yaml() -> dict[str, bytes]:
    out = {"fire-truck": (ROOT / "examples/rules-fire-truck.yaml").read_bytes()}
    out["gps"] = (
        b"rules:\n  - name: gps\n    from: eth0\n    to: [eth2, eth3]\n"
        b'    ports: [10110, "5000-5010"]\n    allow: [10.0.1.0/24]\n    deny: [10.0.1.66/32]\n'
    )
    out["strings-and-errors"] = (
        b"rules:\n  - name: v\n    from: eth0\n    to: eth2, mesh\n    ports: 22001\n"
        b"    groups: 233.54.12.234\n    broadcast: yes\n  - name: 7\n    from: eth0\n"
        b"    colour: red\n    ports: [0, 70000]\n  - just a string\n"
    )
    return out


def discovery_payloads() -> dict[str, bytes]:
    """Real PVA and CA discovery datagrams (tests/relay/data, captured from p4p and caproto) and
    the variants the protocol tests build: little-endian, control message first, several names."""
    out = {p.stem: p.read_bytes() for p in sorted((ROOT / "tests/relay/data").glob("*.bin"))}
    body = struct.pack("<I", 7) + b"\x81\0\0\0" + bytes(16) + struct.pack("<H", 5075)
    body += b"\x01\x03tcp" + struct.pack("<H", 2)
    for cid, name in enumerate(["a:b", "c:d"]):
        body += struct.pack("<I", cid) + bytes([len(name)]) + name.encode()
    out["pva-search-little-endian"] = struct.pack("<BBBBI", 0xCA, 2, 0, 3, len(body)) + body
    control = struct.pack(">BBBBI", 0xCA, 2, 0x81, 0x02, 1234)
    out["pva-control-then-search"] = control + out["pva-search"]
    out["ca-two-searches"] = (
        out["ca-search"] + struct.pack(">HHHHII", 6, 8, 5, 13, 2, 2) + b"abc:def\0"
    )
    out["ca-beacon"] = struct.pack(">HHHHI", 13, 0, 5064, 0, 42) + bytes([10, 0, 1, 5])
    out["ca-search-reply"] = (
        struct.pack(">HHHHII", 6, 8, 5064, 0, 0xFFFFFFFF, 1) + b"\0\x0d" + bytes(6)
    )
    return out


def corpus() -> dict[str, dict[str, bytes]]:
    """Target -> seed name -> seed bytes."""
    fr = frames()
    plain, signed = envelopes(None), envelopes(SECRET)
    unsigned_for_secret = {  # what envelope_secret signs itself: flags say "tagged", no tag yet
        f"{k}-to-sign": v[:-32] for k, v in signed.items()
    }
    ss = {f"ss-{k}": snowsignal(v) for k, v in fr.items()}
    cap = {f"eth0-{k}": b"\0" + pack(b"\0" + v) for k, v in fr.items()}
    cap |= {f"eth1-partial-{k}": b"\2" + pack(b"\3" + v) for k, v in fr.items()}
    one = fr["limited-broadcast-5076"]
    cap |= {
        "probe-then-frames": b"\0" + pack(b"\0" + probe(9), *(b"\0" + v for v in fr.values())),
        "probe-low-id-then-frame": b"\0" + pack(b"\0" + probe(0), b"\0" + one),
        "probe-own": b"\0" + pack(b"\0" + probe(1)),
        "probe-signed": b"\1" + pack(b"\1" + probe(9, SECRET), b"\1" + probe(9, SECRET)),
        "same-frame-twice": b"\0" + pack(*[b"\0" + fr["multicast-22001"]] * 2),
    }
    twice = plain["frame-multicast-22001"]
    topologies = sorted(ROOT.glob("examples/topology-*.yaml"))
    replayed = pack(signed["frame-limited-broadcast-5076"], signed["frame-limited-broadcast-5076"])
    return {
        "envelope_crosscast": plain,
        "envelope_secret": {k: pack(v) for k, v in (signed | unsigned_for_secret).items()}
        | {"replayed": replayed, "sequence": pack(*signed.values())},
        "envelope_snowsignal": ss,
        "frame": fr,
        "engine_capture": cap,
        "engine_mesh": {f"plain-{k}": b"\0" + pack(v) for k, v in plain.items()}
        | {f"ss-{k}": b"\0" + pack(v) for k, v in ss.items()}
        | {f"signed-{k}": b"\1" + pack(v) for k, v in signed.items()}
        | {f"to-sign-{k}": b"\5" + pack(v) for k, v in unsigned_for_secret.items()}
        | {"plain-twice": b"\0" + pack(twice, twice), "from-self": b"\2" + pack(*plain.values()),
           "signed-replayed": b"\1" + replayed},
        "dhcp_reply": dhcp_replies(),
        "dhcp_frame": dhcp_frames(),
        "arp_frame": arp_frames(),
        "rules_text": {k: v.encode() for k, v in RULE_LINES.items()},
        "rules_yaml": rules_yaml(),
        "topology_yaml": {p.stem: p.read_bytes() for p in topologies},
        "protocols": discovery_payloads(),
    }  # fmt: skip


def main() -> None:
    seeds = corpus()
    assert set(seeds) == set(TARGETS), set(TARGETS) ^ set(seeds)
    for target, files in seeds.items():
        folder = CORPUS / target
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        print(f"{target}: {len(files)} seeds")


if __name__ == "__main__":
    main()
