"""Forwarding rules: what may cross, from which ingress, to which egress.

Owns the rule language: the rule model (frozen dataclasses), its two syntaxes (the one-line form
used by `--rule` and the RULES env var, and the YAML rule file, read with crosscast.yamlfile),
validation and the rule-table printout. The hot-path index built from validated rules is
crosscast.relay.ruleindex. Nothing crosses without a rule, and a rule is one-way.

Pure: no sockets, no interface look-ups, no environment. Callers pass in the interfaces that
exist and the mesh port; this module never asks the system.

The parsers reject every problem that lies within one rule (so a parsed rule is always
well-formed); `validate_rules` repeats those checks for rules built in code and adds the ones
that need the whole set or the host (duplicate names, missing interfaces, the mesh port).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crosscast.relay.ratelimit import default_burst

if TYPE_CHECKING:
    # PyYAML costs 1.3 MB of RSS: the functions that read or write a rule file import it, so a
    # relay whose rules come from --rule or RULES never loads it.
    import yaml

    from crosscast import yamlfile

MESH = "mesh"

PORT_MIN = 1
PORT_MAX = 65535
MULTICAST_NET = (0xE0000000, 4)  # 224.0.0.0/4, RFC 5771
# 224.0.0.0/24 is the Local Network Control Block (RFC 5771 section 4): "not forwarded by
# routers". Relaying it (all-hosts, all-routers, mDNS, RIP, ...) would break the isolation that
# VLANs promise, so validation rejects such groups.
LOCAL_CONTROL_NET = (0xE0000000, 24)
IFNAMSIZ = 16  # linux/if.h, counting the terminating NUL

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_IFACE_RE = re.compile(rf"[^/:,\s]{{1,{IFNAMSIZ - 1}}}")
_PORT_RE = re.compile(r"(\d+)(?:-(\d+))?")

# One-line keywords; the plural spellings are accepted because people type them.
_KEYWORDS = {
    "from": "from",
    "to": "to",
    "port": "port",
    "ports": "port",
    "group": "group",
    "groups": "group",
    "broadcast": "broadcast",
    "allow": "allow",
    "deny": "deny",
    "rate": "rate",
    "burst": "burst",
}
_KEYWORD_LIST = "from, to, port, group, broadcast, allow, deny, rate, burst"
_YAML_KEYS = (
    "name", "from", "to", "ports", "broadcast", "groups", "allow", "deny", "rate", "burst"
)  # fmt: skip
# A rate limit above this is a typo (a 10 Gbit/s segment carries ~15 million frames per second).
RATE_MAX = 10_000_000
_RATE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/\s*s)?")


@dataclass(frozen=True, slots=True, order=True)
class PortRange:
    """UDP destination ports `first`..`last`, inclusive."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not PORT_MIN <= self.first <= self.last <= PORT_MAX:
            raise ValueError(f"bad port range {self.first}-{self.last}")

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One one-way forwarding rule. Build with the parsers, or check with `validate_rules`."""

    name: str
    ingress: str
    egress: tuple[str, ...]
    ports: tuple[PortRange, ...]
    broadcast: bool
    groups: tuple[int, ...]
    allow: tuple[tuple[int, int], ...] = ()
    deny: tuple[tuple[int, int], ...] = ()
    origin: str = ""
    rate: float | None = None  # frames per second this rule may relay (None: no limit)
    burst: int | None = None  # frames at once; the parsers fill it in when `rate` is given

    def admits_source(self, src_ip: int) -> bool:
        """Deny wins over allow; an empty allow list admits any source."""
        for net in self.deny:
            if _in_cidr(src_ip, net):
                return False
        if not self.allow:
            return True
        return any(_in_cidr(src_ip, net) for net in self.allow)


class RuleError(ValueError):
    """A local mistake in the rules. `str()` is one line, prefixed with where it came from."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problems: list[str] = [problem]


