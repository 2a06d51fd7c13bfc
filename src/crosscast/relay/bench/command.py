"""`crosscast bench`: the command line, the measurement plan, and the trials that carry it out.

It owns the order of work: for each run, each system (brought up by `testbed`), each payload
size: the rate search (`search`), the latency trial at 1,000 pps, the overload trial at twice
the usable max, with CPU and RSS of the relays around each; then the table and JSON of
`report`. A trial is: the sink starts recording, the generator sends, the relays' queues get a
moment to drain, the sink writes its records, `stats` summarises them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from crosscast.relay.bench import report, sink, testbed
from crosscast.relay.bench.report import KERNEL, LATENCY_RATE, SNOWSIGNAL, SYSTEMS, SizeResult
from crosscast.relay.bench.search import Criteria, RateSearch, generator_bound
from crosscast.relay.bench.stats import Delivery, analyse

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
SIZES = (64, 512, 1400)
SNOWSIGNAL_NOTE = (
    "SnowSignal runs on the Swarm-like overlay (one subnet): across routed VLANs it rebroadcasts "
    "with the source segment's broadcast address and receivers drop every frame"
)
WARM_UP_TIMEOUT = 20.0  # seconds for the first frame to cross (ARP, peer discovery)


@dataclass(frozen=True)
class Plan:
    """How long and how finely to measure."""

    sizes: tuple[int, ...] = SIZES
    trial_seconds: float = 2.0  # each trial of the search and the overload trial
    latency_seconds: float = 3.0  # the trial at 1,000 pps
    settle_seconds: float = 0.3  # after the generator stops, for frames still in the relays
    overload_settle_seconds: float = 1.0  # a queueing relay may hold frames for a second
    start_rate: int = 2000
    max_rate: int = 200_000
    precision: float = 0.1  # the search stops when fail/pass <= 1 + precision
    max_trials: int = 13  # room for the repeat of each failing trial (search.py)
    overload: bool = True


QUICK = Plan(
    sizes=(64, 1400),
    trial_seconds=0.6,
    latency_seconds=1.5,
    settle_seconds=0.2,
    overload_settle_seconds=0.6,
    start_rate=4000,
    precision=0.25,
    max_trials=8,
)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "bench",
        help="measure relays side by side in a throw-away lab (root, Linux)",
        description="Measure the kernel path, crosscast in router and mesh mode, and SnowSignal "
        "(when installed) side by side in network namespaces: usable max rate (< 0.1 % loss, "
        "p99 <= 10 ms), latency at 1,000 pps, CPU per frame, RSS and overload, for each "
        "payload size. Needs root on Linux; a full run takes 10-20 minutes, --quick about two.",
    )
    p.add_argument("--quick", action="store_true", help="about two minutes: 2 sizes, short trials")
    p.add_argument(
        "--runs", type=int, default=1, metavar="N", help="repeat N times, report medians"
    )
    p.add_argument("--systems", default=",".join(SYSTEMS), metavar="LIST",
                   help=f"comma-separated, from {','.join(SYSTEMS)} (default: all; snowsignal "
                   "only when installed)")  # fmt: skip
    p.add_argument("--sizes", default=None, metavar="LIST",
                   help="UDP payload sizes in bytes, comma-separated (default 64,512,1400; "
                   "--quick 64,1400)")  # fmt: skip
    p.add_argument("--trial-seconds", type=float, default=None, help="length of each trial")
    p.add_argument("--max-rate", type=int, default=None, metavar="PPS",
                   help="the search's ceiling (default 200000)")  # fmt: skip
    p.add_argument("--mesh-on", choices=testbed.MESH_ON, default="overlay",
                   help="where crosscast's mesh runs: the Swarm-like overlay SnowSignal also runs "
                   "on (default, like for like), or across the routed VLANs")  # fmt: skip
    p.add_argument("--no-overload", action="store_true", help="skip the 2x-max overload trials")
    p.add_argument("--json", metavar="PATH", help="write every number to PATH as JSON")
    p.add_argument("--plot", metavar="PATH", help="a PNG of delivered rate and p99 vs offered "
                   "rate (needs matplotlib)")  # fmt: skip
    p.add_argument("--logs", metavar="DIR", help="keep relay, generator and sink logs in DIR")
    p.add_argument("--soak", type=float, default=None, metavar="SECONDS",
                   help="instead: hold half the usable max (or --rate) for SECONDS through a "
                   "router relay and a DNS-discovered mesh while a segment flaps and peers come "
                   "and go every second; then SIGTERM the relays under full load")  # fmt: skip
    p.add_argument("--rate", type=int, default=None, metavar="PPS",
                   help="--soak: offer PPS, no search for the usable max first")  # fmt: skip
    p.add_argument("--no-churn", action="store_true",
                   help="--soak: nothing flaps, the peers stay (a control run)")  # fmt: skip
    p.set_defaults(func=run)


def plan_from(args: argparse.Namespace) -> Plan:
    """The plan the options ask for (--quick first, then the explicit options over it)."""
    plan = QUICK if args.quick else Plan()
    changes: dict[str, Any] = {}
    if args.sizes:
        changes["sizes"] = tuple(int(s) for s in args.sizes.split(","))
    if args.trial_seconds:
        changes["trial_seconds"] = args.trial_seconds
        changes["latency_seconds"] = max(args.trial_seconds, 1.0)
    if args.max_rate:
        changes["max_rate"] = args.max_rate
        changes["start_rate"] = min(plan.start_rate, args.max_rate)
    if args.no_overload:
        changes["overload"] = False
    return Plan(**{**plan.__dict__, **changes})


def systems_from(text: str, snowsignal: bool) -> tuple[list[str], list[str]]:
    """(systems to measure, notes): unknown names are an error, SnowSignal needs installing."""
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {', '.join(unknown)}; pick from {', '.join(SYSTEMS)}")
    notes = []
    if SNOWSIGNAL in wanted and not snowsignal:
        wanted.remove(SNOWSIGNAL)
        notes.append("SnowSignal is not installed (pip install 'crosscast[bench]'): not measured")
    return wanted, notes


class Interrupted(BaseException):
    """SIGINT/SIGTERM: the lab is torn down on the way out (a BaseException, like Ctrl-C)."""


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise Interrupted()


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.soak is not None:
        from crosscast.relay.bench import soak  # it builds on this module (Bench, Progress)

        return soak.run(args, out)
    why = testbed.why_not_here()
    if why is not None:
        print(f"crosscast bench: {why}", file=sys.stderr)
        return EXIT_USAGE
    try:
        plan = plan_from(args)
        systems, notes = systems_from(args.systems, testbed.snowsignal_installed())
    except ValueError as e:
        print(f"crosscast bench: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.runs < 1 or not systems or any(s < 24 or s > 1472 for s in plan.sizes):
        print("crosscast bench: need --runs >= 1, a system, sizes 24..1472", file=sys.stderr)
        return EXIT_USAGE
    if SNOWSIGNAL in systems:
        notes.append(SNOWSIGNAL_NOTE)
    notes.append(f"crosscast's mesh runs on the {args.mesh_on}")
    machine = describe_machine()
    progress = Progress(sys.stderr)
    runs: list[list[SizeResult]] = []
    with tempfile.TemporaryDirectory(prefix="crosscast-bench-") as tmp:
        workdir = Path(args.logs) if args.logs else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        bed = testbed.Testbed(workdir, args.mesh_on)
        progress.say(f"crosscast bench: namespaces {bed.prefix}-*, load {machine['load']}")

        def measure() -> None:
            for n in range(args.runs):
                bench = Bench(bed, plan, progress, f"run {n + 1}/{args.runs}")
                runs.append(bench.run(systems))

        status = run_in_lab(bed, progress, "crosscast bench", measure)
    progress.done()
    if not runs or not runs[0]:
        return status or EXIT_FAILED
    settings = {**plan.__dict__, "systems": systems, "runs": len(runs), "mesh_on": args.mesh_on}
    rows = report.rows_of(runs)
    print(report.render_table(rows), file=out)
    print("\nissue 8 targets:", file=out)
    print(report.render_targets(report.targets(rows)), file=out)
    for note in notes:
        print(f"note: {note}", file=out)
    if args.json:
        doc = report.to_json(runs, machine, settings, notes)
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"JSON: {args.json}", file=out)
    if args.plot:
        if report.write_plot(runs, args.plot):
            print(f"plot: {args.plot}", file=out)
        else:
            print("plot: matplotlib is not installed, no plot written", file=out)
    return status


def run_in_lab(
    bed: testbed.Testbed, progress: Progress, label: str, body: Callable[[], None]
) -> int:
    """Run `body` with SIGINT/SIGTERM raising Interrupted, then tear the lab down (with both
    signals ignored meanwhile, so a second Ctrl-C cannot leave namespaces behind); the exit
    status: 0, 130 when interrupted, EXIT_FAILED (said on `progress`) when the lab failed."""
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        body()
    except Interrupted:
        progress.say("interrupted: cleaning up")
        return 130
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        progress.say(f"{label}: failed: {e}")
        return EXIT_FAILED
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        bed.teardown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def describe_machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }


class Progress:
    """One status line on a terminal (rewritten in place), plain lines anywhere else."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.open = False

    def status(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + text[:160])
            self.stream.flush()
            self.open = True

    def say(self, text: str) -> None:
        if self.open:
            self.stream.write("\r\x1b[K")
            self.open = False
        print(text, file=self.stream, flush=True)

    def done(self) -> None:
        if self.open:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.open = False


