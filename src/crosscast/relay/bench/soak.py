"""`crosscast bench --soak SECONDS`: hold half the usable max through relays under churn.

It owns the soak's plan and verdict. The measured flow crosses both relays of the soak, in a
lab of four routed VLANs (`testbed.Testbed(n_vlans=4)`, 10.241.n.0/24):

    generator (VLAN 1) -> router relay `soak from br1 to br3,mesh` -> mesh -> relay B -> VLAN 4
        -> sink

(Two relays on one segment elect one of them to forward for it and drop each other's frames,
so a flow cannot pass a router relay and a mesh relay on the same VLAN: the router relay is the
mesh's sending end.) Churn, every second, from one thread (`Churn`):
- br3, the router relay's second egress, goes down for half a second and up again (its frames
  fail there while it is down; the measured flow leaves by the mesh, which stays up);
- the fake Swarm DNS (`lab.FakeSwarmDns`, in the router namespace) answers `tasks.soak` with the
  router (as 10.241.4.1) and B plus a changing subset of three extra peers: relay C on VLAN 3 (a
  real relay of another port, so it never duplicates the measured flow, and cut off whenever
  br3 is down), an address on VLAN 3 that nothing answers (ARP fails) and one the router has no
  route to. Every relay resolves every second (`--discovery-interval 1`), so their peer sets
  change every second.

The offered rate is `--rate`, or half the usable max that `command.Bench.search` finds first
(under the same churn). The sink records the whole soak; the verdict is per 10-second window
(`stats.analyse` on the frames sent in it). Every second the relays' RSS is sampled; at the end
their counters are scraped from /metrics. Then, with the generator at full rate (the usable
max, or twice `--rate`), every relay gets SIGTERM at once and must exit 0 within 2 s.

The pure part (windows, RSS flatness, the peer schedule, the verdict) takes numbers and returns
numbers; the rest starts processes and reads clocks.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from crosscast import lab
from crosscast.net import netns
from crosscast.relay import status
from crosscast.relay.bench import command, sink, testbed
from crosscast.relay.bench.report import delivery_json
from crosscast.relay.bench.stats import Delivery, analyse

SYSTEM = "crosscast-soak"
PREFIX_STEM = "ccsoak"  # namespaces ccsoakXXXX-*, apart from a `crosscast bench` running too
SERVICE = "soak"  # the relays' --service-name: peers are tasks.soak
OTHER_PORT = 5077  # relay C relays this port: a real peer that never carries the measured flow
METRICS_PORT = 9108  # each relay's /metrics, on 127.0.0.1 of its own namespace
FLAPPED = "br3"  # the router relay's second egress, flapped every second
PERIOD = 1.0  # seconds: one flap and one new peer set per period
WINDOW = 10.0  # seconds of sending per verdict window
RSS_LIMIT_MB = 10.0  # "flat": the end within 10 MB of the post-warm-up value (issue 9)
WARM_UP_FRACTION = 0.1  # the first 10 % of the soak (at least 5 s) lets caches and rings fill
EXIT_LIMIT = 2.0  # seconds from SIGTERM to exit status 0 (issue 9)
KILL_AFTER = 5.0  # seconds: a relay still running then is killed and counted as a bad exit
SETTLE = 0.5  # seconds after the soak's last frame before the sink stops
TAIL = 3.0  # seconds the generator runs at full rate around the SIGTERMs
SIGTERM_AFTER = 0.5  # seconds into the tail: the relays are under full load
DEFAULT_SIZE = 64  # bytes of UDP payload: the most frames per second
ROUTER, RELAY_B = "crosscast-router", "crosscast-B"  # testbed names the relays crosscast-NAME
MESH_SENT = "crosscast_mesh_sent_datagrams_total"
EMITTED = "crosscast_emitted_frames_total"
SEND_ERRORS = "crosscast_send_errors_total"

# -- pure ------------------------------------------------------------------------------------


def peers_at(tick: int, stable: Sequence[str], extras: Sequence[str]) -> list[str]:
    """The peer set the DNS serves in period `tick`: `stable`, plus extra j whenever bit j of
    `tick` is set (a binary counter: extra 0 comes or goes every period, extra 1 every second
    period, ...), so the set is different every period."""
    return [*stable, *(e for j, e in enumerate(extras) if (tick >> j) & 1)]


def windows(
    rate: int,
    total: int,
    window_seconds: float,
    seqs: Sequence[int],
    latencies_ns: Sequence[int],
) -> list[Delivery]:
    """One `Delivery` per window of `window_seconds` of the generator's schedule: window k
    holds the frames numbered [k W, (k + 1) W) with W = rate * window_seconds. Frames numbered
    `total` or above (sent after the soak) are left out."""
    per = max(1, round(rate * window_seconds))
    n = -(-total // per)
    buckets: list[tuple[array[int], array[int]]] = [(array("Q"), array("q")) for _ in range(n)]
    for seq, lat in zip(seqs, latencies_ns, strict=True):
        if seq < total:
            s, la = buckets[seq // per]
            s.append(seq)
            la.append(lat)
    out = []
    for k, (s, la) in enumerate(buckets):
        sent = min(per, total - k * per)
        out.append(analyse(rate, sent, sent / rate, s, la))
    return out


@dataclass(frozen=True)
class Rss:
    """One relay's RSS over the soak, in MB: first sample, the post-warm-up reference, the
    largest and the last."""

    start: float
    reference: float
    max: float
    end: float

    @property
    def growth(self) -> float:
        return self.end - self.reference

    @property
    def flat(self) -> bool:
        return self.growth <= RSS_LIMIT_MB


def rss_summary(samples: Sequence[float], warm_up: int) -> Rss | None:
    """The summary of one relay's per-period samples, the reference taken `warm_up` samples
    in (clamped to the samples there are); None without samples."""
    if not samples:
        return None
    ref = samples[min(warm_up, len(samples) - 1)]
    return Rss(start=samples[0], reference=ref, max=max(samples), end=samples[-1])


@dataclass(frozen=True)
class Exit:
    """How a relay ended after SIGTERM: its status (None: it had to be killed) and how long it
    took (None: it was not running any more when the signal was due)."""

    name: str
    status: int | None
    seconds: float | None

    @property
    def ok(self) -> bool:
        return self.status == 0 and self.seconds is not None and self.seconds <= EXIT_LIMIT


def problems(
    deliveries: Sequence[Delivery],
    rss: dict[str, Rss | None],
    exits: Sequence[Exit],
    died: Sequence[str] = (),
) -> list[str]:
    """Why the soak failed, one line each; empty when it passed."""
    out = []
    lost = sum(d.lost for d in deliveries)
    sent = sum(d.sent for d in deliveries)
    if lost:
        out.append(f"lost {lost:,} of {sent:,} frames")
    if not sent:
        out.append("nothing was sent")
    out.extend(f"the relay {name} exited during the soak" for name in died)
    for name, r in rss.items():
        if r is None:
            out.append(f"the RSS of {name} was not measured")
        elif not r.flat:
            out.append(
                f"the RSS of {name} grew {r.growth:.1f} MB after warm-up (limit {RSS_LIMIT_MB:g})"
            )
    for e in exits:
        if not e.ok:
            took = "was killed" if e.status is None else f"exited {e.status}"
            after = "" if e.seconds is None else f" after {e.seconds:.2f} s"
            out.append(f"the relay {e.name} {took}{after} (want 0 within {EXIT_LIMIT:g} s)")
    return out


def loss_places(
    lost: int,
    before: dict[str, list[dict[str, Any]]],
    after: dict[str, list[dict[str, Any]]],
    b_ip: str,
    sink_drops: int,
) -> dict[str, int]:
    """Where the soak's lost frames went, from the relays' counters at its start and end: the
    router relay's capture ring (PACKET_STATISTICS, skipped slots, frames dropped as late), its
    sends to B, B's mesh socket (full, or datagrams dropped as late), the sink's socket; the rest
    was not counted by anyone."""

    def grew(relay: str, name: str, **labels: str) -> int:
        return round(
            metric(after.get(relay, []), name, **labels)
            - metric(before.get(relay, []), name, **labels)
        )

    places = {
        "router capture ring": grew(ROUTER, "crosscast_kernel_drops_total", interface="br1")
        + grew(ROUTER, "crosscast_ring_skipped_slots_total", interface="br1"),
        "router late in the ring": grew(
            ROUTER, "crosscast_capture_late_frames_total", interface="br1"
        ),
        "router mesh sends to B": grew(ROUTER, "crosscast_mesh_send_errors_total", peer=b_ip),
        # datagrams, each carrying one or more frames (the mesh batches a drain)
        "B mesh socket full (datagrams)": grew(RELAY_B, "crosscast_mesh_socket_drops_total"),
        "B late in the mesh socket (datagrams)": grew(
            RELAY_B, "crosscast_mesh_late_datagrams_total"
        ),
        "sink socket": sink_drops,
    }
    places["not counted"] = max(0, lost - sum(places.values()))
    return places


def metric(samples: Sequence[dict[str, Any]], name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(
        float(s["value"])
        for s in samples
        if s["name"] == name and all(s["labels"].get(k) == v for k, v in labels.items())
    )


# -- the lab -----------------------------------------------------------------------------------


@dataclass
class Lab:
    """The soak's system and the handles churn needs."""

    running: testbed.Running
    router_ns: str
    dns: lab.FakeSwarmDns
    stable: list[str]  # the router relay and B: always in DNS
    extras: list[str]  # C, an address nobody answers on VLAN 3, an unrouted one
    where: dict[str, str]  # relay name -> its namespace (for /metrics)


