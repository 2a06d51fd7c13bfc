"""The relay's composition root: settings -> sockets + engine -> supervised tasks -> exit code.

Owns start-up (fail fast with one line and status 2), the event loop (uvloop when installed),
the readers that drain each socket on every wake-up, supervision of the periodic tasks, health,
the logging of what the engine recorded (each drop reason once at warning, repeats at debug),
and an orderly shutdown on SIGTERM/SIGINT (status 0). Everything it decides per packet, it asks
the engine. It opens nothing itself: interfaces, sockets and DNS come from a `Host`
(relay/host.py), the real machine unless a test passes a fake one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from crosscast.net.bpf import CaptureSpec, capture_program
from crosscast.net.frames import LIMITED_BROADCAST
from crosscast.relay import READY, logformat, protocols, sdnotify
from crosscast.relay import settings as config
from crosscast.relay.capture import StartupError
from crosscast.relay.discovery import Discovery, LazyResolver, needs_dns
from crosscast.relay.engine import Drop, Dropped, Interface, Output, Relay, RelayJoined
from crosscast.relay.envelope import CrosscastCodec
from crosscast.relay.host import CapturePort, Host, MeshPort, SystemHost
from crosscast.relay.ruleindex import RuleTable
from crosscast.relay.rules import format_rule_table, rule_to_dict

if TYPE_CHECKING:
    # prometheus_client (and http.server, email, ...) cost 4 MB of RSS: imported when /metrics
    # is served or scraped (a relay without --metrics-port never loads them).
    from prometheus_client import CollectorRegistry

    from crosscast.relay import metrics

log = logging.getLogger("crosscast")

TICK = 1.0  # seconds between housekeeping ticks (probes, expiries)
WATCH = 2.0  # seconds between checks that each interface is still the one we opened
RESTART_DELAY = 1.0  # seconds before a crashed task is started again


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when asked for or (auto) installed; None is asyncio's default loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise StartupError("--event-loop uvloop: uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


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
        notifier: sdnotify.Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.host = host
        self.clock = clock
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
            relay_id=secrets.randbits(64) if relay_id is None else relay_id,
            mesh_port=settings.mesh_port,
            mesh_format=settings.mesh_format,
            codec=CrosscastCodec(settings.mesh_secret),
        )
        self.own = set(host.own_addresses())
        first = interfaces[settings.interfaces[0]] if settings.interfaces else None
        self_address = _ip(first.address) if first and first.address is not None else None
        # A resolver (and dnspython, 5 MB of RSS) only when a peer name needs one.
        resolver = (
            host.resolver() if needs_dns(settings.peer_names) else LazyResolver(host.resolver)
        )
        self.discovery = Discovery(
            settings.peer_names,
            host.own_addresses,
            resolver,
            lambda: self_address,
        )
        try:
            for iface in interfaces.values():
                self.ports[iface.name] = self._open_port(iface)
            if settings.uses_mesh:
                self.mesh = host.open_mesh(settings.mesh_port, settings.rcvbuf)
        except BaseException:
            self.close()
            raise
        self._registry: CollectorRegistry | None = None  # made on the first scrape

    def _open_port(self, iface: Interface) -> CapturePort:
        ports, groups = self.table.capture_needs(iface.name)
        addrs = (
            (LIMITED_BROADCAST,)
            if iface.broadcast is None
            else (LIMITED_BROADCAST, iface.broadcast)
        )
        spec = CaptureSpec(broadcast_ports=ports, broadcast_addrs=addrs, groups=groups)
        return self.host.open_capture(
            iface.name,
            capture_program(spec),
            self.table.groups_on(iface.name),
            self.settings.rcvbuf,
        )

    def close(self) -> None:
        for port in self.ports.values():
            port.close()
        self.ports.clear()
        if self.mesh is not None:
            self.mesh.close()

    # -- per-packet paths (loop.add_reader callbacks) ----------------------------------------

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
            peers = self.discovery.peers
            for datagram in out.datagrams:
                self.mesh.send(datagram, peers)

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
            # uvloop (libuv) stops polling a descriptor that reported POLLERR: arm it again.
            loop = asyncio.get_running_loop()
            loop.remove_reader(port.sock.fileno())
            loop.add_reader(port.sock.fileno(), self.on_port_readable, port)
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
            await asyncio.sleep(self.settings.discovery_interval)
            change = await self.discovery.refresh()
            if change.added or change.removed:
                self.own = set(self.host.own_addresses())

    async def _watch(self) -> None:
        """Re-open the capture of an interface that was deleted and created again (a new
        ifindex); a link that only went down and up keeps its socket (see on_port_readable)."""
        while True:
            await asyncio.sleep(WATCH)
            for name in self.settings.interfaces:
                port = self.ports.get(name)
                index = self.host.interface_index(name)
                if port is not None and index == port.index:
                    continue
                if port is not None:
                    self._close_port(port)
                    log.warning("interface %s went away; waiting for it to come back", name)
                if index is not None:
                    self._reopen(name)

    def _close_port(self, port: CapturePort) -> None:
        asyncio.get_running_loop().remove_reader(port.sock.fileno())
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
        asyncio.get_running_loop().add_reader(port.sock.fileno(), self.on_port_readable, port)
        self.down.discard(f"capture {name}")
        log.info("interface %s is back; capturing again", name)

    async def _serve_metrics(self) -> None:
        port = self.settings.metrics_port
        assert port is not None
        from crosscast.relay import metrics

        await metrics.serve(self.settings.metrics_address, port, self.metrics_text, self.health)

    def health(self) -> tuple[bool, str]:
        if self.down:
            return False, "not running: " + ", ".join(sorted(self.down))
        return True, "ok"

    def snapshot(self) -> metrics.Snapshot:
        """What /metrics exports, copied from the counters only when it is scraped."""
        from crosscast.relay import metrics

        counters: Counter[tuple[str, ...]] = Counter(self.counters)
        counters.update(self.relay.counters)
        if self.decoder is not None:
            counters.update(self.decoder.counts)
        if self.mesh is not None:
            counters.update(self.mesh.counters)
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
        for port in self.ports.values():
            loop.add_reader(port.sock.fileno(), self.on_port_readable, port)
        if self.mesh is not None:
            loop.add_reader(self.mesh.sock.fileno(), self.on_mesh_readable)
            await self.discovery.refresh()
        ports = ", ".join(
            f"{p.name} ({_ip(self.relay.interfaces[p.name].address)})" for p in self.ports.values()
        )
        peers = " ".join(sorted(self.discovery.peers)) or "none yet"
        log.info(
            READY + ": relay %016x on %s; mesh %s; peers: %s; %s loop",
            self.relay.relay_id,
            ports,
            f"{self.settings.mesh_format} on port {self.mesh.port}" if self.mesh else "off",
            peers,
            type(loop).__module__.split(".")[0],
        )
        self.notifier.ready(status=f"relaying on {ports}")
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
            log.info("stopping")
            self.notifier.stopping()
            for task in tasks:
                task.cancel()
        for port in self.ports.values():
            loop.remove_reader(port.sock.fileno())
        if self.mesh is not None:
            loop.remove_reader(self.mesh.sock.fileno())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


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
    try:
        loop_factory = _loop_factory(settings.event_loop)
        runtime = Runtime(settings, host, notifier=sdnotify.Notifier.from_environ(environ))
    except StartupError as e:
        print(f"crosscast relay: {e}", file=sys.stderr)
        return 2
    for line in config.describe(settings):
        log.info("setting %s", line)
    for line in format_rule_table(settings.rules).splitlines():
        log.info("rule %s", line)
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(runtime.serve())
    except KeyboardInterrupt:
        pass  # a second Ctrl-C during shutdown
    finally:
        with contextlib.suppress(OSError):
            runtime.close()
    return 0