class RuleErrors(RuleError):
    """Several problems at once; `str()` gives one problem per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        ValueError.__init__(self, "\n".join(problems))
        self.problems = list(problems)


def _raise_if(problems: Sequence[str]) -> None:
    if len(problems) == 1:
        raise RuleError(problems[0])
    if problems:
        raise RuleErrors(problems)


# --- small value helpers ----------------------------------------------------------------------


class _Problem(ValueError):
    """A message about one value, raised by the item parsers and prefixed by their caller."""


def _in_cidr(ip: int, net: tuple[int, int]) -> bool:
    return (ip ^ net[0]) >> (32 - net[1]) == 0


def ip_to_str(ip: int) -> str:
    return str(ipaddress.IPv4Address(ip))


def _cidr_to_str(net: tuple[int, int]) -> str:
    return f"{ip_to_str(net[0])}/{net[1]}"


def coalesce(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """Sorted, with overlapping and adjacent ranges merged."""
    merged: list[PortRange] = []
    for r in sorted(ranges):
        if merged and r.first <= merged[-1].last + 1:
            if r.last > merged[-1].last:
                merged[-1] = PortRange(merged[-1].first, r.last)
        else:
            merged.append(r)
    return tuple(merged)


def _parse_port_item(item: object) -> PortRange:
    if isinstance(item, bool) or not isinstance(item, int | str):
        raise _Problem(f"{item!r} is not a port or port range")
    text = str(item).strip()
    m = _PORT_RE.fullmatch(text)
    if m is None:
        raise _Problem(f"'{text}' is not a port or port range (use 5076 or 5000-5010)")
    first = int(m.group(1))
    last = first if m.group(2) is None else int(m.group(2))
    for port in (first, last):
        if not PORT_MIN <= port <= PORT_MAX:
            raise _Problem(f"port {port} is out of range {PORT_MIN}-{PORT_MAX}")
    if first > last:
        raise _Problem(f"port range {first}-{last} runs backwards (did you mean {last}-{first}?)")
    return PortRange(first, last)


def _parse_iface_item(item: object) -> str:
    if not isinstance(item, str):
        raise _Problem(f"{item!r} is not an interface name")
    if not _IFACE_RE.fullmatch(item) or item in (".", ".."):
        raise _Problem(
            f"'{item}' is not an interface name (at most {IFNAMSIZ - 1} characters, no '/' ':' ',')"
        )
    return item


def _parse_group_item(item: object) -> int:
    if not isinstance(item, str):
        raise _Problem(f"group {item!r} is not an IPv4 address")
    try:
        return int(ipaddress.IPv4Address(item.strip()))
    except ValueError:
        raise _Problem(f"group '{item}' is not an IPv4 address") from None


def _parse_group_port_item(item: object) -> tuple[int, tuple[PortRange, ...]]:
    """A group, or GROUP:PORT (the topology file's spelling): the port joins the rule's."""
    if isinstance(item, str) and ":" in item:
        group, _, port = item.partition(":")
        return _parse_group_item(group), (_parse_port_item(port),)
    return _parse_group_item(item), ()


def _parse_cidr_item(item: object, key: str) -> tuple[int, int]:
    if not isinstance(item, str):
        raise _Problem(f"{key} {item!r} is not an IPv4 address or CIDR")
    text = item.strip()
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as e:
        if "host bits set" in str(e):
            loose = ipaddress.IPv4Network(text, strict=False)
            raise _Problem(f"{key} {text} has host bits set (did you mean {loose}?)") from None
        raise _Problem(f"{key} '{text}' is not an IPv4 address or CIDR") from None
    return int(net.network_address), net.prefixlen


def _parse_rate_item(item: object) -> float:
    """A rate: a positive number of frames per second, written N or N/s."""
    if isinstance(item, bool) or not isinstance(item, int | float | str):
        raise _Problem(f"rate {item!r} is not a number of frames per second")
    m = _RATE_RE.fullmatch(str(item).strip())
    if m is None:
        raise _Problem(f"rate '{item}' is not a number of frames per second (use 500 or 500/s)")
    rate = float(m.group(1))
    if not 0 < rate <= RATE_MAX:
        raise _Problem(f"rate {m.group(1)} is out of range (more than 0, at most {RATE_MAX}/s)")
    return rate


def _parse_burst_item(item: object) -> int:
    """A burst: a whole number of frames, at least 1."""
    text = str(item).strip()
    if isinstance(item, bool) or not isinstance(item, int | str) or not text.isdigit():
        raise _Problem(f"burst {item!r} is not a whole number of frames")
    burst = int(text)
    if not 1 <= burst <= RATE_MAX:
        raise _Problem(f"burst {burst} is out of range 1-{RATE_MAX}")
    return burst


def _check_name(name: str) -> None:
    if not _NAME_RE.fullmatch(name):
        raise _Problem(
            f"'{name}' is not a valid rule name (letters, digits, '_', '.', '-'; at most 64)"
        )
    if name in _KEYWORDS:
        raise _Problem(f"'{name}' is a keyword and cannot be a rule name")


def _where(origin: str, name: str | None) -> str:
    parts = [p for p in (origin, f"rule '{name}'" if name else "") if p]
    return ": ".join(parts) + ": " if parts else ""


# --- checks on one rule -----------------------------------------------------------------------


def _rule_problems(rule: Rule) -> list[tuple[str | None, str]]:
    """Problems within one rule, as (key it concerns or None, message without prefix)."""
    out: list[tuple[str | None, str]] = []
    try:
        _check_name(rule.name)
    except _Problem as e:
        out.append(("name", str(e)))
    if not rule.ingress:
        out.append(("from", "has no ingress ('from')"))
    if not rule.egress:
        out.append(("to", "has no egress ('to' is empty)"))
    if rule.ingress == MESH and MESH in rule.egress:
        out.append(("to", "forwards from mesh to mesh, which would bounce frames between relays"))
    elif rule.ingress and rule.ingress in rule.egress:
        out.append(("to", f"forwards back to its own ingress '{rule.ingress}'"))
    seen: set[str] = set()
    for name in rule.egress:
        if name in seen:
            out.append(("to", f"'{name}' is listed twice in 'to'"))
        seen.add(name)
    if not rule.ports:
        out.append(("ports", "has no ports"))
    if not rule.broadcast and not rule.groups:
        out.append(("broadcast", "matches nothing: broadcast is off and no groups are given"))
    for group in rule.groups:
        if not _in_cidr(group, MULTICAST_NET):
            out.append(("groups", f"group {ip_to_str(group)} is not multicast (224.0.0.0/4)"))
        elif _in_cidr(group, LOCAL_CONTROL_NET):
            out.append(
                (
                    "groups",
                    f"group {ip_to_str(group)} is in the local network control block "
                    "224.0.0.0/24, which is never relayed (RFC 5771)",
                )
            )
    if rule.rate is not None and not 0 < rule.rate <= RATE_MAX:
        out.append(
            ("rate", f"rate {rule.rate:g} is out of range (more than 0, at most {RATE_MAX}/s)")
        )
    if rule.burst is not None:
        if rule.rate is None:
            out.append(("burst", "has a burst but no rate"))
        elif not 1 <= rule.burst <= RATE_MAX:
            out.append(("burst", f"burst {rule.burst} is out of range 1-{RATE_MAX}"))
    for key, nets in (("allow", rule.allow), ("deny", rule.deny)):
        for net, plen in nets:
            if not 0 <= plen <= 32 or not 0 <= net <= 0xFFFFFFFF or not _in_cidr(net, (net, plen)):
                out.append((key, f"{key} ({net}, {plen}) is not a CIDR"))
            elif net & ((1 << (32 - plen)) - 1):
                out.append((key, f"{key} {_cidr_to_str((net, plen))} has host bits set"))
    return out


def validate_rules(
    rules: Sequence[Rule], *, interfaces: Collection[str] | None, mesh_port: int | None
) -> list[str]:
    """One line per problem, each prefixed with the rule's origin; empty when all is well.

    `interfaces`: the names that exist on this host (None: do not check). `mesh_port`: the
    mesh's UDP port (None: no mesh), which a rule touching the mesh must not relay, or the
    relay would capture its own mesh traffic.
    """
    problems: list[str] = []
    first_by_name: dict[str, Rule] = {}
    for rule in rules:
        where = _where(rule.origin, rule.name)
        if rule.name in first_by_name:
            other = first_by_name[rule.name].origin or "an earlier rule"
            problems.append(f"{where}duplicate name (also defined at {other})")
        else:
            first_by_name[rule.name] = rule
        problems.extend(where + message for _, message in _rule_problems(rule))
        touches_mesh = rule.ingress == MESH or MESH in rule.egress
        if mesh_port is not None and touches_mesh:
            for r in rule.ports:
                if mesh_port in r:
                    what = f"port {r} is" if r.first == r.last else f"ports {r} include"
                    problems.append(
                        f"{where}{what} the mesh port {mesh_port}; a rule that touches the mesh "
                        "cannot relay it"
                    )
    if interfaces is not None:
        # one line per missing interface, naming every rule that uses it
        users: dict[str, list[Rule]] = {}
        for rule in rules:
            for name in dict.fromkeys((rule.ingress, *rule.egress)):
                if name and name != MESH and name not in interfaces:
                    users.setdefault(name, []).append(rule)
        have = ", ".join(sorted(interfaces)) or "none"
        for name, rs in users.items():
            if len(rs) == 1:
                where = _where(rs[0].origin, rs[0].name)
                problems.append(f"{where}interface '{name}' does not exist (have: {have})")
            else:
                names = ", ".join(f"'{r.name}'" for r in rs)
                problems.append(
                    f"{_where(rs[0].origin, None)}interface '{name}' does not exist "
                    f"(have: {have}); used by rules {names}"
                )
    return problems


# --- one-line syntax --------------------------------------------------------------------------


def _parse_line(text: str, origin: str, problems: list[str]) -> Rule | None:
    # "to eth2, eth3" and "to eth2 ,eth3" mean "to eth2,eth3".
    words = re.sub(r"\s*,\s*", ",", text.strip()).split()
    if not words:
        problems.append(f"{_where(origin, None)}empty rule")
        return None
    name = words[0]
    if name in _KEYWORDS:
        problems.append(f"{_where(origin, None)}rule has no name: start with NAME, before '{name}'")
        return None
    where = _where(origin, name)
    try:
        _check_name(name)
    except _Problem as e:
        problems.append(f"{_where(origin, None)}{e}")
        return None

    ingress: str | None = None
    lists = _Lists()
    broadcast_word = False
    seen: set[str] = set()
    before = len(problems)
    i = 1
    while i < len(words):
        word = words[i]
        kw = _KEYWORDS.get(word)
        i += 1
        if kw is None:
            problems.append(f"{where}unexpected word '{word}' (expected one of: {_KEYWORD_LIST})")
            continue
        if kw in seen:
            problems.append(f"{where}'{word}' is given twice")
        seen.add(kw)
        if kw == "broadcast":
            broadcast_word = True
            continue
        if i >= len(words) or words[i] in _KEYWORDS:
            got = f", got '{words[i]}'" if i < len(words) else ""
            problems.append(f"{where}'{word}' needs a value{got}")
            continue
        value = words[i]
        i += 1
        if kw in ("rate", "burst"):
            try:
                if kw == "rate":
                    lists.rate = _parse_rate_item(value)
                else:
                    lists.burst = _parse_burst_item(value)
            except _Problem as e:
                problems.append(f"{where}{e}")
            continue
        for item in value.split(","):
            try:
                if item == "":
                    raise _Problem(f"empty item in '{word} {value}'")
                if kw == "from":
                    if "," in value:
                        raise _Problem(f"'from {value}': a rule has exactly one ingress")
                    ingress = _parse_iface_item(item)
                    break
                lists.add(_YAML_KEY_OF.get(kw, kw), item, _parse_iface_item)
            except _Problem as e:
                problems.append(f"{where}{e}")
    if ingress is None and "from" not in seen:
        problems.append(f"{where}missing 'from IFACE'")
    if "to" not in seen:
        problems.append(f"{where}missing 'to IFACE[,IFACE...]'")
    if "port" not in seen and not lists.ports:  # a group's own port counts (GROUP:PORT)
        problems.append(f"{where}missing 'port P[,LO-HI...]'")
    if len(problems) > before:
        return None
    rule = lists.rule(name, ingress or "", broadcast_word or None, origin)
    problems.extend(where + message for _, message in _rule_problems(rule))
    return rule if len(problems) == before else None


# The one-line keywords that differ from the YAML keys (one-line takes the plural too).
_YAML_KEY_OF = {"port": "ports", "group": "groups"}


@dataclass
class _Lists:
    """The list values of one rule while it is parsed, in either syntax."""

    egress: list[str] = field(default_factory=list)
    ports: list[PortRange] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    allow: list[tuple[int, int]] = field(default_factory=list)
    deny: list[tuple[int, int]] = field(default_factory=list)
    rate: float | None = None
    burst: int | None = None

    def add(self, key: str, item: object, endpoint: Callable[[object], str]) -> None:
        """One item of `key` (to, ports, groups, allow, deny); raises ValueError."""
        if key == "to":
            self.egress.append(endpoint(item))
        elif key == "ports":
            self.ports.append(_parse_port_item(item))
        elif key == "groups":
            group, port = _parse_group_port_item(item)
            self.groups.append(group)
            self.ports.extend(port)
        elif key == "allow":
            self.allow.append(_parse_cidr_item(item, "allow"))
        else:
            self.deny.append(_parse_cidr_item(item, "deny"))

    def rule(self, name: str, ingress: str, broadcast: bool | None, origin: str) -> Rule:
        return _make_rule(
            name,
            ingress,
            self.egress,
            self.ports,
            self.groups,
            broadcast,
            self.allow,
            self.deny,
            origin,
            self.rate,
            self.burst,
        )


def _make_rule(
    name: str,
    ingress: str,
    egress: Sequence[str],
    ports: Iterable[PortRange],
    groups: Iterable[int],
    broadcast: bool | None,
    allow: Iterable[tuple[int, int]],
    deny: Iterable[tuple[int, int]],
    origin: str,
    rate: float | None = None,
    burst: int | None = None,
) -> Rule:
    """Canonical form: ports sorted and merged, groups and CIDRs sorted without repeats.

    `broadcast` None means the default: on without groups, off with them. A rate without a
    burst gets the default burst (ratelimit.default_burst: 0.1 s of frames).
    """
    group_t = tuple(sorted(set(groups)))
    if broadcast is None:
        broadcast = not group_t
    return Rule(
        name=name,
        ingress=ingress,
        egress=tuple(egress),
        ports=coalesce(ports),
        broadcast=bool(broadcast),
        groups=group_t,
        allow=tuple(sorted(set(allow))),
        deny=tuple(sorted(set(deny))),
        origin=origin,
        rate=rate,
        burst=default_burst(rate) if rate and burst is None else burst,
    )


def parse_rule_text(text: str, origin: str) -> Rule:
    """Parse `NAME from IFACE to IFACE[,IFACE...] port P[,LO-HI...] [group G[,G...]]
    [broadcast] [allow CIDR[,...]] [deny CIDR[,...]] [rate N[/s] [burst M]]` (keywords in any
    order after NAME).

    Broadcast is on when no group is given; with groups, only if the `broadcast` word is there.
    A group may carry its port (G:PORT), which joins the rule's ports; `port` may then go.
    """
    problems: list[str] = []
    rule = _parse_line(text, origin, problems)
    _raise_if(problems)
    if rule is None:  # cannot happen: no problems means a rule
        raise RuleError(f"{origin}: not a rule")
    return rule


def parse_rules_text(text: str, origin: str) -> tuple[Rule, ...]:
    """Several one-line rules separated by ';' or newlines (the RULES env var).

    Blank parts and lines starting with '#' are skipped. Each rule's origin is
    `"<origin> #<n>"`, counting rules from 1. All problems are collected.
    """
    problems: list[str] = []
    rules: list[Rule] = []
    parts = [p.strip() for p in re.split(r"[;\n]", text)]
    for n, part in enumerate((p for p in parts if p and not p.startswith("#")), start=1):
        rule = _parse_line(part, f"{origin} #{n}", problems)
        if rule is not None:
            rules.append(rule)
    _raise_if(problems)
    return tuple(rules)


# --- YAML file --------------------------------------------------------------------------------


def load_rules_yaml(text: str, filename: str) -> tuple[Rule, ...]:
    """Load a `rules:` file. Every problem is reported as `FILE:LINE:COLUMN: ...`, all at once."""
    import yaml  # lazy: only a rule file needs PyYAML (see TYPE_CHECKING above)

    from crosscast import yamlfile

    try:
        root = yamlfile.compose(text, filename)
    except yamlfile.YamlSyntaxError as e:
        raise RuleError(str(e)) from None
    if root is None:
        raise RuleError(f"{filename}:1:1: empty file; expected a 'rules:' list")
    if not isinstance(root, yaml.MappingNode):
        where = yamlfile.where(filename, root)
        raise RuleError(f"{where}: expected a mapping with a 'rules:' list")
    with yamlfile.Constructor(filename) as constructor:
        return _load_root(root, filename, constructor)


def _load_root(
    root: yaml.MappingNode, filename: str, loader: yamlfile.Constructor
) -> tuple[Rule, ...]:
    import yaml  # lazy: a rule file's reader

    from crosscast import yamlfile

    problems = yamlfile.Problems(filename)
    rules_node: yaml.Node | None = None
    for key_node, value_node in root.value:
        key = loader.value(key_node, problems)
        if key == "rules":
            if rules_node is not None:
                problems.add(key_node, "'rules' is given twice")
            rules_node = value_node
        else:
            problems.add(key_node, f"unknown top-level key {key!r} (expected 'rules')")
    rules: list[Rule] = []
    if rules_node is None:
        problems.add(root, "no 'rules:' list")
    elif isinstance(rules_node, yaml.SequenceNode):
        for item in rules_node.value:
            rule = rule_from_node(item, loader, problems)
            if rule is not None:
                rules.append(rule)
    elif not yamlfile.is_null(rules_node):
        problems.add(rules_node, "'rules' must be a list of rules")
    _raise_if(problems.lines())
    return tuple(rules)


def parse_interface(value: object) -> str:
    """A rule end in the relay's own files: an interface name (or "mesh"); raises ValueError."""
    return _parse_iface_item(value)


def rule_from_node(
    node: yaml.Node,
    loader: yamlfile.Constructor,
    problems: yamlfile.Problems,
    *,
    endpoint: Callable[[object], str] = parse_interface,
) -> Rule | None:
    """One rule mapping of a YAML file, checked on its own; None (and problems) if it is bad.

    The relay's rule file and the topology file both read their rules here. `endpoint` checks
    a `from`/`to` value: an interface name for the relay, a VLAN name for the topology (which
    maps VLANs to the router's interfaces when it renders the relay's file). A group may carry
    its port ("233.54.12.234:22001"), which joins the rule's ports.
    """
    import yaml  # lazy: a rule file's reader

    from crosscast import yamlfile

    origin = yamlfile.where(loader.filename, node)
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, "each rule must be a mapping (name:, from:, to:, ports:)")
        return None
    before = len(problems)
    keys: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        key = loader.value(key_node, problems)
        if not isinstance(key, str) or key not in _YAML_KEYS:
            import difflib  # lazy: only a misspelt key needs "did you mean"

            hint = difflib.get_close_matches(str(key), _YAML_KEYS, n=1)
            also = (
                f" (did you mean '{hint[0]}'?)" if hint else f" (expected {', '.join(_YAML_KEYS)})"
            )
            problems.add(key_node, f"unknown key {key!r}{also}")
        elif key in keys:
            first = yamlfile.position(keys[key][0])[0]
            problems.add(key_node, f"'{key}' is given twice (first on line {first})")
        else:
            keys[key] = (key_node, value_node)

    name: str | None = None
    if "name" not in keys:
        problems.add(node, "rule has no 'name'")
    else:
        value_node = keys["name"][1]
        value = loader.value(value_node, problems)
        try:
            if not isinstance(value, str):
                raise _Problem(f"rule name {value!r} is not a string")
            _check_name(value)
            name = value
        except _Problem as e:
            problems.add(value_node, str(e))
    named = _where("", name)

    def items(key: str) -> list[tuple[yaml.Node, object]]:
        value_node = keys[key][1]
        if isinstance(value_node, yaml.SequenceNode):
            pairs = [(n, loader.value(n, problems)) for n in value_node.value]
        else:
            pairs = [(value_node, loader.value(value_node, problems))]
        out: list[tuple[yaml.Node, object]] = []
        for n, v in pairs:
            if isinstance(v, str) and "," in v:
                out.extend((n, piece.strip()) for piece in v.split(","))
            elif v is not None or not isinstance(value_node, yaml.ScalarNode):
                out.append((n, v))
        return out

    ingress = ""
    if "from" not in keys:
        problems.add(node, f"{named}missing 'from'")
    else:
        value_node = keys["from"][1]
        value = loader.value(value_node, problems)
        try:
            ingress = endpoint(value)
        except ValueError as e:
            problems.add(value_node, f"{named}'from': {e}")
    if "to" not in keys:
        problems.add(node, f"{named}missing 'to'")

    lists = _Lists()
    for key in ("to", "ports", "groups", "allow", "deny"):
        if key not in keys:
            continue
        for item_node, value in items(key):
            try:
                lists.add(key, value, endpoint)
            except ValueError as e:
                problems.add(item_node, f"{named}{e}")
    if "ports" not in keys and not lists.ports:
        problems.add(node, f"{named}missing 'ports'")

    broadcast: bool | None = None
    for key, parse in (("rate", _parse_rate_item), ("burst", _parse_burst_item)):
        if key in keys:
            value_node = keys[key][1]
            try:
                setattr(lists, key, parse(loader.value(value_node, problems)))
            except _Problem as e:
                problems.add(value_node, f"{named}{e}")

    if "broadcast" in keys:
        value_node = keys["broadcast"][1]
        value = loader.value(value_node, problems)
        if isinstance(value, bool):
            broadcast = value
        else:
            problems.add(value_node, f"{named}'broadcast' must be true or false, not {value!r}")

    if len(problems) > before or name is None:
        return None
    rule = lists.rule(name, ingress, broadcast, origin)
    for key, message in _rule_problems(rule):
        problems.add(keys[key][0] if key is not None and key in keys else node, named + message)
    return rule if len(problems) == before else None