def start_lab(bed: testbed.Testbed) -> Lab:
    """Build the four VLANs, start the DNS and the three relays, the generator and the sink."""
    v = bed.vlans
    b, c = v.relays[4], v.relays[3]
    # B hears the router relay from its address on VLAN 4; the router relay leaves out its own.
    stable = [v.gateway(4), b.ip]
    extras = [c.ip, f"10.{v.base}.3.99", f"10.{v.base}.99.1"]
    dns = lab.FakeSwarmDns({f"tasks.{SERVICE}": stable})
    # Every relay host's resolver is its gateway: one server on the router's every address.
    dns.serve_in(v.router, address="0.0.0.0")  # inside the lab's router only
    metrics = ["--metrics-port", str(METRICS_PORT)]
    discovery = ["--service-name", SERVICE, "--discovery-interval", f"{PERIOD:g}"]
    mesh = ["-t", "eth0", *discovery]
    rule = f"soak from br1 to {FLAPPED},mesh port {testbed.PORT}"
    specs = [
        ("router", v.router, ["--rule", rule, *discovery, *metrics]),
        ("B", b.ns, [*mesh, "-b", str(testbed.PORT), *metrics]),
        ("C", c.ns, [*mesh, "-b", str(OTHER_PORT), *metrics]),
    ]
    relays = [bed.crosscast(name, ns, args) for name, ns, args in specs]
    for relay in relays:  # started together, waited for in turn: start-up overlaps
        bed.wait_ready(relay)
    generator, sink_ = bed.workers(SYSTEM, v.hosts[1][0], v.hosts[4][0])
    description = (
        f"VLAN 1 -> router relay ({rule}) -> mesh -> relay B -> VLAN 4; "
        f"{FLAPPED} flaps and tasks.{SERVICE} changes every {PERIOD:g} s"
    )
    running = testbed.Running(SYSTEM, description, relays, generator, sink_)
    where = {relay.name: ns for relay, (_, ns, _) in zip(relays, specs, strict=True)}
    return Lab(running, v.router, dns, stable, extras, where)


