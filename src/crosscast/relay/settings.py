"""The relay's settings: one validated, frozen object, made at the edge.

This is the only module that reads the environment (through ConfigArgParse, which is handed
the environment explicitly so tests pass their own). Precedence: CLI > env > config file >
defaults. SnowSignal's flags, env vars and defaults are accepted unchanged; they are the
one-rule-pair case of crosscast's forwarding rules.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import configargparse

from crosscast.relay.envelope import parse_secret
from crosscast.relay.ratelimit import DEFAULT_EGRESS_RATE
from crosscast.relay.rules import (
    MESH,
    Rule,
    RuleError,
    load_rules_yaml,
    parse_rule_text,
    parse_rules_text,
    snowsignal_rules,
    validate_rules,
)

MESH_FORMATS = ("crosscast", "snowsignal")
OUTPUT_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Bytes; sized for bursts, not backlog (issue 8): the kernel doubles it to 512 KiB of skb
# "truesize", some 230 full-size or 500 small frames, a few ms at the relay's usable max. The
# old 4 MiB (8 MiB in the kernel) queued for hundreds of ms under overload instead of dropping.
# A capture with an RX ring is bounded by the ring, not by this.
DEFAULT_RCVBUF = 256 * 1024
# The underlay path MTU of the mesh: what one mesh datagram (IP + UDP + envelope + frame) may
# take without IP fragmentation of its own (see relay/envelope.py: larger frames go as PARTs).
DEFAULT_MESH_MTU = 1500
MESH_MTU_MIN = 576  # RFC 791: every IPv4 host must accept datagrams of 576 bytes
# The CPU time slice the relay asks the kernel for, in µs (relay/sched.py): its shortest.
DEFAULT_SCHEDULER_SLICE = 100
SCHEDULER_SLICE_RANGE = (100, 100_000)  # what the kernel allows; 0 = keep the kernel's


class SettingsError(ValueError):
    """A local mistake in the configuration: one line per problem, exit status 2."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class RelaySettings:
    rules: tuple[Rule, ...]
    mesh_port: int = 7124
    mesh_format: str = "crosscast"
    mesh_secret: bytes | None = None
    other_relays: tuple[str, ...] = ()
    service_name: str | None = None
    discovery_interval: float = 10.0
    log_level: str = "info"
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    rcvbuf: int = DEFAULT_RCVBUF
    event_loop: str = "auto"
    egress_rate: int = DEFAULT_EGRESS_RATE  # frames per second per egress interface; 0 = off
    mesh_mtu: int = DEFAULT_MESH_MTU
    scheduler_slice: int = DEFAULT_SCHEDULER_SLICE  # µs; 0 = the kernel's default
    wait_for_interfaces: bool = False
    decode_pvaccess: bool = False
    log_format: str = "plain"
    peers_dns: tuple[str, ...] = ()
    check: bool = False
    output_format: str = "text"  # of --check
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def interfaces(self) -> tuple[str, ...]:
        """Every interface some rule captures on or emits to, in first-use order."""
        seen: dict[str, None] = {}
        for rule in self.rules:
            for name in (rule.ingress, *rule.egress):
                if name != MESH:
                    seen.setdefault(name, None)
        return tuple(seen)

    @property
    def uses_mesh(self) -> bool:
        return any(r.ingress == MESH or MESH in r.egress for r in self.rules)

    @property
    def peer_names(self) -> tuple[str, ...]:
        """What discovery resolves: the static relays, the --peers-dns names, then Swarm's
        tasks.<SERVICENAME> (the Swarm shortcut for `--peers-dns tasks.NAME`)."""
        names = (*self.other_relays, *self.peers_dns)
        return (*names, f"tasks.{self.service_name}") if self.service_name else names


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is out of range 1-65535")
    return value


def _scheduler_slice(text: str) -> int:
    value = int(text)
    low, high = SCHEDULER_SLICE_RANGE
    if value and not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"scheduler slice {value} us is out of range {low}-{high} (or 0 for the kernel's)"
        )
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def _mesh_mtu(text: str) -> int:
    value = int(text)
    if not MESH_MTU_MIN <= value <= 65535:
        raise argparse.ArgumentTypeError(f"mesh MTU {value} is out of range {MESH_MTU_MIN}-65535")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return value


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter given the terminal's width, so that argparse does not import shutil
    to ask for it: it builds a formatter for every option it adds, and shutil brings bz2 and
    lzma (0.7 MB of RSS) into every relay for a --help that is rarely asked for."""

    def __init__(self, prog: str) -> None:
        columns = 80  # not a terminal: shutil.get_terminal_size's fallback
        if sys.__stdout__ is not None:
            with contextlib.suppress(ValueError, OSError):
                columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        super().__init__(prog, width=columns - 2)  # the margin argparse leaves itself


class _Parser(configargparse.ArgParser):  # type: ignore[misc]
    """An ArgumentParser whose errors are one line, raised instead of printed, and which keeps
    the relay's options in `options` (argparse offers no public list of them)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.options: list[argparse.Action] = []

    def option(self, group: Any, *flags: str, **kwargs: Any) -> argparse.Action:
        action: argparse.Action = group.add_argument(*flags, **kwargs)
        self.options.append(action)
        return action

    def error(self, message: str) -> Any:
        raise SettingsError([message])