# --- SnowSignal flags -------------------------------------------------------------------------


def snowsignal_rules(interface: str, port: int) -> tuple[Rule, Rule]:
    """`-t IFACE -b PORT` as rules: broadcast to PORT from IFACE to the mesh, and back."""
    origin = "snowsignal flags"
    try:
        iface = _parse_iface_item(interface)
        ports = (_parse_port_item(port),)
    except _Problem as e:
        raise RuleError(f"{origin}: {e}") from None
    return (
        Rule("snowsignal-out", iface, (MESH,), ports, True, (), origin=origin),
        Rule("snowsignal-in", MESH, (iface,), ports, True, (), origin=origin),
    )


# --- printout ---------------------------------------------------------------------------------

_COLUMNS = ("NAME", "FROM", "TO", "MATCH", "SOURCES", "LIMIT", "ORIGIN")


def _limit_text(rule: Rule) -> str:
    return f"{rule.rate:g}/s burst {rule.burst}" if rule.rate else "-"


def _match_text(rule: Rule) -> str:
    what = (["broadcast"] if rule.broadcast else []) + [ip_to_str(g) for g in rule.groups]
    ports = ",".join(str(r) for r in rule.ports) or "(none)"
    return f"{','.join(what) or '(nothing)'} port {ports}"


def _sources_text(rule: Rule) -> str:
    allowed = ",".join(_cidr_to_str(n) for n in rule.allow) or "any"
    if not rule.deny:
        return allowed
    return f"{allowed} except {','.join(_cidr_to_str(n) for n in rule.deny)}"