def carrier_changes(ns: str, dev: str) -> int | None:
    """The kernel's count of carrier changes of `dev` (None when it cannot be read)."""
    proc = netns.run(["cat", f"/sys/class/net/{dev}/carrier_changes"], ns=ns, check=False)
    return int(proc.stdout) if proc.returncode == 0 and proc.stdout.strip().isdigit() else None


def scrape(ns: str, port: int = METRICS_PORT) -> list[dict[str, Any]]:
    """The samples of a relay's /metrics (its server listens on loopback of its namespace)."""
    with (
        netns.inside(ns),  # the socket is created, and stays, in the relay's namespace
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp,
    ):
        text = resp.read().decode()
    return status.samples(text)


class Churn(threading.Thread):
    """Every period: a new peer set in DNS, br3 down, half a period later br3 up."""

    def __init__(self, soak_lab: Lab) -> None:
        super().__init__(name="soak-churn", daemon=True)
        self.lab = soak_lab
        self.flaps = 0
        self.peer_sets = 0
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        tick = 0
        name = f"tasks.{SERVICE}"
        while not self._halt.is_set():
            self.lab.dns.set(name, peers_at(tick + 1, self.lab.stable, self.lab.extras))
            self.peer_sets += 1
            if self._link("down"):
                self._halt.wait(PERIOD / 2)
                self._link("up")  # also when stopping: the lab is left with br3 up
                self.flaps += 1
            tick += 1
            self._halt.wait(max(0.0, start + tick * PERIOD - time.monotonic()))

    def _link(self, state: str) -> bool:
        proc = netns.run(["ip", "link", "set", FLAPPED, state], ns=self.lab.router_ns, check=False)
        if proc.returncode != 0 and len(self.errors) < 10:
            self.errors.append(proc.stderr.strip())
        return proc.returncode == 0

    def stop(self) -> None:
        self._halt.set()
        if self.ident is not None:  # started (a control run never starts it)
            self.join()


