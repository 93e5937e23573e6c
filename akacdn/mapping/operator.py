"""The operators' HTTP API of a mapping center (on its management port).

    GET  /v1/status             the network as this center sees it: the leader, its term,
                                every center's connectivity, every machine (live, down,
                                unhealthy, suspended, damped, with the reason), regions,
                                the map version and age at every nameserver, maps held
                                back by the guard, the suspensions. Forwarded to the
                                leader (`?local=1`: this center's own view).
    POST /v1/operator/suspend   {"kind": "machine"|"region", "id": ..., "reason": ...}
    POST /v1/operator/resume    {"kind": ..., "id": ...}
    POST /v1/operator/quarantine {"action": "add"|"extend"|"lift", "serial": N, "seconds": S}
    POST /v1/operator/release   a signed release bundle (`recovery.bundle`, msgpack)
    GET  /v1/release            the release in progress and the history

The two POSTs need `Authorization: Bearer <keys.operator_token>` and are carried out by
the leader (a follower forwards them; with no leader: 503). `akacdn status`, `akacdn
suspend`, `akacdn resume` (`akacdn/ops`) call these on any center.
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import aiohttp
import msgspec
from aiohttp import web

if TYPE_CHECKING:
    from .center import Center


class Order(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["machine", "region"]
    id: str
    reason: str = ""


class QuarantineOrder(msgspec.Struct, forbid_unknown_fields=True):
    action: Literal["add", "extend", "lift"]
    serial: int
    seconds: float = 0.0  # add, extend: for how long (0: [recovery] quarantine_hold)
    reason: str = ""


def _authorized(center: Center, req: web.Request) -> bool:
    token = center.rt.net.operator_token
    given = req.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


T = TypeVar("T")


async def _order(center: Center, req: web.Request, kind: type[T]) -> tuple[bytes, T] | web.Response:
    """An operator's order: (body, decoded), or the refusal to answer (403, 400)."""
    if not _authorized(center, req):
        return web.json_response({"error": "a valid operator token is required (keys.operator_token)"}, status=403)
    body = await req.read()
    try:
        return body, msgspec.json.decode(body, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as e:
        return web.json_response({"error": str(e)}, status=400)


async def _forward(center: Center, req: web.Request, body: bytes | None) -> web.Response:
    """The same request to the leader; 503 when there is none (or it does not answer)."""
    leader = center.leadership.core.leader
    if not leader or leader == center.rt.machine.id:
        return web.json_response({"error": "no mapping center leads now (the network has no leader)"}, status=503)
    target = center.rt.net.machine(leader)
    url = f"http://{target.address}:{center.rt.net.ports.management}{req.path_qs}"
    headers = {k: v for k, v in req.headers.items() if k in ("Authorization", "Content-Type")}
    try:
        async with aiohttp.ClientSession() as s:
            timeout = aiohttp.ClientTimeout(total=center.rt.net.messaging.http_timeout)
            async with s.request(req.method, url, data=body, headers=headers, timeout=timeout) as r:
                return web.Response(status=r.status, body=await r.read(), content_type="application/json")
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        return web.json_response({"error": f"the leader {leader} does not answer: {e}"}, status=503)


def status_doc(center: Center) -> dict[str, Any]:
    """The network as this center sees it."""
    now, wall = time.monotonic(), time.time()
    net, core = center.rt.net, center.leadership.core
    me = center.rt.machine.id
    centers = [{"id": me, "alive": True, "score": round(core.score, 3), "leads": core.leading, "term": core.term}]
    for pid, (alive, st) in sorted(core.peers(now).items()):
        leads = bool(st and st.leader == pid)
        centers.append({"id": pid, "alive": alive, "score": round(st.score, 3) if st else None,
                        "leads": leads, "term": st.leader_term if st and leads else 0})  # fmt: skip
    heard = center.liveness.heard_within(now, 1e9)
    machines, nameservers = [], []
    for m in net.machines:
        if m.role not in ("edge", "llns", "tlns"):
            continue
        hb = heard.get(m.id)
        last = center.liveness.last_heard(m.id)
        if m.id in center.out:
            state, reason = center.out[m.id].split(":", 1)[0], center.out[m.id]
        elif m.id in center.live:
            state, reason = "live", ""
        elif hb is not None and last is not None and now - last <= net.timing.dead_after and hb.asleep_until > wall:
            state, reason = "asleep", hb.detail
        elif hb is not None and last is not None and now - last <= net.timing.dead_after:
            state, reason = "unhealthy", hb.detail or "says it is not healthy"
        else:
            state, reason = "down", "not heard" if last is None else f"not heard for {now - last:.1f}s"
        if m.id in center.out and m.id not in center.live:
            reason += " (and down)"
        machines.append({"id": m.id, "role": m.role, "region": m.region, "state": state, "reason": reason,
                         "heard_ago": round(now - last, 1) if last is not None else None,
                         "load": round(hb.load, 1) if hb else None,
                         "bundle": hb.bundle if hb else None, "rolls": hb.rolls if hb else None})  # fmt: skip
        if m.role in ("llns", "tlns") and hb is not None:
            maps = {k: {"version": [t, s], "age": round(wall - made, 1)} for k, (t, s, made) in hb.maps.items()}
            nameservers.append({"id": m.id, "maps": maps})
    live_edges = {r.id: 0 for r in net.regions}
    for m in net.by_role("edge"):
        if m.id in center.live and m.id not in center.out:
            live_edges[m.region] += 1
    suspended_regions = {s.id for s in center.suspensions.listed() if s.kind == "region"}
    regions = [{"id": r, "live_edges": n, "serving": n >= 2, "suspended": r in suspended_regions}
               for r, n in live_edges.items()]  # fmt: skip
    published = {k: list(m.version) for k, m in center.book.maps.items()} if center.book else {}
    return {
        "center": me,
        "leader": core.leader or None,
        "term": core.leader_term,
        "centers": centers,
        "published": published,
        "held": dict(center.held),
        "regions": regions,
        "machines": machines,
        "nameservers": nameservers,
        "suspensions": [msgspec.to_builtins(s) for s in center.suspensions.listed()],
        "suspensions_version": list(center.suspensions.version),
        **center.rolls.doc(),
        **center.releases.doc(),
    }


def operator_routes(center: Center, app: web.Application) -> None:
    async def status(req: web.Request) -> web.Response:
        if req.query.get("local") != "1" and not center.leadership.core.leading and center.leadership.core.leader:
            forwarded = await _forward(center, req, None)
            if forwarded.status == 200:
                return forwarded
        return web.json_response(status_doc(center))

    async def mapping(req: web.Request) -> web.Response:
        """Measured mapping: routes, regions' load, the last cycle's moves (`?network=` a
        client network's paths); the leader's, forwarded, unless `?local=1`."""
        if req.query.get("local") != "1" and not center.leadership.core.leading and center.leadership.core.leader:
            forwarded = await _forward(center, req, None)
            if forwarded.status == 200:
                return forwarded
        now = time.monotonic()
        live = center.liveness.live(now, center.rt.net.timing.dead_after)
        doc = center.steering.doc(now, live, center.out, req.query.get("network", ""))
        return web.json_response({"center": center.rt.machine.id, **doc})

    async def order(req: web.Request, suspend: bool) -> web.Response:
        got = await _order(center, req, Order)
        if isinstance(got, web.Response):
            return got
        body, o = got
        net = center.rt.net
        known = {m.id for m in net.machines} if o.kind == "machine" else {r.id for r in net.regions}
        if o.id not in known:
            return web.json_response({"error": f"no {o.kind} {o.id!r} in the network file"}, status=400)
        if suspend and not o.reason.strip():
            return web.json_response({"error": "say why: --reason"}, status=400)
        core = center.leadership.core
        if not core.leading:
            return await _forward(center, req, body)
        changed = center.suspensions.change(core.term, o.kind, o.id, o.reason.strip()[:200], suspend)
        if changed:
            center.rt.record("suspended" if suspend else "resumed", kind=o.kind, id=o.id, reason=o.reason)
            center.wake.set()
            center.leadership.send_status()  # the other centers hold it at once
        listed = [msgspec.to_builtins(s) for s in center.suspensions.listed()]
        return web.json_response({"done": changed, "by": center.rt.machine.id, "term": core.term,
                                  "version": list(center.suspensions.version), "suspensions": listed})  # fmt: skip

    async def quarantine(req: web.Request) -> web.Response:
        got = await _order(center, req, QuarantineOrder)
        if isinstance(got, web.Response):
            return got
        body, o = got
        if not 0 <= o.seconds <= 30 * 86400:
            return web.json_response({"error": "seconds: between 0 and 30 days"}, status=400)
        core = center.leadership.core
        if not core.leading:
            return await _forward(center, req, body)
        watch = center.rolls.core
        refused = watch.order(o.action, o.serial, time.time(), core.term, o.seconds, o.reason.strip()[:200])
        if refused:
            return web.json_response({"error": refused}, status=400)
        center.rt.record("quarantine_order", action=o.action, serial=o.serial, seconds=o.seconds, reason=o.reason)
        center.rolls.decide(None)
        center.wake.set()
        center.leadership.send_status()
        listed = [msgspec.to_builtins(q) for q in watch.listed()]
        return web.json_response({"done": True, "by": center.rt.machine.id, "term": core.term,
                                  "version": list(watch.version), "quarantines": listed})  # fmt: skip

    async def release(req: web.Request) -> web.Response:
        if not _authorized(center, req):
            return web.json_response({"error": "a valid operator token is required (keys.operator_token)"}, status=403)
        body = await req.read()
        core = center.leadership.core
        if not core.leading:
            return await _forward(center, req, body)
        code, answer = center.releases.submit(body, center.live)
        if code == 200:
            center.wake.set()
            center.announce()  # the order goes out now
            center.leadership.send_status()  # and the other centers hold the release at once
        return web.json_response({"by": center.rt.machine.id, "term": core.term, **answer}, status=code)

    async def releases(req: web.Request) -> web.Response:
        core = center.leadership.core
        if req.query.get("local") != "1" and not core.leading and core.leader:
            forwarded = await _forward(center, req, None)
            if forwarded.status == 200:
                return forwarded
        doc = {"center": center.rt.machine.id, **center.releases.doc(), "history": center.releases.history()}
        return web.json_response(doc)

    app.router.add_post("/v1/operator/release", release)
    app.router.add_get("/v1/release", releases)
    app.router.add_post("/v1/operator/quarantine", quarantine)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/v1/mapping", mapping)
    app.router.add_post("/v1/operator/suspend", lambda req: order(req, True))
    app.router.add_post("/v1/operator/resume", lambda req: order(req, False))