@dataclass(frozen=True)
class Trial:
    """A trial's delivery, and the relays' CPU seconds and RSS around it."""

    delivery: Delivery
    cpu_seconds: tuple[float | None, ...]
    rss_mb: tuple[float | None, ...]
    alive: bool
    switches: tuple[tuple[int, int] | None, ...] = ()  # (voluntary, involuntary) per relay

    def cpu_us_per_frame(self) -> tuple[float, ...]:
        frames = self.delivery.unique
        if not frames or any(c is None for c in self.cpu_seconds):
            return ()
        return tuple(c * 1e6 / frames for c in self.cpu_seconds if c is not None)

    def switches_per_frame(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(waits, preemptions) per delivered frame, per relay; () for both if one exited."""
        frames = self.delivery.unique
        if not frames or not self.switches or any(s is None for s in self.switches):
            return (), ()
        counts = [s for s in self.switches if s is not None]
        return tuple(v / frames for v, _ in counts), tuple(i / frames for _, i in counts)


def _delta(
    after: Sequence[float | None], before: Sequence[float | None]
) -> tuple[float | None, ...]:
    return tuple(
        None if a is None or b is None else a - b for a, b in zip(after, before, strict=True)
    )


def _describe(d: Delivery) -> str:
    lat = d.latency
    p99 = f"p99 {lat.p99 / 1000:.2f} ms" if lat else "nothing arrived"
    drops = f", sink dropped {d.sink_drops:,}" if d.sink_drops else ""
    return f"{d.delivered_pps:,.0f} pps delivered, loss {d.loss * 100:.2f} %, {p99}{drops}"


class Bench:
    """One run over the systems: bring each up, measure each size, take it down."""

    def __init__(self, bed: testbed.Testbed, plan: Plan, progress: Progress, label: str) -> None:
        self.bed = bed
        self.plan = plan
        self.progress = progress
        self.label = label
        self.criteria = Criteria()
        self._ids = itertools.count(int(time.time()) & 0xFFFF_0000)

    def run(self, systems: Sequence[str]) -> list[SizeResult]:
        results: list[SizeResult] = []
        for system in systems:
            self.progress.status(f"{self.label} {system}: starting")
            running = self.bed.start(system)
            try:
                self.progress.say(f"{self.label} {system}: {running.description}")
                self.warm_up(running)
                results.extend(self._measure(running, size) for size in self.plan.sizes)
            finally:
                self.bed.stop(running)
        return results

    def _trial(
        self, running: testbed.Running, size: int, rate: int, seconds: float, settle: float
    ) -> Trial:
        run_id = next(self._ids) & 0xFFFF_FFFF
        records = self.bed.workdir / "records.bin"
        running.sink.ask(f"start {run_id}")
        cpu0, sw0 = running.cpu(), running.switches()
        sent = running.generator.ask(
            f"run {run_id} {rate} {seconds} {size}", timeout=seconds * 5 + testbed.ANSWER_TIMEOUT
        )
        time.sleep(settle)
        cpu1, rss, sw1 = running.cpu(), running.rss(), running.switches()
        stopped = running.sink.ask(f"stop {records}")
        seqs, latencies = sink.read_records(records)
        delivery = analyse(
            rate,
            int(sent["sent"]),
            float(sent["elapsed"]),
            seqs,
            latencies,
            int(stopped["socket_drops"]),
        )
        alive = all(r.alive() for r in running.relays)
        switches = tuple(
            None if a is None or b is None else (a[0] - b[0], a[1] - b[1])
            for a, b in zip(sw1, sw0, strict=True)
        )
        return Trial(delivery, _delta(cpu1, cpu0), tuple(rss), alive, switches)

    def warm_up(self, running: testbed.Running) -> None:
        """Send until frames cross (ARP, peer discovery, SnowSignal's start-up), then a bit more."""
        deadline = time.monotonic() + WARM_UP_TIMEOUT
        size = self.plan.sizes[0]
        while time.monotonic() < deadline:
            self.progress.status(f"{self.label} {running.system}: waiting for frames to cross")
            if self._trial(running, size, 200, 0.5, 0.2).delivery.unique:
                self._trial(running, size, LATENCY_RATE, 0.5, 0.2)
                return
            dead = [r for r in running.relays if not r.alive()]
            if dead:
                raise RuntimeError(f"the relay {dead[0].name} exited:\n{dead[0].tail()}")
        raise RuntimeError(f"{running.system}: no frame crossed in {WARM_UP_TIMEOUT:.0f} s")

    def search(
        self, running: testbed.Running, size: int, where: str
    ) -> tuple[RateSearch, list[Delivery], Trial | None]:
        """The usable-max search on a running system: the search, its trials and the best
        passing trial (None when none passed)."""
        plan = self.plan
        search = RateSearch(
            start=plan.start_rate,
            ceiling=plan.max_rate,
            precision=plan.precision,
            max_trials=plan.max_trials,
        )
        trials: list[Delivery] = []
        best: Trial | None = None
        while (rate := search.next_rate()) is not None:
            self.progress.status(f"{where}: search, offering {rate:,} pps")
            t = self._trial(running, size, rate, plan.trial_seconds, plan.settle_seconds)
            trials.append(t.delivery)
            passed = self.criteria.passes(t.delivery)
            limited = generator_bound(t.delivery, passed)
            if limited:  # the generator's own ceiling: count what it really offered
                rate = min(rate, int(t.delivery.sent_pps))
            search.record(rate, passed, limited)
            if passed and rate >= search.best:
                best = t
            self.progress.status(
                f"{where}: {rate:,} pps {'pass' if passed else 'FAIL'}: {_describe(t.delivery)}"
            )
        return search, trials, best

    def _measure(self, running: testbed.Running, size: int) -> SizeResult:
        plan, system = self.plan, running.system
        where = f"{self.label} {system} {size} B"
        search, trials, best = self.search(running, size, where)
        self.progress.status(f"{where}: latency at {LATENCY_RATE:,} pps")
        lat = self._trial(running, size, LATENCY_RATE, plan.latency_seconds, plan.settle_seconds)
        waits, preemptions = lat.switches_per_frame()
        result = SizeResult(
            system=system,
            size=size,
            max_pps=search.best,
            generator_bound=search.limited,
            search=tuple(trials),
            latency=lat.delivery,
            cpu_us_1k=lat.cpu_us_per_frame(),
            waits_1k=waits,
            preemptions_1k=preemptions,
            cpu_us_max=best.cpu_us_per_frame() if best else (),
            rss_mb=tuple(v for v in lat.rss_mb if v is not None),
        )
        if plan.overload and system != KERNEL and search.best:
            rate = 2 * search.best
            self.progress.status(f"{where}: overload, offering {rate:,} pps")
            over = self._trial(
                running, size, rate, plan.trial_seconds, plan.overload_settle_seconds
            )
            result = _with_overload(result, over)
        lat_text = lat.delivery.latency
        self.progress.say(
            f"{where}: usable max {search.best:,} pps"
            + (" (generator-bound)" if search.limited else "")
            + (
                f", p50 {lat_text.p50:.0f} us, p99 {lat_text.p99:.0f} us at 1k pps"
                if lat_text
                else ""
            )
            + (f"; overload: {_describe(result.overload)}" if result.overload else "")
        )
        return result


def _with_overload(result: SizeResult, over: Trial) -> SizeResult:
    return replace(
        result,
        overload=over.delivery,
        rss_mb_overload=tuple(v for v in over.rss_mb if v is not None),
        survived=over.alive,
    )
