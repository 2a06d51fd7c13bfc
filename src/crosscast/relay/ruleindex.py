"""The rules indexed for the hot path: which rules a captured datagram matches, in O(1).

Owns `RuleTable`, built once from validated rules (crosscast.relay.rules owns the language:
parsing, validation, printing). Per ingress, per destination (broadcast, or each multicast
group), the port line is cut into segments, each carrying the rules that cover it; the engine
asks `egress_for`, the capture shell asks `capture_needs` and `groups_on` for its kernel filter
and group joins. Pure: no sockets, no system look-ups.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from crosscast.relay.rules import PortRange, Rule, coalesce


@dataclass(frozen=True, slots=True)
class _Hit:
    """The rules matching one (ingress, destination, port) before source filtering."""

    rules: tuple[Rule, ...]
    egress: tuple[str, ...]  # union of the rules' egress, valid when not `filtered`
    filtered: bool  # some rule has allow/deny, so the answer depends on the source


def _union_egress(rules: Iterable[Rule], ingress: str) -> tuple[str, ...]:
    # Never back out of the ingress, even for a rule that slipped past validation.
    names = dict.fromkeys(name for rule in rules for name in rule.egress)
    names.pop(ingress, None)
    return tuple(names)


def _make_hit(rules: tuple[Rule, ...], ingress: str) -> _Hit:
    filtered = any(rule.allow or rule.deny for rule in rules)
    return _Hit(rules, _union_egress(rules, ingress), filtered)


_Ranges = tuple[tuple[int, int], ...]

# Segments at most this wide are expanded into the port dict; wider ones are found by bisect.
_EXPAND_WIDTH = 64


class _PortIndex:
    """Destination port -> _Hit for one (ingress, destination kind).

    The port line is cut into segments at every range boundary; each segment carries the rules
    covering it, in rule order. Narrow segments (the common case: single ports) live in a dict,
    wide ones in a sorted list searched with bisect.
    """

    __slots__ = ("_exact", "_hits", "_starts")

    def __init__(self, entries: Sequence[Rule], ingress: str) -> None:
        cuts = sorted({p for rule in entries for r in rule.ports for p in (r.first, r.last + 1)})
        self._exact: dict[int, _Hit] = {}
        self._starts: list[int] = []
        self._hits: list[_Hit | None] = []
        for start, stop in itertools.pairwise(cuts):
            covering = tuple(rule for rule in entries if any(start in r for r in rule.ports))
            hit = _make_hit(covering, ingress) if covering else None
            if hit is not None and stop - start <= _EXPAND_WIDTH:
                self._exact.update(dict.fromkeys(range(start, stop), hit))
            else:
                self._starts.append(start)
                self._hits.append(hit)
        if cuts:  # past the last range end nothing matches
            self._starts.append(cuts[-1])
            self._hits.append(None)

    def lookup(self, port: int) -> _Hit | None:
        hit = self._exact.get(port)
        if hit is not None or not self._starts:
            return hit
        i = bisect.bisect_right(self._starts, port) - 1
        return self._hits[i] if i >= 0 else None


class RuleTable:
    """The rules indexed for the hot path: per ingress, per destination, per port."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        by_ingress: dict[str, list[Rule]] = {}
        for rule in self.rules:
            by_ingress.setdefault(rule.ingress, []).append(rule)
        self._broadcast: dict[str, _PortIndex] = {}
        self._groups: dict[str, dict[int, _PortIndex]] = {}
        self._needs: dict[str, tuple[_Ranges, tuple[tuple[int, _Ranges], ...]]] = {}
        self._filtered = {
            ingress: any(rule.allow or rule.deny for rule in own)
            for ingress, own in by_ingress.items()
        }
        for ingress, own in by_ingress.items():
            bcast = [rule for rule in own if rule.broadcast]
            if bcast:
                self._broadcast[ingress] = _PortIndex(bcast, ingress)
            per_group: dict[int, list[Rule]] = {}
            for rule in own:
                for group in rule.groups:
                    per_group.setdefault(group, []).append(rule)
            self._groups[ingress] = {g: _PortIndex(rs, ingress) for g, rs in per_group.items()}
            self._needs[ingress] = (
                _ranges(r for rule in bcast for r in rule.ports),
                tuple(
                    (g, _ranges(r for rule in per_group[g] for r in rule.ports))
                    for g in sorted(per_group)
                ),
            )

    def _hit(self, ingress: str, dst_ip: int, dst_port: int, is_broadcast: bool) -> _Hit | None:
        if is_broadcast:
            index = self._broadcast.get(ingress)
        else:
            groups = self._groups.get(ingress)
            index = groups.get(dst_ip) if groups else None
        return index.lookup(dst_port) if index is not None else None

    def egress_for(
        self, ingress: str, dst_ip: int, dst_port: int, src_ip: int, *, is_broadcast: bool
    ) -> tuple[tuple[str, ...], tuple[Rule, ...]]:
        """Where this datagram goes (union of the matched rules' egress, first-seen order, never
        the ingress itself) and the rules that sent it there."""
        hit = self._hit(ingress, dst_ip, dst_port, is_broadcast)
        if hit is None:
            return (), ()
        if not hit.filtered:
            return hit.egress, hit.rules
        rules = tuple(rule for rule in hit.rules if rule.admits_source(src_ip))
        return _union_egress(rules, ingress), rules

    def filters_source(self, ingress: str) -> bool:
        """Whether some rule from `ingress` has allow/deny, so its answers depend on the source
        address (the engine then caches its decisions per source too)."""
        return self._filtered.get(ingress, False)

    def capture_needs(
        self, ingress: str
    ) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, tuple[tuple[int, int], ...]], ...]]:
        """What the kernel filter on `ingress` must pass: broadcast port ranges, and
        (group, port ranges) pairs sorted by group; ranges sorted and coalesced."""
        return self._needs.get(ingress, ((), ()))

    def groups_on(self, ingress: str) -> tuple[int, ...]:
        """Multicast groups to join on `ingress`, sorted."""
        return tuple(sorted(self._groups.get(ingress, {})))


def _ranges(ranges: Iterable[PortRange]) -> _Ranges:
    return tuple((r.first, r.last) for r in coalesce(ranges))