def terminate(relays: Sequence[testbed.Relay]) -> list[Exit]:
    """SIGTERM every relay at once; how each ended (killed after KILL_AFTER seconds)."""
    start = time.monotonic()
    pending: dict[str, testbed.Relay] = {}
    exits: dict[str, Exit] = {}
    for r in relays:
        if not r.alive():
            exits[r.name] = Exit(r.name, r.proc.returncode, None)
            continue
        r.proc.send_signal(signal.SIGTERM)
        pending[r.name] = r
    while pending and time.monotonic() - start < KILL_AFTER:
        for name, r in list(pending.items()):
            if r.proc.poll() is not None:
                exits[name] = Exit(name, r.proc.returncode, time.monotonic() - start)
                del pending[name]
        time.sleep(0.005)
    for name, r in pending.items():
        r.proc.kill()
        r.proc.wait()
        exits[name] = Exit(name, None, time.monotonic() - start)
    return [exits[r.name] for r in relays]


class Background:
    """One generator command answered in a thread, so the soak can sample while it runs."""

    def __init__(self, worker: testbed.Worker, command_line: str, timeout: float) -> None:
        self.answer: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._ask, args=(worker, command_line, timeout), daemon=True
        )
        self._thread.start()

    def _ask(self, worker: testbed.Worker, command_line: str, timeout: float) -> None:
        try:
            self.answer = worker.ask(command_line, timeout=timeout)
        except BaseException as e:  # noqa: BLE001 -- handed to the caller by result()
            self.error = e

    def running(self) -> bool:
        return self._thread.is_alive()

    def result(self) -> dict[str, Any]:
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"the generator failed: {self.error}")
        if self.answer is None:
            raise RuntimeError("the generator did not answer")
        return self.answer


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Result:
    """Everything one soak measured."""

    seconds: float
    rate: int
    full_rate: int
    size: int
    usable_max: int | None
    search: list[Delivery]
    sent: int
    elapsed: float
    sink_drops: int
    deliveries: list[Delivery]
    rss_samples: dict[str, list[float]]
    cpu_percent: dict[str, float | None]
    counters: dict[str, list[dict[str, Any]]]
    losses: dict[str, int]  # lost frames by where they were dropped (`loss_places`)
    exits: list[Exit]
    died: list[str]
    churn: dict[str, Any]
    warm_up: int
    rss: dict[str, Rss | None] = field(init=False)

    def __post_init__(self) -> None:
        self.rss = {n: rss_summary(s, self.warm_up) for n, s in self.rss_samples.items()}

    @property
    def problems(self) -> list[str]:
        return problems(self.deliveries, self.rss, self.exits, self.died)


def _percent(before: float | None, after: float | None, seconds: float) -> float | None:
    """CPU seconds spent between two readings, as per cent of `seconds` of one core."""
    return None if before is None or after is None else (after - before) / seconds * 100


