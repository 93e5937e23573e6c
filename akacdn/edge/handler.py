"""The edge's request flow (asyncio shell over the RFC 9111 core in `rfc9111` and
`conditional`): every decision is the core's; this module fetches, stores and formats.

    customer by Host (421 if none) -> ARL? (400/403) -> unsafe method? forward + invalidate
    -> variants of (customer, target) -> select by Vary -> reuse():
         HIT / STALE        serve from the store (conditionals -> 304/412, Range -> 206/416)
         SWR                serve stale now, revalidate in the background
         REVALIDATE         conditional request: 304 freshens, 5xx/unreachable -> stale-if-error
         ONLY_IF_CACHED     504
       none stored          fetch (coalesced), store if storable, answer
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from ..config import Customer
from ..recovery.inject import WRONG_BODY, Injector
from ..runtime import Runtime
from . import arl
from .conditional import (
    Validation,
    byte_range,
    freshen,
    not_modified_headers,
    precondition,
    revalidation_headers,
    validation_outcome,
)
from .customers import CustomerIndex
from .fetch import Fetcher, OriginError, OriginResponse
from .fields import Headers
from .hit import Prepared
from .message import Body, BodyStream, FileBody, Request, Response
from .misslock import Hold, MissLocks
from .report import SerialCounts
from .rfc9111 import (
    Action,
    CacheStatus,
    Policy,
    Reuse,
    age_header,
    forwarded_status,
    fwd_reason,
    invalidates,
    make_entry,
    request_directives,
    reuse,
    select_variant,
    served_status,
    stale_on_error,
    storable,
    variant_key,
    vary_fields,
    vary_matches,
)
from .store import Key, SecondRequest, Variant, with_variant
from .target import normalize_target
from .tiers import TieredStore

SAFE = ("GET", "HEAD")
FRAMING = frozenset({"content-length", "transfer-encoding", "content-range"})


def fits(got: OriginResponse, headers: list[tuple[str, str]]) -> bool:
    """Whether an answer fetched for another request also answers this one (its Vary)."""
    return vary_matches(got.headers, variant_key(got.headers, got.asked_with), headers)


def has_conditional_or_range(headers: list[tuple[str, str]]) -> bool:
    return any(k[:3].lower() == "if-" or k.lower() == "range" for k, _ in headers)


def set_field(resp: Response, name: str, value: str) -> None:
    """Replace a field the flow set already (e.g. Cache-Status once the origin answered)."""
    resp.headers = [(k, value if k == name else v) for k, v in resp.headers]


def request_target(req: Request) -> tuple[str | None, str]:
    """(host, normalised path?query) of a request. An absolute-form target
    (`GET http://h/p`) names the host itself and the Host field is ignored (RFC 9112 3.2.2)."""
    raw = req.target
    if raw[:7].lower() == "http://" or raw[:8].lower() == "https://":
        parts = urlsplit(raw)
        return parts.netloc, normalize_target((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    return req.header("host"), normalize_target(raw)


class Handler:
    def __init__(self, rt: Runtime, store: TieredStore, fetcher: Fetcher, customers: Callable[[], CustomerIndex]):
        self.rt = rt
        self.store = store
        self.fetcher = fetcher
        self.customers = customers
        self.via = fetcher.via
        self.machine = rt.machine.id
        self.policy = Policy(stale_if_error=rt.net.edge.stale_if_error)
        self.requests = rt.counter("akacdn_edge_requests", "Requests by outcome", ("outcome",))
        self.refused = rt.counter("akacdn_edge_refused", "Requests refused", ("reason",))
        self.served = 0
        self.counts = SerialCounts()
        self.second = SecondRequest()
        self._background: set[asyncio.Task[None]] = set()
        self._hit = self.requests.labels("hit")
        self.locks: MissLocks | None = None  # `[edge] workers` > 1: misses meet across processes
        self._holds: dict[Key, Hold] = {}
        self._plain: dict[str, tuple[Customer, Key, str] | None] = {}  # Host + target -> key
        self._plain_of: CustomerIndex | None = None
        # recovery-oriented operation: a fault rolls the daemon (or fails one request in the
        # in-place mode); serials refused here: quarantined elsewhere, or disabled in place
        self.recovery = rt.recovery
        if self.recovery is not None:
            self.recovery.summary = self.summarize
        self.barred: dict[int, str] = {}  # serial -> why (the low-level map's quarantines)
        self.injector: Injector | None = None
        self.configure_faults(rt)

    def configure_faults(self, rt: Runtime) -> None:
        """Fault injection (labs, tests): only when the config enables it is the request
        flow wrapped, so the normal path carries nothing of it."""
        self.injector = Injector.build(rt.net)
        self.handle = self._handle_injected if self.injector is not None else self._handle_request  # type: ignore[method-assign]

    def summarize(self, req: Request) -> tuple[str, int]:
        """What a crash record says of a request: method, host, target; the serial."""
        host, target = request_target(req)
        found = self.customers().lookup(host)
        return f"{req.method} {host}{target} from {req.remote}"[:300], found[0].serial if found else 0

    # -- the plain hit (see `hit`) --------------------------------------------------------
    def _plain_key(self, host: str, target: str) -> tuple[Customer, Key, str] | None:
        """(customer, cache key, serial's host) for a Host and an origin-form target, when
        the plain hit may answer it (not an ARL, not absolute-form), memoised."""
        index = self.customers()
        if index is not self._plain_of:  # a reload: forget what the old config said
            self._plain, self._plain_of = {}, index
        memo = host + "\0" + target
        try:
            return self._plain[memo]
        except KeyError:
            pass
        found = index.lookup(host)
        got = None
        if found is not None and target[:1] == "/" and not (found[1] and arl.is_arl(target)):
            got = (found[0], (found[0].name, normalize_target(target)), host)
        if len(self._plain) > 50_000:
            self._plain.clear()
        self._plain[memo] = got
        return got

    def plain_hit(self, head: bool, host: str, target: str, now: float) -> list[bytes] | None:
        """The answer to a plain GET/HEAD (no conditional, range or cache directives) when a
        fresh stored response that does not vary answers it; else None (the full flow)."""
        plain = self._plain_key(host, target)
        if plain is None:
            return None
        variants = self.store.memory.get(plain[1])
        if variants is None or len(variants) != 1:
            return None
        v = variants[0]
        if v.vary_key != ():
            return None
        p = v.prepared
        if p is None:
            if not isinstance(v.body, bytes):
                return None
            p = v.prepared = Prepared(v.entry, v.body, self.via, self.machine)
        if not p.plain:
            return None
        tail = p.tail(now)
        if tail is None:
            return None
        self.served += 1
        self._hit.inc()
        self.counts.record(plain[0].serial, "HIT", p.entry.status, len(p.body))
        return [p.head, tail] if head else [p.head, tail, p.body]

    async def close(self) -> None:
        """Cancel and await the background revalidations this handler owns."""
        for t in list(self._background):
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # -- formatting -----------------------------------------------------------------------
    def _reply(
        self,
        req: Request,
        status: int,
        headers: Headers,
        body: Body,
        cache_status: CacheStatus | str,
        x_cache: str,
        age: str | None = None,
        full_length: int | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> Response:
        out = [(k, v) for k, v in headers if k.lower() not in FRAMING]  # framing is the server's
        if extra:
            out += extra
        if age is not None:
            out.append(("Age", age))
        cs = cache_status if isinstance(cache_status, str) else cache_status.value()
        out += [("Via", self.via), ("X-Served-By", self.machine), ("X-Cache", x_cache), ("Cache-Status", cs)]
        self.requests.labels(x_cache.lower()).inc()
        if full_length is not None:
            length: int | None = full_length
        else:
            length = body.length if isinstance(body, BodyStream) else len(body)
        return Response(status, out, b"" if req.method == "HEAD" else body, length, x_cache)

    def refusal(self, status: int, text: str) -> Response:
        """The answer to a request the HTTP server refused before the flow saw it."""
        cs = 'akacdn; fwd=bypass; detail="refused"'
        return self._reply(Request("GET", "", [], ""), status, [("Content-Type", "text/plain; charset=utf-8")],
                           text.encode(), cs, "MISS")  # fmt: skip

    def failed(self, e: Exception, req: Request | None = None) -> None:
        """A request the flow failed on (a bug): the daemon rolls (`recovery`); in the
        in-place mode, or without recovery (a bare test handler), it is counted and the
        daemon goes on."""
        self.refused.labels("internal_error").inc()
        if self.recovery is not None:
            self.recovery.failed(e, req)
        self.rt.log.limited("request_failed", error=repr(e))

    def _error(self, req: Request, status: int, text: str, detail: str, reason: str) -> Response:
        self.refused.labels(reason).inc()
        cs = f'akacdn; fwd=bypass; detail="{detail}"'
        return self._reply(req, status, [("Content-Type", "text/plain; charset=utf-8")], text.encode(), cs, "MISS")

    def _from_store(
        self, req: Request, headers: Headers, v: Variant, r: Reuse, x_cache: str, fwd_status: int | None = None
    ) -> Response:
        entry, body, now = v.entry, v.body, time.time()
        cs = served_status(r, fwd_status)
        age = age_header(entry, now)
        if not has_conditional_or_range(headers):
            # the common hit: no conditional, no range to evaluate
            return self._reply(req, entry.status, entry.headers, body, cs, x_cache, age)
        pre = precondition(req.method, headers, entry.status, entry.headers, entry.response_time)
        if pre.status == 304:
            return self._reply(req, 304, not_modified_headers(entry.headers), b"", cs, x_cache, age, 0)
        if pre.status == 412:
            return self._reply(req, 412, [], b"", cs, x_cache, age, 0)
        plan = byte_range(req.method, headers, entry.status, entry.headers, len(body))
        if plan.status == 200:
            return self._reply(req, entry.status, entry.headers, body, cs, x_cache, age)
        part = body.part(plan.start, plan.stop) if isinstance(body, FileBody) else body[plan.start : plan.stop]
        return self._reply(req, plan.status, entry.headers, part, cs, x_cache, age, len(part), plan.headers)

    # -- the flow -------------------------------------------------------------------------
    async def handle(self, req: Request) -> Response:  # replaced per instance by `configure_faults`
        return await self._handle_request(req)

    async def _handle_request(self, req: Request, injected: bool = False) -> Response:
        self.served += 1
        host, target = request_target(req)
        found = self.customers().lookup(host)
        rec = self.recovery
        try:
            if rec is not None:
                rec.serving = req
                if found is not None and (self.barred or rec.disabled):
                    why = self.barred.get(found[0].serial) or rec.disabled.get(found[0].serial)
                    if why is not None:
                        resp = self._unavailable(req, found[0].serial, why)
                        self.counts.record(found[0].serial, resp.x_cache, resp.status, resp.length or 0)
                        return resp
            if injected and found is not None and self.injector is not None:
                if self.injector.at_edge(found[0].serial, target.split("?", 1)[0]) == "wrong":
                    return Response(200, [("Content-Type", "text/plain")], WRONG_BODY, len(WRONG_BODY), "MISS")
            resp = await self._handle(req, found, host, target)
        except Exception as e:  # not clearly addressable: roll, or (in place) fail this one request
            self.failed(e, req)
            text = "akacdn: this request failed; the server recovered in place\n"
            resp = self._error(req, 500, text, "fault", "fault")
        if found is not None:
            self.counts.record(found[0].serial, resp.x_cache, resp.status, resp.length or 0)
        return resp

    async def _handle_injected(self, req: Request) -> Response:
        return await self._handle_request(req, injected=True)

    def _unavailable(self, req: Request, serial: int, why: str) -> Response:
        """503 for a serial this server does not take now (quarantined to other servers, or
        disabled in place): the request never reaches the flow that faults."""
        self.refused.labels("serial_unavailable").inc()
        text = f"akacdn: serial {serial} is not served here now ({why})\n"
        cs = 'akacdn; fwd=bypass; detail="serial-unavailable"'
        return self._reply(req, 503, [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "20")],
                           text.encode(), cs, "MISS")  # fmt: skip

    async def _handle(
        self,
        req: Request,
        found: tuple[Customer, bool] | None,
        host: str | None,
        target: str,
        again: bool = False,
        held: Hold | None = None,
    ) -> Response:
        if found is None:
            text = f"akacdn: no customer is configured for host {(host or '')!r}\n"
            return self._error(req, 421, text, "unknown-host", "unknown_host")
        customer, serial_host = found
        override = None
        if serial_host and arl.is_arl(target):
            try:
                a = arl.parse(target)
            except arl.ARLError as e:
                return self._error(req, 400, f"akacdn: bad ARL: {e}\n", "bad-arl", "bad_arl")
            if a.serial != customer.serial or a.origin_host not in customer.hostnames:
                text = "akacdn: the ARL names another customer or origin\n"
                return self._error(req, 403, text, "arl-not-configured", "arl_not_configured")
            target, override = a.target, float(a.ttl)  # the ARL's TTL overrides the origin's
        key = (customer.name, target)
        headers = req.headers
        client = req.remote
        if req.method not in SAFE:
            return await self._unsafe(req, customer, key, headers, client)
        variants = self.store.variants(key) or []
        if len(variants) == 1 and variants[0].vary_key == ():  # does not vary: nothing to select
            chosen: Variant | None = variants[0]
        else:
            chosen = select_variant(headers, [(v.vary_key, v.entry, v) for v in variants]) if variants else None
        if chosen is None:
            if "only-if-cached" in request_directives(headers):
                return self._reply(req, 504, [], b"", "akacdn; fwd=miss; detail=only-if-cached", "MISS")
            if self.locks is not None and not again:
                return await self._miss_across_workers(req, found, host, target, key)
            fwd = "vary-miss" if variants else "uri-miss"
            return await self._fetch(req, customer, key, headers, client, override, fwd, variants, None, held)
        r = reuse(req.method, headers, chosen.entry, time.time(), self.policy)
        if r.action in (Action.HIT, Action.STALE):
            return self._from_store(req, headers, chosen, r, "HIT" if r.action == Action.HIT else "STALE")
        if r.action == Action.SWR:
            self._revalidate_later(customer, key, headers, client, override, chosen)
            return self._from_store(req, headers, chosen, r, "STALE")
        if r.action == Action.ONLY_IF_CACHED:
            return self._reply(req, 504, [], b"", "akacdn; fwd=stale; detail=only-if-cached", "MISS")
        return await self._fetch(req, customer, key, headers, client, override, fwd_reason(r), variants, (chosen, r))

    async def _miss_across_workers(
        self, req: Request, found: tuple[Customer, bool], host: str | None, target: str, key: Key
    ) -> Response:
        """A miss with `[edge] workers` > 1: the key's first miss in this process takes its
        miss lock (`misslock.Hold`), looks again (on disk, for what another worker stored) and
        fetches if still missing, holding the lock until the object is stored. The others
        here join that fetch while it streams, or wait for the hold to end and look again."""
        assert self.locks is not None
        hold = self._holds.get(key)
        if hold is not None:  # this process already misses the key: never touch its lock
            await asyncio.shield(hold.decided)
            if not hold.joinable:  # nothing to collapse into: wait until it is stored
                await asyncio.shield(hold.released)
            return await self._handle(req, found, host, target, again=True)
        hold = self._holds[key] = Hold(lambda: self._holds.pop(key, None) if self._holds.get(key) is hold else None)
        try:
            await self.locks.acquire(key, hold)
            return await self._handle(req, found, host, target, again=True, held=hold)
        finally:
            if not hold.passed:
                hold.release()
            hold.decide()

    async def _fetch(
        self,
        req: Request,
        customer: Customer,
        key: Key,
        headers: list[tuple[str, str]],
        client: str,
        override: float | None,
        fwd: str,
        variants: list[Variant],
        stale: tuple[Variant, Reuse] | None,
        held: Hold | None = None,
    ) -> Response:
        """Ask the origin (conditionally when a stored variant needs revalidation)."""
        ask = list(headers)
        if stale is not None:
            ask = [(k, v) for k, v in ask if not k.lower().startswith("if-")]
            ask += revalidation_headers(stale[0].entry.headers)
        try:
            got, collapsed = await self.fetcher.fetch(customer, key[1], ask, client)
            if collapsed and not fits(got, ask):  # the shared answer varies on a field we differ in
                fields = vary_fields(got.headers)
                if fields is None:  # Vary: * is never shared
                    got, collapsed = await self.fetcher.fetch_alone(customer, key[1], ask, client), False
                else:  # collapse again with those who share our values of the Vary fields
                    got, collapsed = await self.fetcher.fetch(customer, key[1], ask, client, fields)
            if collapsed and not storable("GET", ask, got.status, got.headers).ok:
                # a response not for a shared cache (private, no-store...) is not shared either
                got, collapsed = await self.fetcher.fetch_alone(customer, key[1], ask, client), False
        except OriginError as e:
            self.rt.log.limited("origin_error", customer=customer.name, error=str(e))
            return self._origin_failed(req, headers, stale, None)
        if stale is not None:
            outcome = validation_outcome(got.status)
            if outcome == Validation.FRESHEN:
                v = stale[0]
                entry = freshen(v.entry, got.headers, got.request_time, got.response_time, customer.default_ttl,
                                override, self.policy)  # fmt: skip
                fresh = Variant(v.vary_key, entry, v.body)
                self._store(key, with_variant(variants, fresh))
                r = Reuse(Action.HIT, "revalidated", 0.0, entry.lifetime)
                resp = self._from_store(req, headers, fresh, r, "REVALIDATED")
                set_field(resp, "Cache-Status", forwarded_status(fwd, 304, None, entry, time.time()).value())
                return resp
            if outcome == Validation.ERROR:
                return self._origin_failed(req, headers, stale, got)
        if got.status == 304:  # the client's own conditional, passed on: nothing to store
            return self._reply(req, 304, got.headers, b"", forwarded_status(fwd, 304), "MISS")
        return await self._store_and_answer(req, customer, key, headers, override, fwd, got, collapsed, held)

    async def _store_and_answer(
        self,
        req: Request,
        customer: Customer,
        key: Key,
        headers: list[tuple[str, str]],
        override: float | None,
        fwd: str,
        got: OriginResponse,
        collapsed: bool,
        held: Hold | None = None,
    ) -> Response:
        """Answer from a fresh origin response, streaming its body as it arrives; the one who
        fetched it (not those collapsed into its request) stores it once it is whole."""
        verdict = storable("GET", headers, got.status, got.headers)
        entry = make_entry(got.status, got.headers, got.request_time, got.response_time, customer.default_ttl,
                           override, self.policy)  # fmt: skip
        if verdict.ok and entry.lifetime <= 0 and not revalidation_headers(entry.headers):
            verdict = verdict._replace(ok=False, reason="no-freshness-no-validator")
        if verdict.ok and not collapsed and customer.cache_on_second_request and not self.second.admit(key):
            verdict = verdict._replace(ok=False, reason="first-request")
        if verdict.ok and not collapsed:
            self._keep_when_whole(key, Variant(variant_key(got.headers, headers), entry, b""), got, held)
            if held is not None:
                held.passed = held.joinable = True  # misses here join the stream until it is whole
                got.body.when_done(lambda: setattr(held, "joinable", False))
        elif not collapsed:
            got.forget()  # nothing to share with later misses
            if held is not None:
                held.passed = True
                got.body.when_done(held.release)
        now = time.time()
        cs = forwarded_status(fwd, got.status, verdict, entry, now, collapsed)
        if not (verdict.ok and 200 <= got.status < 300):
            return self._reply(req, got.status, got.headers, got.body, cs, "MISS")
        if req.method == "GET" and not has_conditional_or_range(headers):
            return self._reply(req, entry.status, entry.headers, got.body, cs, "MISS", age_header(entry, now))
        try:  # conditionals, ranges and HEAD apply to what we keep: wait for all of it
            body = await got.whole()
        except OriginError as e:
            self.rt.log.limited("origin_error", customer=customer.name, error=str(e))
            return self._origin_failed(req, headers, None, None)
        resp = self._from_store(req, headers, Variant(None, entry, body), Reuse(Action.HIT, "miss", 0.0, 0.0), "MISS")
        set_field(resp, "Cache-Status", cs.value())
        return resp

    def _keep_when_whole(self, key: Key, new: Variant, got: OriginResponse, held: Hold | None) -> None:
        """Store a variant once its body has arrived whole (never a broken one); then other
        workers waiting for the key's miss lock find it on disk."""

        async def keep() -> None:
            try:
                new.body = await got.whole()
                variants = with_variant(self.store.variants(key) or [], new)
                if any(isinstance(v.body, FileBody) for v in variants):
                    await self.store.keep_large(key, variants)
                else:
                    self.store.keep(key, variants)
            except OriginError:
                return
            finally:
                if held is not None:
                    held.release()

        self._own(asyncio.get_running_loop().create_task(keep()))

    def _store(self, key: Key, variants: list[Variant]) -> None:
        """Keep variants; one with a large body in a file is copied to disk in the background."""
        if any(isinstance(v.body, FileBody) for v in variants):
            self._own(asyncio.get_running_loop().create_task(self.store.keep_large(key, variants)))
        else:
            self.store.keep(key, variants)

    def _own(self, task: asyncio.Task[None]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _origin_failed(
        self,
        req: Request,
        headers: list[tuple[str, str]],
        stale: tuple[Variant, Reuse] | None,
        got: OriginResponse | None,
    ) -> Response:
        """The origin failed (unreachable or 5xx): stale if allowed, else its error or 502."""
        if stale is not None:
            r = stale_on_error(headers, stale[0].entry, time.time(), self.policy)
            if r is not None:
                return self._from_store(req, headers, stale[0], r, "STALE", got.status if got else None)
        if got is not None:
            return self._reply(req, got.status, got.headers, got.body, forwarded_status("stale", got.status), "MISS")
        cs = 'akacdn; fwd=uri-miss; detail="origin-unreachable"'
        text = b"akacdn: origin unreachable\n"
        return self._reply(req, 502, [("Content-Type", "text/plain; charset=utf-8")], text, cs, "MISS")

    def _revalidate_later(
        self,
        customer: Customer,
        key: Key,
        headers: list[tuple[str, str]],
        client: str,
        override: float | None,
        v: Variant,
    ) -> None:
        """stale-while-revalidate: one background revalidation per key at a time."""
        if any(t.get_name() == repr(key) for t in self._background):
            return

        async def revalidate() -> None:
            ask = [(k, val) for k, val in headers if not k.lower().startswith("if-")] + revalidation_headers(
                v.entry.headers
            )
            try:
                got, _ = await self.fetcher.fetch(customer, key[1], ask, client)
            except OriginError:
                return
            variants = self.store.variants(key) or []
            if validation_outcome(got.status) == Validation.FRESHEN:
                entry = freshen(v.entry, got.headers, got.request_time, got.response_time, customer.default_ttl,
                                override, self.policy)  # fmt: skip
                self._store(key, with_variant(variants, Variant(v.vary_key, entry, v.body)))
            elif got.status < 500 and storable("GET", headers, got.status, got.headers).ok:
                try:
                    body = await got.whole()
                except OriginError:
                    return
                entry = make_entry(got.status, got.headers, got.request_time, got.response_time,
                                   customer.default_ttl, override, self.policy)  # fmt: skip
                self._store(key, with_variant(variants, Variant(variant_key(got.headers, headers), entry, body)))

        self._own(asyncio.get_running_loop().create_task(revalidate(), name=repr(key)))

    async def _unsafe(
        self, req: Request, customer: Customer, key: Key, headers: list[tuple[str, str]], client: str
    ) -> Response:
        """POST/PUT/DELETE/...: forwarded to the origin, then what it changed is invalidated."""
        body = req.body
        try:
            got = await self.fetcher.forward(customer, req.method, key[1], headers, client, body)
        except OriginError:
            cs = 'akacdn; fwd=method; detail="origin-unreachable"'
            return self._reply(req, 502, [], b"akacdn: origin unreachable\n", cs, "MISS")
        host = customer.hostnames[0] if customer.hostnames else (req.header("host") or "")
        for path in invalidates(req.method, got.status, f"http://{host}{key[1]}", got.headers):
            self.store.drop((customer.name, path))
        return self._reply(req, got.status, got.headers, got.body, forwarded_status("method", got.status), "MISS")