def build_parser() -> _Parser:
    p = _Parser(
        prog="crosscast relay",
        formatter_class=_HelpFormatter,
        description="Relay UDP broadcast and multicast between interfaces and a mesh of relays.",
        args_for_setting_config_path=["-c", "--config"],
        config_arg_help_message="config file (key = value lines; CLI > env > file > defaults)",
    )
    snow = p.add_argument_group("SnowSignal-compatible options")
    p.option(
        snow,
        "-t",
        "--target-interface",
        env_var="TARGET_INTERFACE",
        default="eth0",
        help="interface to capture on and rebroadcast to (default: eth0)",
    )
    p.option(
        snow,
        "-b",
        "--broadcast-port",
        env_var="BDCAST_PORT",
        type=_port,
        default=5076,
        help="UDP port whose broadcasts are relayed (default: 5076)",
    )
    p.option(
        snow,
        "-m",
        "--mesh-port",
        env_var="MESH_PORT",
        type=_port,
        default=7124,
        help="UDP port of the mesh between relays (default: 7124)",
    )
    p.option(
        snow,
        "--other-relays",
        nargs="+",
        default=[],
        metavar="HOST",
        help="other relays (addresses or names); none and no SERVICENAME: talk to self",
    )
    p.option(
        snow,
        "-ll",
        "--log-level",
        env_var="LOGLEVEL",
        choices=LOG_LEVELS,
        default="info",
        help="logging level (default: info)",
    )
    p.option(
        snow,
        "--service-name",
        env_var="SERVICENAME",
        default=None,
        help="Swarm service name: peers are found as tasks.<name> in DNS",
    )
    p.option(
        snow,
        "--decode-pvaccess",
        env_var="DECODE_PVACCESS",
        action="store_true",
        help="decode PVAccess and Channel Access searches and beacons; log them at info"
        " (rate-limited) and count them per protocol",
    )
    mesh = p.add_argument_group("mesh")
    p.option(
        mesh,
        "--mesh-format",
        env_var="MESH_FORMAT",
        choices=MESH_FORMATS,
        default="crosscast",
        help="wire format to peers: crosscast (default) or snowsignal",
    )
    p.option(
        mesh,
        "--peers-dns",
        env_var="PEERS_DNS",
        nargs="+",
        default=[],
        metavar="NAME",
        help="DNS names with one A record per relay (a Kubernetes headless service),"
        " re-resolved every discovery interval",
    )
    p.option(
        mesh,
        "--mesh-secret-file",
        env_var="MESH_SECRET_FILE",
        default=None,
        metavar="PATH",
        help="shared secret: authenticate the mesh (HMAC-SHA256)",
    )
    p.option(
        mesh,
        "--discovery-interval",
        env_var="DISCOVERY_INTERVAL",
        type=_positive,
        default=10.0,
        metavar="SECONDS",
        help="how often peer names are resolved again (default: 10)",
    )
    p.option(
        mesh,
        "--mesh-mtu",
        env_var="MESH_MTU",
        type=_mesh_mtu,
        default=DEFAULT_MESH_MTU,
        metavar="BYTES",
        help="path MTU between relays: a frame too large for one mesh datagram is cut into "
        f"parts that fit, so no datagram needs IP fragmentation (default: {DEFAULT_MESH_MTU})",
    )
    rules = p.add_argument_group("forwarding rules (replace the SnowSignal pair when given)")
    p.option(
        rules,
        "--rule",
        action="append",
        default=[],
        metavar="RULE",
        help="'NAME from IF to IF[,IF|mesh] port P[,LO-HI] [group G] "
        "[broadcast] [allow CIDR] [deny CIDR] [rate N[/s] [burst M]]' (repeatable)",
    )
    p.option(
        rules,
        "--rules",
        env_var="RULES",
        default=None,
        metavar="RULES",
        help="several rules in the same syntax, separated by ';'",
    )
    p.option(
        rules,
        "--rules-file",
        env_var="RULES_FILE",
        default=None,
        metavar="PATH",
        help="YAML file of rules",
    )
    ops = p.add_argument_group("operation")
    p.option(
        ops,
        "--metrics-port",
        env_var="METRICS_PORT",
        type=_port,
        default=None,
        help="serve /metrics and /healthz over HTTP on this port",
    )
    p.option(
        ops,
        "--metrics-address",
        env_var="METRICS_ADDRESS",
        default="127.0.0.1",
        help="address the metrics server binds (default: 127.0.0.1)",
    )
    p.option(
        ops,
        "--rcvbuf",
        env_var="RCVBUF",
        type=int,
        default=DEFAULT_RCVBUF,
        metavar="BYTES",
        help="receive buffer of each socket (default: 256 KiB)",
    )
    p.option(
        ops,
        "--event-loop",
        env_var="EVENT_LOOP",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="ignored (kept so that old configurations still start): the relay runs asyncio's "
        "loop with epoll readers of its own",
    )
    p.option(
        ops,
        "--egress-rate",
        env_var="EGRESS_RATE",
        type=_non_negative_int,
        default=DEFAULT_EGRESS_RATE,
        metavar="FRAMES",
        help="at most this many frames per second into each interface, over all rules; "
        f"protects the segments from a storm (default: {DEFAULT_EGRESS_RATE}; 0 = off)",
    )
    p.option(
        ops,
        "--scheduler-slice",
        env_var="SCHEDULER_SLICE",
        type=_scheduler_slice,
        default=DEFAULT_SCHEDULER_SLICE,
        metavar="MICROSECONDS",
        help="CPU time slice to ask the kernel for (Linux 6.12+): a short one lets a woken "
        f"relay run before the tasks it would queue behind (default: {DEFAULT_SCHEDULER_SLICE}, "
        "the shortest; 0 = the kernel's default)",
    )
    p.option(
        ops,
        "--wait-for-interfaces",
        env_var="WAIT_FOR_INTERFACES",
        action="store_true",
        help="wait at start-up for interfaces the rules name that do not exist yet "
        "(default: fail at once)",
    )
    p.option(
        ops,
        "--log-format",
        env_var="LOG_FORMAT",
        choices=("plain", "json"),
        default="plain",
        help="plain (default; no timestamp when stderr is the journal) or json (one object a line)",
    )
    p.option(
        ops,
        "--check",
        action="store_true",
        help="validate the configuration, print the rule table and exit",
    )
    p.option(
        ops,
        "--format",
        dest="output_format",
        choices=OUTPUT_FORMATS,
        default="text",
        help="what --check prints: text (default) or one JSON object for scripts",
    )
    return p