class Soak:
    """Bring the lab up, find the rate, soak, stop the relays, gather the numbers."""

    def __init__(
        self,
        bed: testbed.Testbed,
        progress: command.Progress,
        seconds: float,
        rate: int | None,
        size: int,
        plan: command.Plan,
        churn: bool = True,
    ) -> None:
        self.churn = churn  # False: the control run, the same soak with nothing flapping
        self.bed = bed
        self.progress = progress
        self.seconds = seconds
        self.rate = rate
        self.size = size
        self.bench = command.Bench(bed, plan, progress, "soak")

    def run(self) -> Result:
        self.progress.status("soak: starting the lab and three relays")
        soak_lab = start_lab(self.bed)
        running = soak_lab.running
        churn = Churn(soak_lab)
        try:
            self.progress.say(f"soak: {running.description}")
            self.bench.warm_up(running)
            carrier0 = carrier_changes(soak_lab.router_ns, FLAPPED)
            if self.churn:
                churn.start()
            return self._soak(soak_lab, churn, carrier0)
        finally:
            if churn.is_alive():
                churn.stop()
            self.bed.stop(running)  # the generator and sink (the relays have exited)

    def _soak(self, soak_lab: Lab, churn: Churn, carrier0: int | None) -> Result:
        running, size = soak_lab.running, self.size
        usable: int | None = None
        trials: list[Delivery] = []
        rate = self.rate
        if rate is None:
            search, trials, _best = self.bench.search(running, size, "soak: usable max")
            usable = search.best
            rate = usable // 2
            self.progress.say(f"soak: usable max {usable:,} pps; soaking at {rate:,}")
            if rate <= 0:
                raise RuntimeError("no rate passed the search: nothing to soak at")
        full_rate = usable or 2 * rate
        run_id = int(time.time()) & 0xFFFF_FFFF
        records = self.bed.workdir / "soak-records.bin"
        running.sink.ask(f"start {run_id}")
        warm_up = max(5, round(self.seconds * WARM_UP_FRACTION))
        counters0 = {name: scrape(ns) for name, ns in soak_lab.where.items()}
        cpu0 = dict(zip([r.name for r in running.relays], running.cpu(), strict=True))
        start = time.monotonic()
        gen = Background(
            running.generator,
            f"run {run_id} {rate} {self.seconds} {size}",
            self.seconds * 3 + testbed.ANSWER_TIMEOUT,
        )
        samples: dict[str, list[float]] = {r.name: [] for r in running.relays}
        died: list[str] = []
        tick = 0
        while gen.running():
            for r in running.relays:
                if not r.alive():
                    if r.name not in died:
                        died.append(r.name)
                elif (mb := r.rss_mb()) is not None:
                    samples[r.name].append(mb)
            self.progress.status(self._line(time.monotonic() - start, rate, churn, samples))
            tick += 1
            time.sleep(max(0.0, start + tick * PERIOD - time.monotonic()))
        sent = gen.result()
        cpu1 = running.cpu()
        elapsed = time.monotonic() - start
        cpu = {
            r.name: _percent(cpu0[r.name], c1, elapsed)
            for r, c1 in zip(running.relays, cpu1, strict=True)
        }
        time.sleep(SETTLE)
        counters = {name: scrape(ns) for name, ns in soak_lab.where.items()}
        stopped = running.sink.ask(f"stop {records}")
        seqs, latencies = sink.read_records(records)
        deliveries = windows(rate, int(sent["sent"]), WINDOW, seqs, latencies)
        lost = sum(d.lost for d in deliveries)
        places = loss_places(
            lost, counters0, counters, soak_lab.stable[1], int(stopped["socket_drops"])
        )
        self.progress.status(f"soak: SIGTERM to every relay at {full_rate:,} pps")
        tail = Background(
            running.generator,
            f"run {run_id ^ 1} {full_rate} {TAIL} {size}",
            TAIL * 5 + testbed.ANSWER_TIMEOUT,
        )
        time.sleep(SIGTERM_AFTER)
        exits = terminate(running.relays)
        tail.result()
        churn.stop()
        carrier1 = carrier_changes(soak_lab.router_ns, FLAPPED)
        return Result(
            seconds=self.seconds,
            rate=rate,
            full_rate=full_rate,
            size=size,
            usable_max=usable,
            search=trials,
            sent=int(sent["sent"]),
            elapsed=float(sent["elapsed"]),
            sink_drops=int(stopped["socket_drops"]),
            deliveries=deliveries,
            rss_samples=samples,
            cpu_percent=cpu,
            counters=counters,
            losses=places,
            exits=exits,
            died=died,
            churn=self._churn_seen(soak_lab, churn, carrier0, carrier1),
            warm_up=warm_up,
        )

    def _line(self, t: float, rate: int, churn: Churn, samples: dict[str, list[float]]) -> str:
        rss = " ".join(f"{n} {s[-1]:.1f}" for n, s in samples.items() if s)
        return (
            f"soak {t:.0f}/{self.seconds:g} s at {rate:,} pps: {churn.flaps} flaps, "
            f"{churn.peer_sets} peer sets; RSS MB {rss}; load {os.getloadavg()[0]:.2f}"
        )

    @staticmethod
    def _churn_seen(
        soak_lab: Lab, churn: Churn, carrier0: int | None, carrier1: int | None
    ) -> dict[str, Any]:
        """What churn happened, counted by the soak, the kernel and the relays' own logs."""
        logs = {r.name: r.log.read_text(errors="replace") for r in soak_lab.running.relays}
        return {
            "peers": dict(
                zip(
                    ("router", "B", "C", "silent", "unrouted"),
                    soak_lab.stable + soak_lab.extras,
                    strict=True,
                )
            ),
            "flaps": churn.flaps,
            "peer_sets": churn.peer_sets,
            "flap_errors": churn.errors,
            "carrier_changes": None
            if carrier0 is None or carrier1 is None
            else carrier1 - carrier0,
            # discovery logs one line per change of a relay's peer set
            "peer_changes_logged": {n: text.count("mesh peers now") for n, text in logs.items()},
        }


