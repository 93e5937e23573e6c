"""What every daemon shares: the loop, signals, structured logs, state directory,
last-known-good files, sd_notify, and the management server (/metrics, /healthz,
/readyz, /events).

A daemon is an `async def main(rt: Runtime)` that owns its tasks in a TaskGroup.
`run(...)` runs it on the chosen loop; SIGTERM/SIGINT cancel it, which cancels every
task it owns; a crash in any task ends the process non-zero so systemd restarts it
from the last known good state (paper: "fail cleanly and restart").
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from .config import ConfigError, Machine, Network, load_network
from .sockets import ListenError

if TYPE_CHECKING:  # aiohttp loads off the event loop when the management server starts,
    from aiohttp import web  # so a restarted daemon serves before it has loaded (see serve_management)

_json = msgspec.json.Encoder()


class Log:
    """One JSON object per line on stdout, naming component, region and machine."""

    def __init__(self, component: str, machine: str = "", region: str = "", out: Any = None) -> None:
        self._base = {"component": component, "machine": machine, "region": region}
        self._out = out or sys.stdout
        self._last: dict[str, float] = {}
        self.suppressed = 0

    def event(self, level: str, event: str, **fields: Any) -> None:
        rec = {"ts": round(time.time(), 3), "level": level, "event": event, **self._base, **fields}
        self._out.write(_json.encode(rec).decode() + "\n")
        self._out.flush()

    def info(self, event: str, **fields: Any) -> None:
        self.event("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.event("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.event("error", event, **fields)

    def limited(self, event: str, every: float = 1.0, **fields: Any) -> None:
        """A warning at most once per `every` seconds per event (per-packet errors)."""
        now = time.monotonic()
        if now - self._last.get(event, -1e9) < every:
            self.suppressed += 1
            return
        self._last[event] = now
        self.warning(event, suppressed=self.suppressed, **fields)
        self.suppressed = 0


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file so that readers see either the old or the new content, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


async def woken(event: asyncio.Event, timeout: float) -> bool:
    """Wait at most `timeout` seconds for `event` (the shells' "sleep until the next
    deadline, or until something changed"); True when it was set."""
    if timeout <= 0:
        return event.is_set()
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


_aiohttp_lock = threading.Lock()


def _import_aiohttp() -> Any:
    with _aiohttp_lock:  # one importer at a time: two threads importing it at once see it half made
        return importlib.import_module("aiohttp.web")


async def load_aiohttp() -> Any:
    """`aiohttp.web`, imported off the event loop the first time (90 ms here), so a
    restarted daemon serves from its sockets meanwhile."""
    web = sys.modules.get("aiohttp.web")
    return web if web is not None else await asyncio.to_thread(_import_aiohttp)


def sd_notify(state: str) -> bool:
    """Send one sd_notify datagram (READY=1, STATUS=..., WATCHDOG=1); False if not under systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.sendto(state.encode(), addr)
        except OSError:
            return False
    return True


class Runtime:
    """Per-daemon context: config, identity, logs, metrics, readiness and events."""

    def __init__(self, net: Network, machine: Machine, component: str) -> None:
        self.net = net
        self.machine = machine
        self.component = component
        self.log = Log(component, machine.id, machine.region)
        self.registry = CollectorRegistry()
        self.before_scrape: list[Callable[[], None]] = []
        self.exposed: Any = self.registry  # what /metrics shows: a parent adds its workers' in
        # the machine's own fixed address: its service address may move to a buddy (takeover)
        self.own_address = machine.host_address or machine.address
        self.state_dir = net.state_path(machine.id)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._not_ready: dict[str, str] = {}
        self._announced = False
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)
        self._made: dict[str, Counter | Gauge] = {}
        self.up = Gauge("akacdn_up", "1 while the daemon runs", ["component"], registry=self.registry)
        self.up.labels(component).set(1)
        self._reloaders: list[Callable[[Network], None]] = []
        # what a release bundle changes over the config file (None: the file as it is); a
        # ConfigError from it refuses a reload like a bad file
        self.overlay: Callable[[Network], Network] | None = None
        # recovery-oriented operation (`akacdn.recovery.roll.Recovery`, set by the daemon's
        # start): rolls, faults, the in-place mode; None in tools and tests that build a bare one
        self.recovery: Any = None
        # messages for the centers from before the messaging client was up (the last run's
        # crash records): the first client that starts publishes them
        self.publish_at_start: list[tuple[str, bytes]] = []
        self.reloads = self.counter("akacdn_config_reloads", "SIGHUP config reloads", ("result",))

    # configuration reload ----------------------------------------------------------
    def on_reload(self, apply: Callable[[Network], None]) -> None:
        """Register a part that takes a newly loaded config."""
        self._reloaders.append(apply)

    def reload(self) -> bool:
        """Reload the config (SIGHUP): all or nothing; a bad file leaves the old one in force.
        The release bundle this machine runs (`overlay`) is applied over the file again."""
        try:
            net = load_network(self.net.path)
            if self.overlay is not None:
                net = self.overlay(net)
            machine = net.machine(self.machine.id)
        except ConfigError as e:
            self.reloads.labels("refused").inc()
            self.record("config_refused", file=e.file, key=e.key, reason=e.reason)
            return False
        except KeyError:
            self.reloads.labels("refused").inc()
            self.record("config_refused", reason=f"machine {self.machine.id} is not in the new config")
            return False
        if machine != self.machine or net.ports != self.net.ports or net.state_dir != self.net.state_dir:
            # addresses, ports and state move only with a restart; keep serving as we are
            self.reloads.labels("refused").inc()
            self.record("config_refused", reason="this machine's address, role, ports or state dir changed: restart")
            return False
        self.apply(net)
        self.reloads.labels("applied").inc()
        self.record("config_reloaded", customers=len(net.customers), machines=len(net.machines))
        return True

    def apply(self, net: Network) -> None:
        """Run with `net` from now on (a reload, a release bundle): every part takes it."""
        self.net = net
        for apply in self._reloaders:
            apply(net)

    # readiness -------------------------------------------------------------------
    def not_ready(self, part: str, reason: str) -> None:
        self._not_ready[part] = reason

    def ready(self, part: str) -> None:
        """Mark a part ready; the first time no part is waiting, tell systemd READY=1."""
        self._not_ready.pop(part, None)
        if not self._not_ready and not self._announced:
            self._announced = True
            self.log.info("ready")
            sd_notify("READY=1\nSTATUS=serving")

    def forget(self, part: str) -> None:
        """Drop a waiting part without announcing readiness (the long-sleep's, when the
        daemon proper starts and registers its own parts)."""
        self._not_ready.pop(part, None)

    @property
    def is_ready(self) -> bool:
        return not self._not_ready

    def record(self, event: str, **fields: Any) -> None:
        """A state change worth an operator's attention: logged and kept for /events."""
        self._events.append({"ts": round(time.time(), 3), "event": event, **fields})
        self.log.info(event, **fields)

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        """A counter of this daemon's registry; the same one to every part that asks for it."""
        got = self._made.get(name)
        if got is None:
            got = self._made[name] = Counter(name, doc, list(labels), registry=self.registry)
        return got  # type: ignore[return-value]

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        got = self._made.get(name)
        if got is None:
            got = self._made[name] = Gauge(name, doc, list(labels), registry=self.registry)
        return got  # type: ignore[return-value]

    # management server -----------------------------------------------------------
    async def _metrics(self, _: web.Request) -> web.Response:
        from aiohttp import web

        for flush in self.before_scrape:  # counts kept outside the registry on hot paths
            flush()
        body = generate_latest(self.exposed)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        from aiohttp import web

        return web.json_response({"alive": True, "machine": self.machine.id})

    async def _readyz(self, _: web.Request) -> web.Response:
        from aiohttp import web

        if self._not_ready:
            return web.json_response({"ready": False, "waiting": self._not_ready}, status=503)
        return web.json_response({"ready": True})

    async def _events_view(self, _: web.Request) -> web.Response:
        from aiohttp import web

        return web.json_response(list(self._events))

    async def serve_management(
        self, extra: Callable[[web.Application], None] | None = None, port: int | None = None
    ) -> None:
        """Serve /metrics, /healthz, /readyz and /events until cancelled (TCP, on the
        machine's own address, `ports.management` unless `port` says otherwise). aiohttp
        is imported in a thread first, so the daemon's other tasks (a nameserver's
        sockets) serve meanwhile: a rolled daemon is back sooner."""
        web = await load_aiohttp()
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/events", self._events_view)
        if extra:
            extra(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.own_address, port or self.net.ports.management, reuse_address=True)
        await site.start()
        try:
            await asyncio.Future()
        finally:
            await runner.cleanup()

    async def watchdog(self) -> None:
        """Send WATCHDOG=1 at half WATCHDOG_USEC while the daemon is ready."""
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        if not usec:
            return
        while True:
            await asyncio.sleep(usec / 2e6)
            if self.is_ready:
                sd_notify("WATCHDOG=1")


def run(
    main: Callable[[], Awaitable[None]],
    *,
    fast_loop: bool = True,
    reload: Callable[[], object] | None = None,
    log: Log | None = None,
) -> int:
    """Run a daemon's main on uvloop (or the stock loop); SIGTERM/SIGINT end it cleanly,
    SIGHUP calls `reload`. A fatal error goes to `log` (the daemon's: it names the machine)."""
    fatal = log or _fatal
    factory = None
    if fast_loop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        loop = runner.get_loop()
        task: asyncio.Task[None] = loop.create_task(main())  # type: ignore[arg-type]
        stopping = []

        def stop() -> None:
            stopping.append(True)
            task.cancel()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        if reload is not None:
            loop.add_signal_handler(signal.SIGHUP, reload)
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            if not stopping:
                raise
        except Exception as e:  # a crashed part: say so in one line, then fail for a restart
            if _only(e, ListenError):  # a service address we cannot take: say which, no traceback
                fatal.error("cannot_listen", error=_describe(e))
                return 1
            fatal.error("crashed", error=_describe(e))
            raise
    return 0


_fatal = Log("runtime")


def _only(e: BaseException, kind: type[BaseException]) -> bool:
    """Whether `e` is `kind`, or a group of nothing else."""
    if isinstance(e, BaseExceptionGroup):
        return all(_only(x, kind) for x in e.exceptions)
    return isinstance(e, kind)


def _describe(e: BaseException) -> str:
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(_describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"
