"""The `crosscast` command: subcommands, argument parsing, exit codes.

`crosscast relay` (also plain `crosscast -t eth0 ...`, as `python -m snowsignal` was called) is
parsed by ConfigArgParse in `crosscast.relay.settings`, so CLI > env > file > defaults. The other
subcommands register themselves here through a `register(subparsers)` function of their module,
each setting `func(args) -> int`. Exit status: 0 fine, 1 a check failed, 2 bad input/start-up.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from crosscast import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _build_parser() -> argparse.ArgumentParser:
    from crosscast import demo
    from crosscast.relay import status
    from crosscast.relay.bench import command as bench
    from crosscast.topology import cli as topology_cli

    parser = argparse.ArgumentParser(
        prog="crosscast",
        description="Relay UDP broadcast and multicast across VLANs and Docker Swarm nodes.",
        epilog="`crosscast relay --help` lists the relay's options (SnowSignal's included).",
    )
    parser.add_argument("--version", action="version", version=f"crosscast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("relay", help="run the relay (the default command)", add_help=False)
    demo.register(sub)
    topology_cli.register(sub)
    status.register(sub)
    bench.register(sub)
    return parser


def _asyncio_without_tls() -> None:
    """Import asyncio with `ssl` unimportable, as on a Python built without it: asyncio then
    offers no TLS, which the relay does not use, and libcrypto (3.4 MB of the relay's RSS) is
    not loaded unless something that needs it imports `ssl` or `hashlib` later (a mesh
    secret's HMAC, the metrics listener's prometheus_client). Once asyncio is imported, this
    changes nothing."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # `import ssl` raises ImportError
    try:
        __import__("asyncio")
    finally:
        del sys.modules["ssl"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # SnowSignal is started with options only; so is crosscast's relay.
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help", "--version")):
        args = ["relay", *args]
    if args[0] == "relay":
        _asyncio_without_tls()
        from crosscast.relay import service

        return service.main(args[1:])
    parser = _build_parser()
    ns = parser.parse_args(args)
    func = getattr(ns, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    result: int = func(ns)
    return result
