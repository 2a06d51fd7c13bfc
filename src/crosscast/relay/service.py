"""The relay's composition root: settings -> sockets + engine -> supervised tasks -> exit code.

Owns start-up (fail fast with one line and status 2), the event loop (relay/eventloop.py),
the readers that drain each socket on every wake-up, supervision of the periodic tasks, health,
the logging of what the engine recorded (each drop reason once at warning, repeats at debug),
live reconfiguration (SIGHUP reloads rules and peers atomically; address, prefix and link
changes come from netlink and update the engine, the kernel filters and the own addresses),
and an orderly shutdown on SIGTERM/SIGINT (status 0). Everything it decides per packet, it asks
the engine. It opens nothing itself: interfaces, sockets and DNS come from a `Host`
(relay/host.py), the real machine unless a test passes a fake one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import gc
import json
import logging
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from crosscast.net.bpf import CaptureSpec, Instruction, capture_program
from crosscast.net.frames import LIMITED_BROADCAST
from crosscast.relay import READY, eventloop, logformat, protocols, sdnotify
from crosscast.relay import settings as config
from crosscast.relay.capture import StartupError
from crosscast.relay.discovery import Discovery, LazyResolver, needs_dns
from crosscast.relay.engine import Drop, Dropped, Interface, Output, Relay, RelayJoined
from crosscast.relay.envelope import CrosscastCodec
from crosscast.relay.host import CapturePort, Host, MeshPort, SystemHost, WatchPort
from crosscast.relay.ruleindex import RuleTable
from crosscast.relay.rules import Rule, format_rule_table, rule_to_dict

if TYPE_CHECKING:
    # prometheus_client (and http.server, email, ...) cost 4 MB of RSS: imported when /metrics
    # is served or scraped (a relay without --metrics-port never loads them).
    from prometheus_client import CollectorRegistry

    from crosscast.relay import metrics

log = logging.getLogger("crosscast")

TICK = 1.0  # seconds between housekeeping ticks (probes, expiries)
WATCH = 2.0  # seconds between checks that each interface is still the one we opened
RESTART_DELAY = 1.0  # seconds before a crashed task is started again
SWAP_DRAINS = 16  # drains of a replaced capture before it closes (up to 4,096 frames)
WAIT_POLL = 0.5  # seconds between looks for missing interfaces (--wait-for-interfaces)
# What a reload cannot change on a running relay: (setting, what it is called in the log).
RESTART_ONLY = (
    ("mesh_port", "mesh port"),
    ("mesh_format", "mesh format"),
    ("mesh_secret", "mesh secret"),
    ("metrics_port", "metrics port"),
    ("metrics_address", "metrics address"),
    ("rcvbuf", "receive buffer"),
    ("egress_rate", "egress rate"),
    ("mesh_mtu", "mesh MTU"),
    ("scheduler_slice", "scheduler slice"),
    ("log_level", "log level"),
    ("discovery_interval", "discovery interval"),
)


_CaptureArgs = tuple[tuple[Instruction, ...], tuple[int, ...]]  # a capture's filter and groups


def _random_id() -> int:
    """A random u64 naming this relay process (os.urandom: `secrets` would load hashlib)."""
    return int.from_bytes(os.urandom(8), "big")


def _ip(value: int | None) -> str:
    return "-" if value is None else socket.inet_ntoa(value.to_bytes(4, "big"))


class Runtime:
    """The open sockets, the engine and the tasks of one running relay."""

    def __init__(
        self,
        settings: config.RelaySettings,
        host: Host,
        *,
        relay_id: int | None = None,
        clock: Callable[[], float] = time.time,
        reload: Callable[[], config.RelaySettings] | None = None,
        notifier: sdnotify.Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.host = host
        self.clock = clock
        self._reload = reload  # reads the configuration again (SIGHUP); None: cannot
        self._port_args: dict[str, _CaptureArgs] = {}
        self.watch: WatchPort | None = None
        self._peers_changed = asyncio.Event()
        self.notifier = notifier or sdnotify.Notifier(None)
        self.decoder = protocols.DecodeLog() if settings.decode_pvaccess else None
        self.table = RuleTable(settings.rules)
        self.counters: Counter[tuple[str, ...]] = Counter()
        self.ports: dict[str, CapturePort] = {}
        self.mesh: MeshPort | None = None
        self.down: set[str] = set()  # tasks or sockets not running: health fails while non-empty
        self.heard: dict[str, float] = {}  # peer -> when a datagram last came from it
        self._warned: set[Drop] = set()  # drop reasons logged at warning once already
        interfaces = {name: host.read_interface(name) for name in settings.interfaces}
        self.relay = Relay(
            rules=self.table,
            interfaces=interfaces,
            relay_id=_random_id() if relay_id is None else relay_id,
            mesh_port=settings.mesh_port,
            mesh_format=settings.mesh_format,
            codec=CrosscastCodec(settings.mesh_secret),
            egress_rate=settings.egress_rate,
            mesh_mtu=settings.mesh_mtu,
        )
        self.own = set(host.own_addresses())
        first = interfaces[settings.interfaces[0]] if settings.interfaces else None
        self_address = _ip(first.address) if first and first.address is not None else None
        self._self_address = self_address
        self.discovery = self._discovery(settings)
        try:
            for iface in interfaces.values():
                self.ports[iface.name] = self._open_port(iface)
            if settings.uses_mesh:
                self.mesh = host.open_mesh(settings.mesh_port, settings.rcvbuf)
        except BaseException:
            self.close()
            raise
        self._registry: CollectorRegistry | None = None  # made on the first scrape

    def _discovery(self, settings: config.RelaySettings) -> Discovery:
        self_address = self._self_address
        # A resolver (and dnspython, 5 MB of RSS) only when a peer name needs one.
        resolver = (
            self.host.resolver()
            if needs_dns(settings.peer_names)
            else LazyResolver(self.host.resolver)
        )
        return Discovery(
            settings.peer_names, self.host.own_addresses, resolver, lambda: self_address
        )

    def _capture_args(self, iface: Interface, table: RuleTable) -> _CaptureArgs:
        """The kernel filter and the groups of `iface`'s capture under `table`."""
        ports, groups = table.capture_needs(iface.name)
        addrs = (
            (LIMITED_BROADCAST,)
            if iface.broadcast is None
            else (LIMITED_BROADCAST, iface.broadcast)
        )
        spec = CaptureSpec(broadcast_ports=ports, broadcast_addrs=addrs, groups=groups)
        return tuple(capture_program(spec)), table.groups_on(iface.name)

    def _open_port(self, iface: Interface, table: RuleTable | None = None) -> CapturePort:
        table = self.table if table is None else table
        args = self._capture_args(iface, table)
        program, groups = args
        probes_only = table.capture_needs(iface.name) == ((), ())
        port = self.host.open_capture(
            iface.name, program, groups, self.settings.rcvbuf, probes_only
        )
        self._port_args[iface.name] = args
        return port

    def close(self) -> None:
        for port in self.ports.values():
            port.close()
        self.ports.clear()
        if self.mesh is not None:
            self.mesh.close()
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    # -- per-packet paths (eventloop.Readers callbacks) ----------------------------------------

    def _execute(self, out: Output) -> None:
        if self.relay.events:
            self._log_events()
        ports = self.ports
        for name, frame in out.emits:
            port = ports.get(name)
            try:
                if port is None:
                    raise OSError("interface not open")
                port.send(frame)  # one system call: the port's socket is bound to `name`
            except OSError:
                self.counters["send_errors", name] += 1
        if out.datagrams and self.mesh is not None:
            self.mesh.send(out.datagrams, self.discovery.peers)

    def _log_events(self) -> None:
        for event in self.relay.take_events():
            if isinstance(event, Dropped):
                self._log_drop(event.reason, event.where)
            elif isinstance(event, RelayJoined):
                log.info(
                    "relay %016x (%s) shares segment %s; %s forwards for it",
                    event.origin,
                    event.mac.hex(":"),
                    event.iface,
                    "we" if event.designated else "it",
                )

    def _log_drop(self, reason: Drop, where: str) -> None:
        if reason not in self._warned:
            self._warned.add(reason)
            log.warning(
                "dropped a frame (%s) on %s; further drops are counted, not logged", reason, where
            )
        else:
            log.debug("dropped a frame (%s) on %s", reason, where)

    def on_port_readable(self, port: CapturePort) -> None:
        try:
            frames = port.receive()
        except OSError as e:
            # ENETDOWN once when the link goes down; the kernel re-hooks the socket when it
            # comes back. A deleted interface is noticed by the watcher, which re-opens.
            self.counters["dropped", f"capture-{errno_name(e)}"] += 1
            return
        if not frames:
            return
        now = self.clock()
        if self.decoder is not None:  # --decode-pvaccess: off the fast path unless asked for
            for item in frames:
                line = self.decoder.observe(item[0], port.name, now)
                if line is not None:
                    log.info("%s", line)
        try:
            # The whole drain in one call: its mesh frames leave batched.
            self._execute(self.relay.on_capture(port.name, frames, now))
        except Exception:  # noqa: BLE001 -- a packet must never kill the relay; counted
            self._internal_error("capture")

    def on_mesh_readable(self) -> None:
        assert self.mesh is not None
        peers = self.discovery.peers
        own = self.own
        now = self.clock()
        accepted = []
        for data, host in self.mesh.receive():
            if host not in peers:
                self.counters["dropped", Drop.NOT_PEER] += 1
                self._log_drop(Drop.NOT_PEER, host)
                continue
            self.heard[host] = now
            accepted.append((data, host in own))
        if not accepted:
            return
        try:
            self._execute(self.relay.on_mesh(accepted, now))
        except Exception:  # noqa: BLE001 -- a datagram must never kill the relay; counted
            self._internal_error("mesh")

    def _internal_error(self, where: str) -> None:
        self.counters["internal_errors", where] += 1
        if self.counters["internal_errors", where] == 1:
            log.exception("unexpected error in the %s path (counted; the relay goes on)", where)

    # -- supervised tasks --------------------------------------------------------------------

    async def _supervise(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.down.add(name)
                self.counters["internal_errors", name] += 1
                log.exception("task %s failed; restarting in %g s", name, RESTART_DELAY)
                await asyncio.sleep(RESTART_DELAY)
                self.down.discard(name)

    async def _ticks(self) -> None:
        while True:
            self._execute(self.relay.on_tick(self.clock()))
            self._count_kernel_drops()
            await asyncio.sleep(TICK)

    def _count_kernel_drops(self) -> None:
        # PACKET_STATISTICS and the ring's own counts, read off the packet path: frames the
        # kernel dropped because the capture queue was full (sized for bursts, not backlog, so
        # overload shows up here), frames too old to relay, and the bytes captured and sent.
        for port in self.ports.values():
            try:
                counts = port.take_counts()
            except OSError:
                continue
            for kind, n in counts.items():
                if not n:
                    continue
                if kind == "too_long":
                    self.counters["dropped", Drop.TOO_LONG, port.name] += n
                else:
                    self.counters[kind, port.name] += n
        if self.mesh is not None:
            with contextlib.suppress(OSError):
                self.mesh.count_socket_drops()

    async def _discover(self) -> None:
        while True:
            # A reload with other peer names wakes this at once.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._peers_changed.wait(), self.settings.discovery_interval)
            self._peers_changed.clear()
            change = await self.discovery.refresh()
            if change.added or change.removed:
                self.own = set(self.host.own_addresses())

    async def _watch(self) -> None:
        """Look at the interfaces every WATCH seconds, in case netlink is missing or lost an
        event (the address watch wakes `check_interfaces` at once otherwise)."""
        while True:
            await asyncio.sleep(WATCH)
            self.check_interfaces()

    def on_watch_readable(self) -> None:
        assert self.watch is not None
        if self.watch.drain():
            self.check_interfaces()

    def check_interfaces(self) -> None:
        """Re-open the capture of an interface that was deleted and created again (a new
        ifindex); a link that only went down and up keeps its socket (see on_port_readable).
        An interface whose address, prefix or MAC changed is updated in the engine, gets a
        capture filtering for its new broadcast address, and the own addresses are read again.
        """
        for name in self.settings.interfaces:
            port = self.ports.get(name)
            index = self.host.interface_index(name)
            if port is not None and index == port.index:
                self._check_address(name)
                continue
            if port is not None:
                self._close_port(port)
                log.warning("interface %s went away; waiting for it to come back", name)
            if index is not None:
                self._reopen(name)

    def _check_address(self, name: str) -> None:
        try:
            iface = self.host.read_interface(name)
        except (StartupError, OSError):
            return  # gone between the two look-ups: the next check re-opens it
        old = self.relay.interfaces.get(name)
        if old == iface:
            return
        self.relay.update_interface(iface)
        self.own = set(self.host.own_addresses())
        log.info(
            "interface %s is now %s/%s (broadcast %s)",
            name,
            _ip(iface.address),
            "-" if iface.prefix_len is None else iface.prefix_len,
            _ip(iface.broadcast) if iface.broadcast is not None else "255.255.255.255 only",
        )
        if self._capture_args(iface, self.table) != self._port_args.get(name):
            self._replace_port(name, iface, self.table)

    def _replace_port(self, name: str, iface: Interface, table: RuleTable) -> None:
        """A new capture for `name` (new filter or groups), opened before the old one closes so
        nothing is missed; what both saw is one frame to the duplicate window."""
        try:
            port = self._open_port(iface, table)
        except (StartupError, OSError) as e:
            log.warning("cannot re-open %s with its new filter yet: %s", name, e)
            return
        self._swap_port(name, port)

    def _swap_port(self, name: str, port: CapturePort) -> None:
        old = self.ports.get(name)
        self.ports[name] = port
        self._watch_port(port)
        if old is not None:
            self._unwatch_port(old)
            # What it queued before the new one opened (a few drains' worth), then close.
            for _ in range(SWAP_DRAINS):
                self.on_port_readable(old)
            old.close()

    # -- SIGHUP -----------------------------------------------------------------------------

    def on_sighup(self) -> None:
        try:
            self.reload()
        except Exception:  # a reload must never kill the relay; counted and logged
            self.counters["reload_failures",] += 1
            log.exception("reload failed; the old configuration stays")

    def _refuse(self, why: str) -> bool:
        self.counters["reload_failures",] += 1
        log.error("reload refused, the old configuration stays: %s", why)
        return False

    def reload(self) -> bool:
        """Read the configuration again and swap in its rules and peers, all or nothing.

        Captures whose filter and groups stay the same are kept; changed ones are replaced
        without a gap (`_replace_port`); the engine takes the new rule table in one step, so
        every frame is judged by the old rules or the new ones, never a mix. Settings that only
        a restart can change are logged, not applied.
        """
        if self._reload is None:
            return self._refuse("no configuration to reload")
        try:
            new = self._reload()
        except config.SettingsError as e:
            return self._refuse("; ".join(e.problems))
        if new.uses_mesh != (self.mesh is not None):
            return self._refuse("turning the mesh on or off needs a restart")
        table = RuleTable(new.rules)
        opened: dict[str, CapturePort] = {}
        interfaces: dict[str, Interface] = {}
        port_args = dict(self._port_args)  # _open_port records the new ones
        try:
            for name in new.interfaces:
                iface = self.host.read_interface(name)
                interfaces[name] = iface
                if name not in self.ports or self._capture_args(
                    iface, table
                ) != self._port_args.get(name):
                    opened[name] = self._open_port(iface, table)
        except (StartupError, OSError) as e:
            for port in opened.values():
                port.close()
            self._port_args = port_args
            return self._refuse(str(e))
        for iface in interfaces.values():
            self.relay.update_interface(iface)
        self.relay.update_rules(table)
        self.table = table
        for name, port in opened.items():
            self._swap_port(name, port)
        for name in set(self.ports) - set(new.interfaces):
            old = self.ports.pop(name)
            self._unwatch_port(old)
            old.close()
            self._port_args.pop(name, None)
            self.relay.remove_interface(name)
            self.down.discard(f"capture {name}")
        if new.peer_names != self.settings.peer_names:
            discovery = self._discovery(new)
            discovery.peers = self.discovery.peers  # keep sending until the names resolve
            self.discovery = discovery
            self._peers_changed.set()
        for field, what in RESTART_ONLY:
            if getattr(new, field) != getattr(self.settings, field):
                log.warning("reload: the %s changed; it takes effect on restart", what)
        old_rules = {r.name: r for r in self.settings.rules}
        self.settings = dataclasses.replace(
            self.settings,
            rules=new.rules,
            other_relays=new.other_relays,
            service_name=new.service_name,
        )
        self.counters["reloads",] += 1
        new_rules = {r.name: r for r in new.rules}
        changed = [n for n in new_rules if n in old_rules and not _same(old_rules[n], new_rules[n])]
        log.info(
            "reloaded: %d rules (added %s; removed %s; changed %s); recaptured %s",
            len(new.rules),
            ", ".join(sorted(new_rules.keys() - old_rules.keys())) or "none",
            ", ".join(sorted(old_rules.keys() - new_rules.keys())) or "none",
            ", ".join(sorted(changed)) or "none",
            ", ".join(sorted(opened)) or "nothing",
        )
        return True

    def _close_port(self, port: CapturePort) -> None:
        self._unwatch_port(port)
        port.close()
        del self.ports[port.name]
        self.down.add(f"capture {port.name}")

    def _reopen(self, name: str) -> None:
        try:
            iface = self.host.read_interface(name)
            port = self._open_port(iface)
        except (StartupError, OSError) as e:
            log.warning("cannot re-open %s yet: %s", name, e)
            return
        self.relay.update_interface(iface)
        self.ports[name] = port
        self._watch_port(port)
        self.down.discard(f"capture {name}")
        log.info("interface %s is back; capturing again", name)

    def _watch_port(self, port: CapturePort) -> None:
        eventloop.readers().watch(
            port.sock.fileno(), functools.partial(self.on_port_readable, port)
        )

    def _unwatch_port(self, port: CapturePort) -> None:
        eventloop.readers().unwatch(port.sock.fileno())

    async def _serve_metrics(self) -> None:
        port = self.settings.metrics_port
        assert port is not None
        from crosscast.relay import metrics

        await metrics.serve(self.settings.metrics_address, port, self.metrics_text, self.health)

    def health(self) -> tuple[bool, str]:
        if self.down:
            return False, "not running: " + ", ".join(sorted(self.down))
        return True, "ok"

    def totals(self) -> Counter[tuple[str, ...]]:
        """Every counter of the relay, the engine's, the decoder's and the mesh socket's."""
        counters: Counter[tuple[str, ...]] = Counter(self.counters)
        counters.update(self.relay.counters)
        if self.decoder is not None:
            counters.update(self.decoder.counts)
        if self.mesh is not None:
            counters.update(self.mesh.counters)
        return counters

    def snapshot(self) -> metrics.Snapshot:
        """What /metrics exports, copied from the counters only when it is scraped."""
        from crosscast.relay import metrics

        counters = self.totals()
        now = self.clock()
        peers = {
            p: (now - self.heard[p]) if p in self.heard else None for p in self.discovery.peers
        }
        return metrics.Snapshot(counters, up=not self.down, peers=peers)

    def metrics_text(self) -> str:
        from crosscast.relay import metrics

        if self._registry is None:
            self._registry = metrics.registry(self.snapshot)
        return metrics.exposition(self._registry)

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Run until SIGTERM/SIGINT (or until `stop` is set, for tests)."""
        loop = asyncio.get_running_loop()
        stop = stop or asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.on_sighup)
        readers = eventloop.readers()
        for port in self.ports.values():
            self._watch_port(port)
        self.watch = self.host.open_address_watch()
        if self.watch is not None:
            readers.watch(self.watch.sock.fileno(), self.on_watch_readable)
        if self.mesh is not None:
            readers.watch(self.mesh.sock.fileno(), self.on_mesh_readable)
            await self.discovery.refresh()
        if self.settings.scheduler_slice:  # µs; see relay/sched.py
            slice_ = self.host.request_slice(self.settings.scheduler_slice * 1000)
            log.info("scheduler slice: %s", slice_)
        ports = ", ".join(
            f"{p.name} ({_ip(self.relay.interfaces[p.name].address)})" for p in self.ports.values()
        )
        peers = " ".join(sorted(self.discovery.peers)) or "none yet"
        log.info(
            READY + ": relay %016x on %s; mesh %s; peers: %s",
            self.relay.relay_id,
            ports,
            f"{self.settings.mesh_format} on port {self.mesh.port}" if self.mesh else "off",
            peers,
        )
        self.notifier.ready(status=f"relaying on {ports}")
        # What start-up made (modules, rules, tables: some 100,000 objects) lives as long as the
        # process. Frozen, the cyclic collector no longer walks it: its full collection, which
        # the per-frame allocations trigger now and then, took 13-16 ms of a relay's time (a
        # stall longer than MAX_WAIT, so frames were dropped as late) and takes 0.1 ms.
        gc.freeze()
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self._supervise("ticks", self._ticks)),
                tg.create_task(self._supervise("interface watch", self._watch)),
            ]
            if self.mesh is not None:
                tasks.append(tg.create_task(self._supervise("discovery", self._discover)))
            if self.settings.metrics_port:
                tasks.append(tg.create_task(self._supervise("metrics", self._serve_metrics)))
            await stop.wait()
            self._count_kernel_drops()
            log.info("stopping; counted since start: %s", _summary(self.totals()))
            self.notifier.stopping()
            for task in tasks:
                task.cancel()
        for port in self.ports.values():
            self._unwatch_port(port)
        if self.mesh is not None:
            readers.unwatch(self.mesh.sock.fileno())
        if self.watch is not None:  # opened by serve, so closed here
            readers.unwatch(self.watch.sock.fileno())
            self.watch.close()
            self.watch = None
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def _same(a: Rule, b: Rule) -> bool:
    """Whether two versions of a rule differ in nothing but where they were read from."""
    return dataclasses.replace(a, origin="") == dataclasses.replace(b, origin="")


def _summary(counters: Counter[tuple[str, ...]]) -> str:
    """`kind{label,...}=n` for every non-zero counter, in key order: the numbers an operator
    (or a failed test) reads at shutdown without a metrics scrape."""

    def name(key: tuple[str, ...]) -> str:
        kind, *labels = key
        return f"{kind}{{{','.join(labels)}}}" if labels else kind

    items = sorted((tuple(map(str, key)), n) for key, n in counters.items() if n)
    return " ".join(f"{name(key)}={n}" for key, n in items) or "nothing"


def errno_name(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, "oserror").lower()


def _configure_logging(level: str, log_format: str, environ: Mapping[str, str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    # Under journald (JOURNAL_STREAM names our stderr) the journal stamps each line itself.
    try:
        journal = logformat.stderr_is_journal(environ, sys.stderr.fileno())
    except (OSError, ValueError):  # a stderr with no descriptor (captured by a test runner)
        journal = False
    handler.setFormatter(logformat.make_formatter(log_format, journal))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def check_report(
    settings: config.RelaySettings | None, problems: Sequence[str] = ()
) -> dict[str, Any]:
    """--check --format json: one object (its shape is documented in the README, "JSON
    output"). `settings` is None when they could not be loaded; `problems` say why."""
    return {
        "ok": not problems,
        "problems": list(problems),
        "settings": {
            name: {"value": value, "origin": origin}
            for name, value, origin in (config.setting_rows(settings) if settings else ())
        },
        "rules": [
            {**rule_to_dict(rule), "origin": rule.origin or None}
            for rule in (settings.rules if settings else ())
        ],
    }


def check(settings: config.RelaySettings) -> int:
    """--check: the effective settings with their origins and the rule table (the settings
    were loaded with this host's interfaces, so every problem was reported already)."""
    if settings.output_format == "json":
        print(json.dumps(check_report(settings), indent=2))
        return 0
    print("settings:")
    for line in config.describe(settings):
        print(f"  {line}")
    print("rules:")
    for line in format_rule_table(settings.rules).splitlines():
        print(f"  {line}")
    print("configuration ok")
    return 0


def wait_for_interfaces(
    host: Host, names: Sequence[str], *, sleep: Callable[[float], None] = time.sleep
) -> bool:
    """--wait-for-interfaces: block until every interface in `names` exists (a VLAN or veth
    that another unit creates after the relay starts). False if SIGTERM came first."""
    stopped = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stopped
        stopped = True

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        missing = [n for n in names if n not in host.interfaces()]
        if missing:
            log.info("waiting for interfaces %s to appear", ", ".join(missing))
        while missing and not stopped:
            sleep(WAIT_POLL)
            missing = [n for n in names if n not in host.interfaces()]
    finally:
        signal.signal(signal.SIGTERM, previous)
    return not stopped


def _asks_json(argv: Sequence[str]) -> bool:
    """Whether argv asks for --format json, read before (and so whether or not) the settings
    load, because their problems are reported in that format too."""
    pairs = zip(argv, [*argv[1:], ""], strict=True)
    return any(a == "--format=json" or (a, b) == ("--format", "json") for a, b in pairs)


def main(
    argv: Sequence[str], *, environ: Mapping[str, str] | None = None, host: Host | None = None
) -> int:
    """`crosscast relay ARGV`: the exit status. `environ` defaults to os.environ and `host` to
    the real machine; tests pass their own."""
    host = SystemHost() if host is None else host
    environ = os.environ if environ is None else environ
    # --check also judges the interfaces the rules name (a running relay finds out on opening).
    present = set(host.interfaces()) if "--check" in argv else None
    try:
        settings = config.load(argv, environ, interfaces=present)
    except config.SettingsError as e:
        if "--check" in argv and _asks_json(argv):
            print(json.dumps(check_report(None, e.problems), indent=2))
            return 2
        for problem in e.problems:
            print(f"crosscast relay: {problem}", file=sys.stderr)
        return 2
    if settings.check:
        return check(settings)
    _configure_logging(settings.log_level, settings.log_format, environ)
    if settings.wait_for_interfaces and not wait_for_interfaces(host, settings.interfaces):
        return 0  # SIGTERM while waiting
    try:
        runtime = Runtime(
            settings,
            host,
            notifier=sdnotify.Notifier.from_environ(environ),
            reload=lambda: config.load(argv, environ, interfaces=None),
        )
    except StartupError as e:
        print(f"crosscast relay: {e}", file=sys.stderr)
        return 2
    if settings.event_loop != "auto":
        log.warning("--event-loop %s is ignored: the relay has one event loop", settings.event_loop)
    for line in config.describe(settings):
        log.info("setting %s", line)
    for line in format_rule_table(settings.rules).splitlines():
        log.info("rule %s", line)
    try:
        eventloop.run(runtime.serve())
    except KeyboardInterrupt:
        pass  # a second Ctrl-C during shutdown
    finally:
        with contextlib.suppress(OSError):
            runtime.close()
    return 0