# -- the command -------------------------------------------------------------------------------


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`crosscast bench --soak SECONDS [--rate PPS]`: the exit status (1 when it failed)."""
    out = out or sys.stdout
    why = testbed.why_not_here()
    if why is not None:
        print(f"crosscast bench: {why}", file=sys.stderr)
        return command.EXIT_USAGE
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [DEFAULT_SIZE]
    if args.soak < 5 or (args.rate is not None and args.rate <= 0) or not 24 <= sizes[0] <= 1472:
        print("crosscast bench: need --soak >= 5, --rate > 0, a size 24..1472", file=sys.stderr)
        return command.EXIT_USAGE
    plan = command.Plan(
        sizes=(sizes[0],),
        trial_seconds=args.trial_seconds or 1.0,
        start_rate=4000,
        max_rate=args.max_rate or command.Plan.max_rate,
        precision=0.15,
        max_trials=8,
        overload=False,
    )
    machine = command.describe_machine()
    progress = command.Progress(sys.stderr)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="crosscast-soak-") as tmp:
        workdir = Path(args.logs) if args.logs else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        bed = testbed.Testbed(workdir, n_vlans=4, stem=PREFIX_STEM)
        progress.say(f"crosscast bench --soak: namespaces {bed.prefix}-*, load {machine['load']}")
        soak = Soak(bed, progress, args.soak, args.rate, sizes[0], plan, not args.no_churn)
        status_code = command.run_in_lab(
            bed, progress, "crosscast bench --soak", lambda: results.append(soak.run())
        )
    progress.done()
    if not results:
        return status_code or command.EXIT_FAILED
    result = results[0]
    machine["load_after"] = command.describe_machine()["load"]
    print(render(result), file=out)
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(result, machine), indent=2) + "\n")
        print(f"JSON: {args.json}", file=out)
    return command.EXIT_FAILED if result.problems else command.EXIT_OK


# -- the report --------------------------------------------------------------------------------


def _num(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _window_row(label: str, d: Delivery) -> str:
    lat = d.latency
    p50, p99, top = (None, None, None) if lat is None else (lat.p50, lat.p99, lat.max)
    ms = [_num(None if v is None else v / 1000, "{:.2f}") for v in (p50, p99, top)]
    return (
        f"{label:>9} {d.sent:>9,} {d.lost:>6,} {d.duplicates:>5,} {d.reordered:>6,} "
        f"{ms[0]:>7} {ms[1]:>7} {ms[2]:>7}"
    )


def _relay_row(name: str, rss: Rss | None, cpu: float | None, e: Exit | None) -> str:
    mb = [None] * 5 if rss is None else [rss.start, rss.reference, rss.max, rss.end, rss.growth]
    cells = [_num(v) for v in mb[:4]] + [_num(mb[4], "{:+.1f}")]
    code = "-" if e is None or e.status is None else str(e.status)
    took = _num(None if e is None else e.seconds, "{:.2f}")
    return (
        f"{name:<16} {cells[0]:>9} {cells[1]:>7} {cells[2]:>7} {cells[3]:>7} {cells[4]:>7} "
        f"{_num(cpu, '{:.0f}'):>6} {code:>5} {took:>7}"
    )


def render(r: Result) -> str:
    """The soak's summary: the windows, each relay, the churn, the verdict."""
    searched = f" (half the usable max {r.usable_max:,})" if r.usable_max is not None else ""
    lines = [
        f"soak: {r.seconds:g} s at {r.rate:,} pps{searched}, {r.size} B payloads, "
        f"{r.sent:,} frames in {r.elapsed:.1f} s",
        "",
        f"{'window':>9} {'sent':>9} {'lost':>6} {'dup':>5} {'reord':>6} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7}",
    ]
    lines += [
        _window_row(f"{k * WINDOW:g}-{k * WINDOW + d.seconds:g}s", d)
        for k, d in enumerate(r.deliveries)
    ]
    lost = sum(d.lost for d in r.deliveries)
    dups = sum(d.duplicates for d in r.deliveries)
    places = ", ".join(f"{k} {v:,}" for k, v in r.losses.items() if v)
    lines += [
        f"{'all':>9} {r.sent:>9,} {lost:>6,} {dups:>5,}"
        + (f"  (lost in: {places})" if lost else ""),
        "",
        f"{'relay':<16} {'RSS start':>9} {'warm':>7} {'max':>7} {'end':>7} {'growth':>7} "
        f"{'CPU %':>6} {'exit':>5} {'exit s':>7}",
    ]
    exits = {e.name: e for e in r.exits}
    lines += [
        _relay_row(name, rss, r.cpu_percent.get(name), exits.get(name))
        for name, rss in r.rss.items()
    ]
    c = r.churn
    router, b = r.counters.get(ROUTER, []), r.counters.get(RELAY_B, [])
    peers = {s["labels"].get("peer") for s in router if s["name"] == MESH_SENT}
    logged = ", ".join(f"{n} {v}" for n, v in c["peer_changes_logged"].items())
    lines += [
        "",
        f"churn: {c['flaps']} flaps of {FLAPPED} (kernel carrier changes {c['carrier_changes']}), "
        f"{c['peer_sets']} peer sets served; peer changes logged: {logged}",
        f"router relay: relayed {metric(router, 'crosscast_relayed_frames_total'):,.0f}, "
        f"to {FLAPPED} {metric(router, EMITTED, interface=FLAPPED):,.0f} "
        f"(send errors {metric(router, SEND_ERRORS, interface=FLAPPED):,.0f}); "
        f"mesh sends {metric(router, MESH_SENT):,.0f} to {len(peers)} peers "
        f"(send errors {metric(router, 'crosscast_mesh_send_errors_total'):,.0f}); "
        f"relay B: emitted {metric(b, EMITTED, interface='eth0'):,.0f}",
        f"SIGTERM at {r.full_rate:,} pps; RSS flat = the end within {RSS_LIMIT_MB:g} MB of the "
        f"value after {r.warm_up} s",
    ]
    found = r.problems
    lines.append("verdict: " + ("PASS" if not found else "FAIL: " + "; ".join(found)))
    return "\n".join(lines)


