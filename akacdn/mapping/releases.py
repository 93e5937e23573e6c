"""A center's shell around `rollout` (zoned releases): bundles submitted by operators,
the release in progress driven from the heartbeats, traffic reports and rolls it hears,
its order in the leader's `Announce`, the history.

Kept in the state directory (`releases/`): the bundles (served to the machines over the
reliable transport as documents `bundle-<id>`, so relays cache them), the release in
progress (`current.json`, after every change), and the history (`history.jsonl`: one
line per finished release, with its phase timeline and abort reason).

Only the leader runs releases. It carries the release in its status to the other
centers, which keep it (and fetch its bundles from the leader), so a new leader carries
on with the release where the old one left it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection
from typing import Any

import msgspec

from ..messaging.transport import Documents, Fetcher
from ..recovery.bundle import BundleError, bundle_id, open_bundle, validate
from ..recovery.follow import BundleFollower
from ..runtime import Runtime, atomic_write, read_file
from .messages import Heartbeat, Report
from .rollout import Order, Release, Rollout, Settings, Target, plan

_release_dec = msgspec.json.Decoder(Release)
_release_mp = msgspec.msgpack.Decoder(Release)


def settings_of(rt: Runtime) -> Settings:
    r = rt.net.release
    return Settings(time_scale=r.time_scale, min_requests=r.min_requests, max_error_rate_gap=r.max_error_rate_gap,
                    apply_timeout=r.apply_timeout, data_wait=r.data_wait)  # fmt: skip


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 10)}"


class Releases:
    def __init__(self, rt: Runtime, docs: Documents) -> None:
        self.rt, self.docs = rt, docs
        self.dir = rt.state_dir / "releases"
        (self.dir / "bundles").mkdir(parents=True, exist_ok=True)
        for path in (self.dir / "bundles").glob("*.bundle"):
            data = path.read_bytes()
            self.docs.put(f"bundle-{bundle_id(data)}", (1,), data)
        self.rollout: Rollout | None = None
        raw = read_file(self.dir / "current.json")
        if raw:
            try:
                self.rollout = Rollout(_release_dec.decode(raw), settings_of(rt))
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
                self.rt.record("release_state_unreadable", path=str(self.dir / "current.json"))
        self._fetch = asyncio.Event()
        self._from = ""  # the leader whose bundles we lack
        # the centers run the world's configuration too (customers: serials for quarantines,
        # status), like every machine: the bundle released to the world, kept as last known good
        self.follower = BundleFollower(rt)
        self.follower.load_last_known_good()
        self.submitted = rt.counter("akacdn_releases", "Releases submitted, by outcome", ("outcome",))
        self.phase_gauge = rt.gauge("akacdn_release_phase", "Phase of the release in progress (1-3; 0: none)")

    # submitting ---------------------------------------------------------------------------
    def submit(self, data: bytes, live: Collection[str]) -> tuple[int, dict[str, Any]]:
        """An operator's signed bundle: (HTTP status, answer). Refused before phase one when
        its signature, type or configuration is bad, or while another release runs."""
        try:
            bid, b = open_bundle(self.rt.net.release_signers, data)
            validate(self.rt.net, b)
        except BundleError as e:
            self.submitted.labels("refused").inc()
            self.rt.record("release_refused", reason=e.reason)
            return 400, {"error": f"bundle refused: {e.reason}"}
        current = self.rollout.release if self.rollout else None
        if current is not None and current.state == "running":
            return 409, {"error": f"release {current.bundle} is in progress (phase {current.phase + 1}): wait or abort"}
        previous = current.bundle if current is not None and current.state == "done" else (
            current.previous if current is not None else "")  # fmt: skip
        if current is not None and bid == current.bundle and current.state == "done":
            return 409, {"error": f"bundle {bid} is already released to the world"}
        # the machines up now are judged (one that is down cannot apply it; it takes the bundle
        # of the world order when it is back)
        targets = [Target(m.id, m.role, m.region) for m in self.rt.net.machines
                   if m.role in ("edge", "llns", "tlns") and m.id in live]  # fmt: skip
        try:
            release = plan(bid, previous, b.type, b.version, targets, live, time.time(), settings_of(self.rt))  # type: ignore[arg-type]
        except ValueError as e:
            return 400, {"error": f"cannot plan the release: {e}"}
        atomic_write(self.dir / "bundles" / f"{bid}.bundle", data)
        self.docs.put(f"bundle-{bid}", (1,), data)
        self.rollout = Rollout(release, settings_of(self.rt))
        self._events(self.rollout.start(time.time()))
        self.submitted.labels("accepted").inc()
        self.rt.record("release_submitted", bundle=bid, type=b.type, version=b.version, signer=b.signer,
                       phases=[p.machines for p in release.phases[:2]])  # fmt: skip
        return 200, {"id": bid, "type": b.type, "version": b.version, **self.doc()}

    # what the leader hears -----------------------------------------------------------------
    def heard(self, hb: Heartbeat) -> None:
        r = self.rollout
        if r is None or r.release.state != "running":
            return
        now = time.time()
        r.running(hb.machine, hb.bundle, now)
        if hb.bundle_refused.startswith(r.release.bundle + ":"):
            r.refused(hb.machine, hb.bundle_refused.split(":", 1)[1].strip(), now)

    def report(self, report: Report) -> None:
        if self.rollout is not None and self.rollout.release.state == "running":
            self.rollout.reported(report.machine, sum(s.requests for s in report.serials),
                                  sum(s.errors for s in report.serials))  # fmt: skip

    def rolled(self, machine: str) -> None:
        if self.rollout is not None and self.rollout.release.state == "running":
            self.rollout.rolled(machine, time.time())

    def tick(self, frozen: bool) -> None:
        """While leading: judge the phase (frozen in the in-place mode); persist."""
        r = self.rollout
        if r is None:
            return
        if r.release.state == "running":
            self._events(r.tick(time.time(), frozen))
        self.follow_world()
        self.phase_gauge.set(r.release.phase + 1 if r.release.state == "running" else 0)

    def _events(self, events: list[Any]) -> None:
        assert self.rollout is not None
        for e in events:
            self.rt.record(f"release_{e.kind}", bundle=self.rollout.release.bundle, detail=e.detail)
            if e.kind == "aborted":
                self.rt.log.error("alarm", reason=f"release {self.rollout.release.bundle} aborted: {e.detail}")
        if events:
            rel = self.rollout.release
            atomic_write(self.dir / "current.json", msgspec.json.encode(rel))
            if rel.state in ("done", "aborted"):
                line = {"bundle": rel.bundle, "type": rel.type, "version": rel.version, "state": rel.state,
                        "reason": rel.reason, "submitted_at": rel.submitted_at, "ended_at": rel.ended_at,
                        "timeline": self.rollout.timeline(_clock)}  # fmt: skip
                with open(self.dir / "history.jsonl", "a") as f:
                    f.write(json.dumps(line) + "\n")

    # a hot standby of the release ---------------------------------------------------------
    def status_extra(self) -> dict[str, Any]:
        return {"release": msgspec.msgpack.encode(self.rollout.release)} if self.rollout is not None else {}

    def adopt(self, data: bytes, leader: str) -> None:
        """Following: keep the leader's release (and get its bundles), to carry it on if we lead."""
        if not data:
            return
        try:
            rel = _release_mp.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            return
        mine = self.rollout.release if self.rollout is not None else None
        if mine is not None and msgspec.structs.asdict(mine) == msgspec.structs.asdict(rel):
            return
        self.rollout = Rollout(rel, settings_of(self.rt))
        atomic_write(self.dir / "current.json", msgspec.json.encode(rel))
        self.follow_world()
        if self.missing():
            self._from = leader
            self._fetch.set()

    def missing(self) -> list[str]:
        rel = self.rollout.release if self.rollout is not None else None
        wanted = [rel.bundle, rel.previous] if rel is not None else []
        return [b for b in wanted if b and self.docs.get(f"bundle-{b}") is None]

    async def run(self) -> None:
        """Until cancelled: fetch the bundles of an adopted release from its leader."""
        fetcher = Fetcher(self.rt)
        try:
            while True:
                await self._fetch.wait()
                for bid in self.missing():
                    data = await fetcher.map(self._from, f"bundle-{bid}")
                    if data is not None and bundle_id(data) == bid:
                        atomic_write(self.dir / "bundles" / f"{bid}.bundle", data)
                        self.docs.put(f"bundle-{bid}", (1,), data)
                if self.missing():
                    await asyncio.sleep(1.0)
                else:
                    self._fetch.clear()
                    self.follow_world()
        finally:
            await fetcher.close()

    def next_deadline(self) -> float | None:
        return self.rollout.next_deadline() if self.rollout is not None else None

    def follow_world(self) -> None:
        """Run what the world runs: the released bundle once done, else the one before."""
        if self.rollout is None:
            return
        rel = self.rollout.release
        world = rel.bundle if rel.state == "done" else rel.previous
        if world == self.follower.running or world in self.follower.refused:
            return
        if not world:
            self.follower.revert()
            return
        doc = self.docs.get(f"bundle-{world}")
        if doc is not None:
            self.follower.want = world
            self.follower.take(doc[1], persist=True)

    def order(self) -> bytes:
        """The order every machine follows (empty: no release yet)."""
        return msgspec.msgpack.encode(self.rollout.order()) if self.rollout is not None else b""

    def doc(self) -> dict[str, Any]:
        r = self.rollout
        if r is None:
            return {"release": None}
        rel = r.release
        order: Order = r.order()
        return {
            "release": {
                "bundle": rel.bundle,
                "previous": rel.previous,
                "type": rel.type,
                "version": rel.version,
                "state": rel.state,
                "reason": rel.reason,
                "phase": rel.phases[rel.phase].name,
                "phases": [msgspec.to_builtins(p) for p in rel.phases],
                "timeline": r.timeline(_clock),
                "running": {m: b for m, b in sorted(rel.running.items())},
                "zone": list(order.zone) if not order.world else "world",
            }
        }

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        raw = read_file(self.dir / "history.jsonl") or b""
        out = []
        for line in raw.decode(errors="replace").splitlines()[-limit:]:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out