def format_rule_table(rules: Sequence[Rule]) -> str:
    """An aligned plain-text table, one rule per line in the given order; ends with a newline."""
    rows = [_COLUMNS] + [
        (
            rule.name,
            rule.ingress,
            ",".join(rule.egress) or "(nowhere)",
            _match_text(rule),
            _sources_text(rule),
            _limit_text(rule),
            rule.origin or "-",
        )
        for rule in rules
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if not rules:
        lines.append("(no rules: nothing is relayed)")
    return "\n".join(lines) + "\n"


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    """A rule as the rule file spells it, every key present (for YAML and JSON output)."""
    return {
        "name": rule.name,
        "from": rule.ingress,
        "to": list(rule.egress),
        "ports": [r.first if r.first == r.last else str(r) for r in rule.ports],
        "groups": [ip_to_str(g) for g in rule.groups],
        "broadcast": rule.broadcast,
        "allow": [_cidr_to_str(n) for n in rule.allow],
        "deny": [_cidr_to_str(n) for n in rule.deny],
        **({"rate": rule.rate, "burst": rule.burst} if rule.rate else {}),
    }


def format_rules_yaml(rules: Sequence[Rule]) -> str:
    """The rule file that `load_rules_yaml` reads back as these rules, every key spelled out."""
    import yaml  # lazy: only the topology helper writes rule files

    data = {"rules": [rule_to_dict(rule) for rule in rules]}
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
