"""`crosscast topology check|render|apply|verify|destroy FILE`, and `crosscast lease` (leases.py).

This module owns argument parsing and exit codes for the topology helper and nothing else:
check/render are pure (`load`, `render`), apply/destroy are in `apply`, verify is in `verify`.
Exit status: 0 ok, 1 a check or verify failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from ipaddress import AddressValueError, IPv4Address
from pathlib import Path
from typing import Any, TextIO

from crosscast.topology.load import TopologyErrors, load_topology
from crosscast.topology.model import Topology
from crosscast.topology.render import EXECUTABLE, render_all

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `topology`, and `lease` (crosscast.topology.leases)."""
    parser = sub.add_parser(
        "topology",
        help="check, render, apply, verify or destroy a declarative edge topology",
        description="One declarative file -> VLANs, bridges, Docker networks, router firewall, "
        "dhcpd.conf and container leases.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    check = actions.add_parser(
        "check", help="validate FILE; print every problem as FILE:LINE:COLUMN"
    )
    check.add_argument("file", metavar="FILE")
    _format_option(check)
    check.set_defaults(func=run_check)

    render = actions.add_parser("render", help="write the rendered files into --output-dir")
    render.add_argument("file", metavar="FILE")
    render.add_argument("--output-dir", "-o", required=True, type=Path, metavar="DIR")
    render.set_defaults(func=run_render)

    for name, func, text in (
        ("apply", run_apply, "build the topology (idempotent; needs root)"),
        ("destroy", run_destroy, "remove what apply built (needs root)"),
        ("verify", run_verify, "run the connectivity checks on the live topology"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("file", metavar="FILE")
        action.add_argument(
            "--netns-prefix",
            metavar="P",
            help="build in network namespaces named P+'host', P+router, P+container...",
        )
        if name == "verify":
            _format_option(action)
        if name == "apply":
            action.add_argument(
                "--lease",
                action="append",
                default=[],
                metavar="NAME=ADDRESS",
                help="the leased address of container NAME (from `crosscast lease`); repeatable",
            )
        action.set_defaults(func=func)

    # Imported here: leases pulls in the packet socket, which check and render never need.
    from crosscast.topology.leases import register_cli

    register_cli(sub)


def _format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for people (default) or one JSON object for scripts (see the README)",
    )


def _load(file: str, err: TextIO) -> Topology | None:
    try:
        return load_topology(file)
    except TopologyErrors as exc:
        for problem in exc.problems:
            print(problem, file=err)
        return None


def check_json(file: str, topology: Topology | None, problems: list[str]) -> dict[str, Any]:
    """`topology check --format json` (its shape is documented in the README)."""
    summary = None
    if topology is not None:
        summary = {
            "name": topology.name,
            "vlans": [
                {"id": v.id, "name": v.name, "subnet": str(v.subnet)} for v in topology.vlans
            ],
            "containers": [c.name for c in topology.containers],
            "devices": [d.name for d in topology.devices],
        }
    return {"file": file, "ok": not problems, "problems": problems, "topology": summary}


def run_check(args: argparse.Namespace) -> int:
    if args.format == "json":
        try:
            topology, problems = load_topology(args.file), []
        except TopologyErrors as exc:
            topology, problems = None, list(exc.problems)
        print(json.dumps(check_json(args.file, topology, problems), indent=2))
        return EXIT_OK if topology is not None else EXIT_USAGE
    topology = _load(args.file, sys.stderr)
    if topology is None:
        return EXIT_USAGE
    print(
        f"{args.file}: ok: topology {topology.name}, {len(topology.vlans)} VLANs, "
        f"{len(topology.containers)} containers, {len(topology.devices)} devices"
    )
    return EXIT_OK


def run_render(args: argparse.Namespace) -> int:
    topology = _load(args.file, sys.stderr)
    if topology is None:
        return EXIT_USAGE
    out: Path = args.output_dir
    try:
        write_rendered(topology, out)
    except OSError as exc:
        print(f"{out}: cannot write: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    for name in sorted(render_all(topology)):
        print(out / name)
    return EXIT_OK


def write_rendered(topology: Topology, out: Path) -> None:
    """Write every rendered file into `out` (created if missing); scripts are executable."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render_all(topology).items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755 if name in EXECUTABLE else 0o644)


def parse_leases(values: list[str]) -> dict[str, IPv4Address]:
    """`NAME=ADDRESS` strings -> {name: address}; ValueError names the bad one."""
    leases: dict[str, IPv4Address] = {}
    for value in values:
        name, sep, address = value.partition("=")
        try:
            if not sep or not name:
                raise AddressValueError(value)
            leases[name] = IPv4Address(address)
        except AddressValueError:
            raise ValueError(f"--lease {value!r} is not NAME=ADDRESS") from None
    return leases


def _with_topology(args: argparse.Namespace, act: Callable[[Topology], int]) -> int:
    topology = _load(args.file, sys.stderr)
    if topology is None:
        return EXIT_USAGE
    return act(topology)


def run_apply(args: argparse.Namespace) -> int:
    from crosscast.topology import apply

    try:
        leases = parse_leases(args.lease)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    return _with_topology(
        args, lambda t: apply.apply_topology(t, netns_prefix=args.netns_prefix, leases=leases)
    )


def run_destroy(args: argparse.Namespace) -> int:
    from crosscast.topology import apply

    return _with_topology(args, lambda t: apply.destroy_topology(t, netns_prefix=args.netns_prefix))


def run_verify(args: argparse.Namespace) -> int:
    from crosscast.topology import verify

    def act(topology: Topology) -> int:
        prefix = args.netns_prefix
        # The relay's rules cross VLANs only where apply started the relay (netns mode).
        if prefix is None:
            return int(verify.run_verify(topology, netns_prefix=prefix))
        expectation = verify.relay_expectation(topology, prefix)
        result = verify.run_verify(
            topology,
            netns_prefix=prefix,
            expected_crossings=expectation.crossings,
            assumption=expectation.summary,
            output_format=args.format,
        )
        return int(result)

    return _with_topology(args, act)
