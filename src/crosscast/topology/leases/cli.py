"""`crosscast lease`: the command line over the lease service; reads the environment here only."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from crosscast.topology.leases.binding import LeaseError, Target, UsageError
from crosscast.topology.leases.client import Timing
from crosscast.topology.leases.output import (
    format_env,
    format_json,
    format_json_list,
    format_table,
)
from crosscast.topology.leases.service import lease, release
from crosscast.topology.leases.store import LeaseStore
from crosscast.topology.load import TopologyErrors, load_topology

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

DEFAULT_DB = Path("/var/lib/crosscast/leases.sqlite3")
DB_ENV = "CROSSCAST_LEASE_DB"


def register_cli(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `crosscast lease` to the top-level subcommands."""
    p = sub.add_parser(
        "lease",
        help="get (or renew) a container's address from its VLAN's DHCP server",
        description="Obtain an address for container NAME from the DHCP server on a VLAN, with a"
        " MAC derived from NAME, and remember it: later calls renew and return the same binding.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="the container's name")
    p.add_argument("--vlan", metavar="V", help="VLAN id or name (with --topology), or a label")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--interface", metavar="IFACE", help="the VLAN's bridge interface")
    where.add_argument("--topology", metavar="FILE", help="find the VLAN's bridge in this file")
    p.add_argument("--netns", metavar="NS", help="run the client inside this network namespace")
    p.add_argument(
        "--netns-prefix",
        metavar="P",
        help="the prefix `topology apply --netns-prefix` used: without --netns, the client"
        " runs in P+'host'",
    )
    p.add_argument("--db", metavar="PATH", help=f"lease database (${DB_ENV}, default {DEFAULT_DB})")
    p.add_argument("--format", choices=("env", "json", "table"), help="output format")
    p.add_argument("--rebind", action="store_true", help="on a DHCPNAK, get a fresh lease")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per exchange (3)")
    p.add_argument("--retries", type=int, default=2, help="retransmissions per exchange (2)")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="list the recorded leases")
    action.add_argument("--release", metavar="NAME", help="release NAME's lease and forget it")
    p.set_defaults(func=run_cli)


def _say(line: str) -> None:
    print(f"crosscast lease: {line}", file=sys.stderr)


def _target(args: argparse.Namespace) -> Target | None:
    """The VLAN and interface from the arguments; None if they name neither."""
    ns = args.netns
    if ns is None and args.netns_prefix is not None:
        ns = f"{args.netns_prefix}host"  # where `topology apply --netns-prefix` puts the bridges
    if args.topology is not None:
        if args.vlan is None:
            raise UsageError("--topology needs --vlan")
        vlan_id, bridge = _bridge_for_vlan(Path(args.topology), args.vlan)
        return Target(vlan_id, bridge, ns)
    if args.interface is not None:
        if args.vlan is None:
            raise UsageError("--interface needs --vlan (the VLAN the interface is on)")
        return Target(args.vlan, args.interface, ns)
    if args.vlan is not None:
        raise UsageError("--vlan needs --interface IFACE or --topology FILE")
    return None


def _bridge_for_vlan(path: Path, vlan: str) -> tuple[str, str]:
    """(VLAN id, bridge) for a VLAN given by id or name in a topology file."""
    try:
        topology = load_topology(path)
    except TopologyErrors as exc:
        more = f" (and {len(exc.problems) - 1} more problems)" if len(exc.problems) > 1 else ""
        raise UsageError(f"{exc.problems[0]}{more}") from None
    for v in topology.vlans:
        if vlan in (str(v.id), v.name):
            return str(v.id), v.bridge
    known = ", ".join(f"{v.id} ({v.name})" for v in topology.vlans)
    raise UsageError(f"{path}: no VLAN {vlan!r}; it has {known}")


def run_cli(args: argparse.Namespace) -> int:
    db = Path(args.db or os.environ.get(DB_ENV) or DEFAULT_DB)
    store = LeaseStore(db)
    timing = Timing(exchange_timeout=args.timeout, retries=args.retries)
    try:
        if args.timeout <= 0 or args.retries < 0:
            raise UsageError("--timeout must be positive and --retries not negative")
        if args.list:
            bindings = store.all()
            if args.format == "json":
                sys.stdout.write(format_json_list(bindings))
            else:
                sys.stdout.write(format_table(bindings))
            return EXIT_OK
        if args.release is not None:
            gone = release(args.release, store, target=_target(args), notify=_say)
            _say(f"released {gone.ip} of {gone.name} (VLAN {gone.vlan})")
            return EXIT_OK
        if args.name is None:
            raise UsageError("give a container NAME, --list, or --release NAME")
        started = time.monotonic()
        outcome = lease(
            args.name, _target(args), store, rebind=args.rebind, timing=timing, notify=_say
        )
    except UsageError as exc:
        _say(str(exc))
        return EXIT_USAGE
    except LeaseError as exc:
        _say(f"{args.name or args.release}: {exc}")
        return EXIT_FAILED
    b = outcome.binding
    took = time.monotonic() - started
    _say(f"{outcome.action} {b.ip}/{b.prefix} for {b.name} on VLAN {b.vlan} in {took:.2f} s")
    if args.format == "json":
        sys.stdout.write(format_json(b))
    elif args.format == "table":
        sys.stdout.write(format_table([b]))
    else:
        sys.stdout.write(format_env(b))
    return EXIT_OK
