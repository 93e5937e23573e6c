"""A machine follows the leader's release order (asyncio shell).

The leader's `Announce` carries the order (`mapping.rollout.Order`): which bundle this
machine runs. When that changes, the machine fetches the bundle over the reliable
transport (relays' caches first, then the leader), checks its signature and that its
configuration is acceptable here, applies it (every part takes the new network, as on a
reload), and keeps it as last known good (`release.bundle` in the state directory), so
it runs it again after a restart without any center. An empty bundle id means the
machine's own configuration files. What it runs goes out in every heartbeat (`bundle`);
a bundle it refuses is reported there too (`bundle_refused`), and the rollout aborts.
"""

from __future__ import annotations

import asyncio

import msgspec

from ..config import ConfigError, Network, load_network
from ..mapping.rollout import Order
from ..messaging.transport import Fetcher
from ..runtime import Runtime, atomic_write, read_file, woken
from .bundle import Bundle, BundleError, bundle_id, open_bundle, validate

_order = msgspec.msgpack.Decoder(Order)


class BundleFollower:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.path = rt.state_dir / "release.bundle"
        self.fetcher = Fetcher(rt)
        self.running = ""  # bundle id ("": the config files)
        self.bundle: Bundle | None = None
        self.refused: dict[str, str] = {}  # bundle id -> why
        self.want = ""
        self.center = ""
        self._kick = asyncio.Event()
        self.applied = rt.counter("akacdn_bundles_applied", "Release bundles applied", ("type",))
        self.refusals = rt.counter("akacdn_bundles_refused", "Release bundles refused", ("reason",))
        rt.overlay = self.overlay

    def overlay(self, net: Network) -> Network:
        """The running bundle over a (re)loaded config file."""
        if self.bundle is None:
            return net
        try:
            return validate(net, self.bundle)
        except BundleError as e:
            raise ConfigError("release bundle " + self.running, "$", e.reason) from None

    def follow_disk(self) -> None:
        """A worker process: run whatever bundle the parent keeps on disk (read again at
        each reload the parent orders), never fetching one itself."""

        def overlay(net: Network) -> Network:
            self.bundle = None
            data = read_file(self.path)
            if data:
                try:
                    self.running, self.bundle = open_bundle(self.rt.net.release_signers, data)
                except BundleError:
                    self.bundle = None
            return self.overlay(net)

        self.rt.overlay = overlay
        if read_file(self.path):
            self.rt.reload()

    def load_last_known_good(self) -> None:
        """At start: run the bundle kept from the last run (checked again)."""
        data = read_file(self.path)
        if data:
            self.take(data, persist=False)

    def on_order(self, body: bytes, center: str) -> None:
        try:
            order = _order.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            self.refusals.labels("bad_order").inc()
            return
        want = order.bundle_for(self.rt.machine.id)
        if want != self.want or (want != self.running and want not in self.refused):
            self.want, self.center = want, center
            self._kick.set()

    def take(self, data: bytes, persist: bool) -> bool:
        """Check and apply a signed bundle (kept as last known good when `persist`)."""
        try:
            bid, b = open_bundle(self.rt.net.release_signers, data)
            base = load_network(self.rt.net.path)
            net = validate(base, b)
        except (BundleError, ConfigError) as e:
            reason = e.reason if isinstance(e, BundleError) else str(e)
            self.refusals.labels("invalid").inc()
            self.refused[self.want or "disk"] = reason[:300]
            if self.rt.recovery is not None and self.want:
                self.rt.recovery.bundle_refused = f"{self.want}: {reason[:200]}"
            self.rt.record("bundle_refused", bundle=self.want, reason=reason)
            return False
        if persist:
            atomic_write(self.path, data)
        self.bundle, self.running = b, bid
        self.rt.apply(net)
        self.applied.labels(b.type).inc()
        self._report()
        self.rt.record("bundle_applied", bundle=bid, type=b.type, version=b.version)
        return True

    def revert(self) -> None:
        """Back to the configuration files (the release was rolled back to them)."""
        if self.bundle is None:
            return
        try:
            net = load_network(self.rt.net.path)
        except ConfigError as e:
            self.rt.record("bundle_revert_refused", reason=str(e))
            return
        self.path.unlink(missing_ok=True)
        self.bundle, self.running = None, ""
        self.rt.apply(net)
        self._report()
        self.rt.record("bundle_applied", bundle="", type="files")

    def _report(self) -> None:
        if self.rt.recovery is not None:
            self.rt.recovery.bundle = self.running

    async def run(self) -> None:
        """Until cancelled: apply what the order says, retrying fetches."""
        self._report()
        try:
            while True:
                await woken(self._kick, 5.0)
                self._kick.clear()
                want = self.want
                if want == self.running or want in self.refused:
                    continue
                if not want:
                    self.revert()
                    continue
                data = await self.fetcher.map(self.center, f"bundle-{want}")
                if data is None:
                    self.refusals.labels("unreachable").inc()
                    self._kick.set()
                    await asyncio.sleep(1.0)
                    continue
                if bundle_id(data) != want:
                    self.refusals.labels("wrong_bundle").inc()
                    continue
                self.take(data, persist=True)
        finally:
            await self.fetcher.close()