def to_json(r: Result, machine: dict[str, Any]) -> dict[str, Any]:
    """Every number of the soak (the relays' counters without zeros and process_* samples)."""
    return {
        "machine": machine,
        "settings": {
            "seconds": r.seconds,
            "rate": r.rate,
            "full_rate": r.full_rate,
            "size": r.size,
            "window_seconds": WINDOW,
            "period_seconds": PERIOD,
            "rss_limit_mb": RSS_LIMIT_MB,
            "exit_limit_seconds": EXIT_LIMIT,
            "warm_up_seconds": r.warm_up,
        },
        "usable_max": r.usable_max,
        "search": [delivery_json(d) for d in r.search],
        "sent": r.sent,
        "elapsed": r.elapsed,
        "lost": sum(d.lost for d in r.deliveries),
        "duplicates": sum(d.duplicates for d in r.deliveries),
        "reordered": sum(d.reordered for d in r.deliveries),
        "sink_drops": r.sink_drops,
        "losses": r.losses,
        "windows": [delivery_json(d) for d in r.deliveries],
        "rss": {
            n: None if v is None else {**asdict(v), "growth": v.growth, "flat": v.flat}
            for n, v in r.rss.items()
        },
        "rss_samples": r.rss_samples,
        "cpu_percent": r.cpu_percent,
        "exits": [{**asdict(e), "ok": e.ok} for e in r.exits],
        "died": r.died,
        "churn": r.churn,
        "counters": {
            n: [s for s in samples if s["value"] and not s["name"].startswith("process_")]
            for n, samples in r.counters.items()
        },
        "problems": r.problems,
        "ok": not r.problems,
    }
