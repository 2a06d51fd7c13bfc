"""Throw-away network labs in namespaces: routed VLANs, a Swarm-like overlay, a fake Swarm DNS.

Used by the demo and the integration tests. The lab holds no relay logic and never touches
anything outside the namespaces it created (every name starts with a per-run prefix) or
loopback. One module per job:

- registry: what was started in which namespace, and teardown of one run (prefix);
- topologies: RoutedVlans, SwarmOverlay, their hosts, and the router namespace's firewall;
- procs: processes in a namespace (spawn, stop, wait_for_log, wait_until);
- relays: `crosscast relay` processes (start, wait until ready, log tail);
- probes: UDP listeners and senders, and waiting for what must or must not arrive;
- sniffer: a packet-socket sniffer and the lab's independent frame codec (a test oracle);
- dns: FakeSwarmDns, Docker's embedded DNS faked on dnspython.

`from crosscast import lab; lab.X` works for every public name of these modules.
"""

from crosscast.lab.dns import FakeSwarmDns
from crosscast.lab.probes import (
    arrivals,
    collect,
    drain,
    multicast_listener,
    receive,
    send_broadcast,
    send_frame,
    send_multicast,
    send_udp,
    send_until_received,
    tagged,
    udp_listener,
)
from crosscast.lab.procs import spawn, stop, wait_for_log, wait_until
from crosscast.lab.registry import teardown, teardown_all, unique_prefix
from crosscast.lab.relays import (
    RelayProcess,
    relay_env_vars,
    rule_args,
    spawn_relay,
    start_relay,
)
from crosscast.lab.sniffer import (
    PACKET_OUTGOING,
    SniffedFrame,
    Sniffer,
    build_udp_frame,
    parse_udp_frame,
    sniff,
)
from crosscast.lab.topologies import (
    DOCKER_DNS,
    Host,
    OverlayNode,
    RoutedVlans,
    Segment,
    SwarmOverlay,
    bridge_macs,
    isolate_vlans,
    link_mac,
    mac_for,
)
from crosscast.relay import READY

__all__ = [
    "DOCKER_DNS",
    "PACKET_OUTGOING",
    "READY",
    "FakeSwarmDns",
    "Host",
    "OverlayNode",
    "RelayProcess",
    "RoutedVlans",
    "Segment",
    "SniffedFrame",
    "Sniffer",
    "SwarmOverlay",
    "arrivals",
    "bridge_macs",
    "build_udp_frame",
    "collect",
    "drain",
    "isolate_vlans",
    "link_mac",
    "mac_for",
    "multicast_listener",
    "parse_udp_frame",
    "receive",
    "relay_env_vars",
    "rule_args",
    "send_broadcast",
    "send_frame",
    "send_multicast",
    "send_udp",
    "send_until_received",
    "sniff",
    "spawn",
    "spawn_relay",
    "start_relay",
    "stop",
    "tagged",
    "teardown",
    "teardown_all",
    "udp_listener",
    "unique_prefix",
    "wait_for_log",
    "wait_until",
]