def _sources(parser: _Parser, argv: Sequence[str]) -> dict[str, str]:
    """Which layer each setting came from: 'command line', 'env NAME' or 'config file PATH'."""
    out: dict[str, str] = {}
    for source, settings in parser.get_source_to_settings_dict().items():
        kind, _, where = source.partition("|")
        for key, (action, _value) in settings.items():
            if action is None:
                continue
            if kind == "environment_variables":
                out[action.dest] = f"env {key}"
            elif kind == "config_file":
                out[action.dest] = f"config file {where}"
    flags = {arg.split("=", 1)[0] for arg in argv if arg.startswith("-")}
    for action in parser.options:
        if flags.intersection(action.option_strings):
            out[action.dest] = "command line"
    return out


def env_vars() -> tuple[str, ...]:
    """Every environment variable `crosscast relay` reads, sorted (for whoever starts a relay
    and must keep its own environment from leaking into the relay's settings)."""
    names = {getattr(action, "env_var", None) for action in build_parser().options}
    return tuple(sorted(name for name in names if name))


def _read_rules_file(name: str) -> tuple[Rule, ...]:
    # open(), not pathlib, here and for the secret: pathlib costs 0.3 MB of RSS in the relay.
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise RuleError(f"cannot read rules file {name}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise RuleError(
            f"rules file {name} is not UTF-8 text ({e.reason} at byte {e.start})"
        ) from e
    return load_rules_yaml(text, name)


def _load_rules(ns: argparse.Namespace) -> tuple[list[Rule], list[str]]:
    """Rules from --rule flags, RULES and --rules-file: each source parsed on its own, so one
    bad rule does not hide the problems of the others."""
    rules: list[Rule] = []
    problems: list[str] = []
    parsers: list[Callable[[], Sequence[Rule]]] = [
        functools.partial(lambda t, o: (parse_rule_text(t, o),), text, f"--rule #{i}")
        for i, text in enumerate(ns.rule, 1)
    ]
    if ns.rules:
        parsers.append(functools.partial(parse_rules_text, ns.rules, "RULES"))
    if ns.rules_file:
        parsers.append(functools.partial(_read_rules_file, ns.rules_file))
    for parse in parsers:
        try:
            rules.extend(parse())
        except RuleError as e:
            problems.extend(getattr(e, "problems", None) or [str(e)])
    return rules, problems


