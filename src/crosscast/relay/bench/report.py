"""The bench's results: one row per (system, payload size), ratios, issue 8's targets, output.

Pure, apart from `write_plot` (matplotlib, optional): it turns what the bench measured into
rows (the median over runs when there were several), ratios against SnowSignal and the kernel
path, the targets of the fast-path issue checked against the rows, the terminal table and the
JSON document. It runs no trial and reads no clock.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from crosscast.relay.bench.search import MAX_LOSS, MAX_P99_US
from crosscast.relay.bench.stats import Delivery, median

JSON_VERSION = 1
LATENCY_RATE = 1000  # pps: the rate of the latency trial
KERNEL = "kernel"
ROUTER = "crosscast-router"
MESH = "crosscast-mesh"
MESH_SECRET = "crosscast-mesh-secret"  # noqa: S105 (a system's name, not a secret)
SNOWSIGNAL = "snowsignal"
SYSTEMS = (KERNEL, ROUTER, MESH, MESH_SECRET, SNOWSIGNAL)
CROSSCAST = (ROUTER, MESH, MESH_SECRET)
LABELS = {
    KERNEL: "kernel path, no relay",
    ROUTER: "crosscast, router mode",
    MESH: "crosscast, mesh A+B",
    MESH_SECRET: "crosscast, mesh A+B, secret",
    SNOWSIGNAL: "SnowSignal, mesh A+B",
}


@dataclass(frozen=True)
class SizeResult:
    """What one run measured for one system at one payload size."""

    system: str
    size: int
    max_pps: int  # usable max (0: not even the lowest rate passed)
    generator_bound: bool  # the generator's ceiling ended the search: max_pps is a lower bound
    search: tuple[Delivery, ...]
    latency: Delivery | None  # the trial at 1,000 pps
    cpu_us_1k: tuple[float, ...] = ()  # CPU per delivered frame, per relay process
    waits_1k: tuple[float, ...] = ()  # voluntary context switches (wake-ups) per frame, per relay
    preemptions_1k: tuple[float, ...] = ()  # involuntary ones (preempted) per frame, per relay
    cpu_us_max: tuple[float, ...] = ()  # the same at the usable max
    rss_mb: tuple[float, ...] = ()  # per relay, after the 1,000 pps trial
    overload: Delivery | None = None  # offered 2x max_pps
    rss_mb_overload: tuple[float, ...] = ()  # per relay, after the overload trial
    survived: bool | None = None  # every relay still running after the overload trial


@dataclass(frozen=True)
class Row:
    """One line of the table: a system at one size, the median over `runs` runs."""

    system: str
    size: int
    runs: int
    max_pps: float | None
    generator_bound: bool
    p50_us: float | None
    p90_us: float | None
    p99_us: float | None
    max_us: float | None
    loss_1k: float | None
    duplicates_1k: float | None
    reordered_1k: float | None
    cpu_us_1k: tuple[float | None, ...]
    waits_1k: tuple[float | None, ...]
    preemptions_1k: tuple[float | None, ...]
    cpu_us_max: tuple[float | None, ...]
    rss_mb: tuple[float | None, ...]
    rss_mb_overload: tuple[float | None, ...]
    overload_offered_pps: float | None
    overload_delivered_pps: float | None
    overload_p99_us: float | None
    overload_loss: float | None
    survived: bool | None


def _per_relay(values: Sequence[tuple[float, ...]]) -> tuple[float | None, ...]:
    width = max((len(v) for v in values), default=0)
    return tuple(median(v[i] if i < len(v) else None for v in values) for i in range(width))


def summarise(results: Sequence[SizeResult]) -> Row:
    """The median row of several runs of one system at one size."""
    if not results:
        raise ValueError("no results")
    first = results[0]
    lat = [r.latency for r in results]
    over = [r.overload for r in results]
    survived = [r.survived for r in results if r.survived is not None]
    return Row(
        system=first.system,
        size=first.size,
        runs=len(results),
        max_pps=median(r.max_pps for r in results),
        generator_bound=any(r.generator_bound for r in results),
        p50_us=median(d.latency.p50 if d and d.latency else None for d in lat),
        p90_us=median(d.latency.p90 if d and d.latency else None for d in lat),
        p99_us=median(d.latency.p99 if d and d.latency else None for d in lat),
        max_us=median(d.latency.max if d and d.latency else None for d in lat),
        loss_1k=median(d.loss if d else None for d in lat),
        duplicates_1k=median(d.duplicates if d else None for d in lat),
        reordered_1k=median(d.reordered if d else None for d in lat),
        cpu_us_1k=_per_relay([r.cpu_us_1k for r in results]),
        waits_1k=_per_relay([r.waits_1k for r in results]),
        preemptions_1k=_per_relay([r.preemptions_1k for r in results]),
        cpu_us_max=_per_relay([r.cpu_us_max for r in results]),
        rss_mb=_per_relay([r.rss_mb for r in results]),
        rss_mb_overload=_per_relay([r.rss_mb_overload for r in results]),
        overload_offered_pps=median(d.offered_pps if d else None for d in over),
        overload_delivered_pps=median(d.delivered_pps if d else None for d in over),
        overload_p99_us=median(d.latency.p99 if d and d.latency else None for d in over),
        overload_loss=median(d.loss if d else None for d in over),
        survived=all(survived) if survived else None,
    )


def rows_of(runs: Sequence[Sequence[SizeResult]]) -> list[Row]:
    """One row per (system, size) over all runs, in the order they were first measured."""
    groups: dict[tuple[str, int], list[SizeResult]] = {}
    for run in runs:
        for r in run:
            groups.setdefault((r.system, r.size), []).append(r)
    return [summarise(g) for g in groups.values()]


# ---------------------------------------------------------------------------------------------
# Ratios and targets


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


@dataclass(frozen=True)
class Ratios:
    """A row against SnowSignal's and the kernel path's rows of the same size."""

    system: str
    size: int
    max_vs_snowsignal: float | None
    p50_vs_snowsignal: float | None
    max_vs_kernel: float | None
    p50_vs_kernel: float | None


def ratios(rows: Sequence[Row]) -> list[Ratios]:
    by = {(r.system, r.size): r for r in rows}
    out = []
    for r in rows:
        ss, k = by.get((SNOWSIGNAL, r.size)), by.get((KERNEL, r.size))
        out.append(
            Ratios(
                system=r.system,
                size=r.size,
                max_vs_snowsignal=_ratio(r.max_pps, ss.max_pps) if ss else None,
                p50_vs_snowsignal=_ratio(r.p50_us, ss.p50_us) if ss else None,
                max_vs_kernel=_ratio(r.max_pps, k.max_pps) if k else None,
                p50_vs_kernel=_ratio(r.p50_us, k.p50_us) if k else None,
            )
        )
    return out


@dataclass(frozen=True)
class Target:
    """One target of issue 8 for one system: the value per size and whether each passed
    (`ok` None: not measurable in this run, e.g. SnowSignal was not installed)."""

    name: str
    system: str
    values: Mapping[int, float | None] = field(default_factory=dict)
    unit: str = ""
    ok: bool | None = None


def _worst(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


@dataclass(frozen=True)
class _Spec:
    """One target of issue 8: which systems and sizes it applies to, the value, the limit."""

    name: str
    systems: tuple[str, ...]
    value: Callable[[Row, Ratios], float | None]
    good: Callable[[float], bool]
    unit: str = ""
    sizes: Callable[[int], bool] = lambda _size: True


_SPECS = (
    _Spec("mesh usable max >= 8x SnowSignal at 64 B", (MESH,),
          lambda _r, x: x.max_vs_snowsignal, lambda v: v >= 8, "x", lambda s: s <= 64),
    _Spec("mesh usable max >= 5x SnowSignal above 64 B", (MESH,),
          lambda _r, x: x.max_vs_snowsignal, lambda v: v >= 5, "x", lambda s: s > 64),
    _Spec("mesh p50 at 1k pps <= 0.35x SnowSignal's", (MESH,),
          lambda _r, x: x.p50_vs_snowsignal, lambda v: v <= 0.35, "x"),
    _Spec("mesh p99 <= 3x p50 at 1k pps", (MESH,),
          lambda r, _x: _ratio(r.p99_us, r.p50_us), lambda v: v <= 3, "x"),
    _Spec("router p50 <= 4x the kernel path's", (ROUTER,),
          lambda _r, x: x.p50_vs_kernel, lambda v: v <= 4, "x"),
    _Spec("router usable max >= 0.5x the kernel path's", (ROUTER,),
          lambda _r, x: x.max_vs_kernel, lambda v: v >= 0.5, "x"),
    _Spec("CPU per frame per relay <= 8 us at the usable max", CROSSCAST,
          lambda r, _x: _worst(r.cpu_us_max), lambda v: v <= 8, " us"),
    _Spec("CPU per frame per relay <= 30 us at 1k pps", CROSSCAST,
          lambda r, _x: _worst(r.cpu_us_1k), lambda v: v <= 30, " us"),
    _Spec("RSS <= 25 MB (after overload)", CROSSCAST,
          lambda r, _x: _worst(r.rss_mb_overload or r.rss_mb), lambda v: v <= 25, " MB"),
    _Spec("RSS flat under overload (growth <= 10 %)", CROSSCAST,
          lambda r, _x: _rss_growth(r), lambda v: v <= 0.10),
    _Spec("overload (2x max): delivered >= 90 % of max", CROSSCAST,
          lambda r, _x: _ratio(r.overload_delivered_pps, r.max_pps), lambda v: v >= 0.9),
    _Spec("overload (2x max): p99 <= 20 ms", CROSSCAST,
          lambda r, _x: _ms(r.overload_p99_us), lambda v: v <= 20, " ms"),
    _Spec("overload (2x max): no crash", CROSSCAST,
          lambda r, _x: None if r.survived is None else float(r.survived), lambda v: v == 1),
)  # fmt: skip


def targets(rows: Sequence[Row]) -> list[Target]:
    """Issue 8's targets for the systems the run measured (a value per size; None where the
    run has nothing to compare with, e.g. no SnowSignal row)."""
    rat = {(x.system, x.size): x for x in ratios(rows)}
    out = []
    for spec in _SPECS:
        for system in spec.systems:
            values = {
                r.size: spec.value(r, rat[(r.system, r.size)])
                for r in rows
                if r.system == system and spec.sizes(r.size)
            }
            if not values:
                continue
            measured = [v for v in values.values() if v is not None]
            ok = all(spec.good(v) for v in measured) if measured else None
            out.append(Target(spec.name, system, values, spec.unit, ok))
    return out


def _ms(us: float | None) -> float | None:
    return us / 1000 if us is not None else None


def _rss_growth(r: Row) -> float | None:
    pairs = [(a, b) for a, b in zip(r.rss_mb, r.rss_mb_overload, strict=False) if a and b]
    return max(b / a - 1 for a, b in pairs) if pairs else None


# ---------------------------------------------------------------------------------------------
# Output


def _num(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _k(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


def _list(values: Sequence[float | None], fmt: str) -> str:
    return " + ".join(_num(v, fmt) for v in values) if values else "-"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _switches(r: Row) -> str:
    """Per relay, its waits (each ended by a wake-up) / preemptions per frame: `1.00/0.51`."""
    pairs = zip(r.waits_1k, r.preemptions_1k, strict=True)
    return " + ".join(f"{_num(w, '{:.2f}')}/{_num(p, '{:.2f}')}" for w, p in pairs) or "-"


def render_table(rows: Sequence[Row]) -> str:
    """The terminal table: one line per (system, size), then the ratios."""
    header = (
        "system",
        "size",
        "usable max",
        "p50/p90/p99/max us @1k",
        "loss/dup/reord @1k",
        "CPU us/frame @1k | @max",
        "waits/preempted per frame @1k",
        "RSS MB",
        "overload: offered -> delivered, p99",
        "max vs SS | kernel",
        "p50 vs SS | kernel",
    )
    rat = {(x.system, x.size): x for x in ratios(rows)}
    lines: list[tuple[str, ...]] = [header]
    for r in rows:
        x = rat[(r.system, r.size)]
        usable = _k(r.max_pps) + (" (gen)" if r.generator_bound else "")
        lat = "/".join(_num(v) for v in (r.p50_us, r.p90_us, r.p99_us, r.max_us))
        quality = (
            f"{_num(r.loss_1k * 100 if r.loss_1k is not None else None, '{:.2f}')}%"
            f"/{_num(r.duplicates_1k)}/{_num(r.reordered_1k)}"
        )
        cpu = f"{_list(r.cpu_us_1k, '{:.1f}')} | {_list(r.cpu_us_max, '{:.1f}')}"
        overload = "-"
        if r.overload_offered_pps is not None:
            overload = (
                f"{_k(r.overload_offered_pps)} -> {_k(r.overload_delivered_pps)}, "
                f"{_num(_ms(r.overload_p99_us), '{:.1f}')} ms"
                + ("" if r.survived in (None, True) else ", CRASHED")
            )
        lines.append(
            (
                LABELS.get(r.system, r.system),
                f"{r.size} B",
                usable,
                lat,
                quality,
                cpu if r.cpu_us_1k else "-",
                _switches(r),
                _list(r.rss_mb, "{:.1f}"),
                overload,
                f"{_x(x.max_vs_snowsignal)} | {_x(x.max_vs_kernel)}",
                f"{_x(x.p50_vs_snowsignal)} | {_x(x.p50_vs_kernel)}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def render_targets(
    found: Sequence[Target], marks: tuple[str, str, str] = ("ok", "FAIL", "n/a")
) -> str:
    """One line per target: mark, name, system, the value per size."""
    lines = []
    for t in found:
        mark = marks[2] if t.ok is None else marks[0] if t.ok else marks[1]
        values = ", ".join(
            f"{size} B {_num(v, '{:.2f}')}{t.unit}" for size, v in sorted(t.values.items())
        )
        lines.append(f"{mark:4} {t.name:48} {t.system:22} {values or '-'}")
    return "\n".join(lines)


def delivery_json(d: Delivery | None) -> dict[str, Any] | None:
    if d is None:
        return None
    out = asdict(d)
    out.update(lost=d.lost, loss=d.loss, sent_pps=d.sent_pps, delivered_pps=d.delivered_pps)
    return out


def size_result_json(r: SizeResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: v for k, v in asdict(r).items() if k not in ("search", "latency", "overload")
    }
    out["search"] = [delivery_json(d) for d in r.search]
    out["latency"] = delivery_json(r.latency)
    out["overload"] = delivery_json(r.overload)
    return out


def to_json(
    runs: Sequence[Sequence[SizeResult]],
    machine: Mapping[str, Any],
    settings: Mapping[str, Any],
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON document `--json` writes: rows (medians), ratios, targets and every trial."""
    rows = rows_of(runs)
    return {
        "crosscast_bench": JSON_VERSION,
        "machine": dict(machine),
        "settings": dict(settings),
        "criteria": {
            "max_loss": MAX_LOSS,
            "max_p99_us": MAX_P99_US,
            "latency_rate_pps": LATENCY_RATE,
        },
        "notes": list(notes),
        "rows": [asdict(r) for r in rows],
        "ratios": [asdict(x) for x in ratios(rows)],
        "targets": [
            {**asdict(t), "values": {str(k): v for k, v in t.values.items()}} for t in targets(rows)
        ],
        "runs": [[size_result_json(r) for r in run] for run in runs],
    }


def write_plot(runs: Sequence[Sequence[SizeResult]], path: str) -> bool:
    """Delivered vs offered rate and p99 vs offered rate, one line per system and size; False
    when matplotlib is not installed."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        return False
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    fig, (rate_ax, lat_ax) = plt.subplots(1, 2, figsize=(13, 5))
    for r in runs[0] if runs else ():
        trials = sorted(
            [d for d in (*r.search, r.overload) if d is not None], key=lambda d: d.offered_pps
        )
        if not trials:
            continue
        label = f"{r.system} {r.size} B"
        offered = [d.offered_pps for d in trials]
        rate_ax.plot(offered, [d.delivered_pps for d in trials], marker="o", label=label)
        lat_ax.plot(
            offered,
            [d.latency.p99 / 1000 if d.latency else float("nan") for d in trials],
            marker="o",
            label=label,
        )
    rate_ax.set(xlabel="offered pps", ylabel="delivered pps", xscale="log", yscale="log")
    lat_ax.set(xlabel="offered pps", ylabel="p99 latency (ms)", xscale="log", yscale="log")
    lat_ax.axhline(MAX_P99_US / 1000, linestyle=":", color="grey")
    rate_ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return True
