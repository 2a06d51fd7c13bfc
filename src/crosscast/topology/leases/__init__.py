"""`crosscast lease`: a container's address from its VLAN's DHCP server, remembered in SQLite.

Why a client of our own: a container's address is fixed at `docker create --ip ... --mac-address`
time, before the container exists, so something on the host has to hold the lease on the
container's behalf, with the container's MAC (derived from its name) as chaddr, as the seeds'
scapy script does.

One job per module:
- dhcp: the wire formats (BOOTP/DHCP messages, ARP probes); framing by crosscast.net.frames;
- binding: what a lease is (Binding), where one is asked for (Target), and the two failures;
- output: the shell, JSON and table forms of bindings;
- store: the SQLite file of bindings;
- link: the AF_PACKET link on a VLAN's bridge (opened by crosscast.net.packet);
- client: the DISCOVER/OFFER/REQUEST/ACK exchange, the ARP probe, renewal and release;
- service: lease/renew/release of a named container: the store and the client together;
- cli: the command line, the only place that reads the environment.
"""

from crosscast.topology.leases.cli import register_cli, run_cli

__all__ = ["register_cli", "run_cli"]