def load(
    argv: Sequence[str], environ: Mapping[str, str], *, interfaces: Collection[str] | None = None
) -> RelaySettings:
    """Parse CLI + env + file into settings; raises SettingsError with one line per problem.

    With `interfaces` (the names present here), rules naming another interface are problems
    too; --check passes them, while a running relay finds a missing interface when it opens it.
    """
    parser = build_parser()
    ns = parser.parse_args(list(argv), env_vars=dict(environ))
    rules, problems = _load_rules(ns)
    if not (ns.rule or ns.rules or ns.rules_file):
        if ns.broadcast_port == ns.mesh_port:
            raise SettingsError(
                [f"the broadcast port and the mesh port are both {ns.mesh_port}; they must differ"]
            )
        rules.extend(snowsignal_rules(ns.target_interface, ns.broadcast_port))

    secret = None
    if ns.mesh_secret_file:
        try:
            with open(ns.mesh_secret_file, "rb") as f:
                secret = parse_secret(f.read())
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) else str(e)
            problems.append(f"cannot read mesh secret file {ns.mesh_secret_file}: {reason}")
        if ns.mesh_format == "snowsignal":
            problems.append(
                "--mesh-secret-file needs --mesh-format crosscast "
                "(the snowsignal format has no authentication)"
            )

    settings = RelaySettings(
        rules=tuple(rules),
        mesh_port=ns.mesh_port,
        mesh_format=ns.mesh_format,
        mesh_secret=secret,
        other_relays=tuple(ns.other_relays),
        service_name=ns.service_name or None,
        discovery_interval=ns.discovery_interval,
        log_level=ns.log_level,
        metrics_port=ns.metrics_port,
        metrics_address=ns.metrics_address,
        rcvbuf=ns.rcvbuf,
        event_loop=ns.event_loop,
        egress_rate=ns.egress_rate,
        mesh_mtu=ns.mesh_mtu,
        scheduler_slice=ns.scheduler_slice,
        wait_for_interfaces=ns.wait_for_interfaces,
        decode_pvaccess=ns.decode_pvaccess,
        log_format=ns.log_format,
        peers_dns=tuple(ns.peers_dns),
        check=ns.check,
        output_format=ns.output_format,
        sources=_sources(parser, argv),
    )
    if rules:
        problems.extend(
            validate_rules(
                settings.rules,
                interfaces=interfaces,
                mesh_port=settings.mesh_port if settings.uses_mesh else None,
            )
        )
    if problems:
        raise SettingsError(problems)
    return settings


def _peers_dest(settings: RelaySettings) -> str:
    if settings.other_relays:
        return "other_relays"
    return "peers_dns" if settings.peers_dns else "service_name"


def setting_rows(settings: RelaySettings) -> list[tuple[str, str, str]]:
    """The effective settings as (name, value, where it came from), in a stable order."""

    def src(dest: str) -> str:
        return settings.sources.get(dest, "default")

    secret = "set" if settings.mesh_secret else "none (unauthenticated)"
    peers = " ".join(settings.peer_names) or "self (no peers configured)"
    return [
        ("mesh port", str(settings.mesh_port), src("mesh_port")),
        ("mesh format", settings.mesh_format, src("mesh_format")),
        ("mesh secret", secret, src("mesh_secret_file")),
        ("peers", peers, src(_peers_dest(settings))),
        ("discovery interval", f"{settings.discovery_interval:g} s", src("discovery_interval")),
        ("log level", settings.log_level, src("log_level")),
        ("log format", settings.log_format, src("log_format")),
        ("decode pvaccess", "on" if settings.decode_pvaccess else "off", src("decode_pvaccess")),
        (
            "metrics",
            f"{settings.metrics_address}:{settings.metrics_port}"
            if settings.metrics_port
            else "off",
            src("metrics_port"),
        ),
        (
            "egress rate",
            f"{settings.egress_rate}/s per interface" if settings.egress_rate else "off",
            src("egress_rate"),
        ),
        ("mesh mtu", f"{settings.mesh_mtu} bytes", src("mesh_mtu")),
        (
            "scheduler slice",
            f"{settings.scheduler_slice} us" if settings.scheduler_slice else "the kernel's",
            src("scheduler_slice"),
        ),
        (
            "missing interfaces",
            "wait for them" if settings.wait_for_interfaces else "fail at start-up",
            src("wait_for_interfaces"),
        ),
    ]


def describe(settings: RelaySettings) -> list[str]:
    """The effective settings, one per line, with where each came from (for logs and --check)."""
    rows = setting_rows(settings)
    width = max(len(r[0]) for r in rows)
    return [f"{name:<{width}}  {value}  [{origin}]" for name, value, origin in rows]
