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

import msgspec

from ..config import Customer
from ..recovery.inject import WRONG_BODY, Injector
from ..runtime import Runtime
from . import arl, encoding
from .conditional import (
    Validation,
    as_transformed,
    byte_range,
    freshen,
    not_modified_headers,
    origin_preconditions,
    precondition,
    revalidation_headers,
    select_for_update,
    validation_outcome,
)
from .customers import CustomerIndex
from .fetch import Client, Fetcher, OriginError, OriginResponse
from .fields import Headers, directives, field, has_field
from .forwarding import apply_rules, max_forwards_exhausted
from .hit import Prepared
from .hitfile import MIN_BODY, HitFile
from .message import Body, BodyStream, FileBody, Request, Response
from .misslock import Hold, MissLocks
from .report import SerialCounts
from .rfc9111 import (
    Action,
    CacheStatus,
    Entry,
    Policy,
    Reuse,
    age_header,
    forwarded_status,
    fwd_reason,
    invalidates,
    request_directives,
    reuse,
    select_variant,
    served_status,
    stale_on_error,
    storable,
    store_decision,
    update_candidates,
    variant_key,
    vary_fields,
    vary_matches,
)
from .store import Key, SecondRequest, Variant, with_variant
from .target import cache_key, normalize_target, origin_target
from .tiers import TieredStore
from .transcode import pump
from .upstream import ERROR_HEADER, HEADER_NAME, TunnelRefused

SAFE = ("GET", "HEAD")
FRAMING = frozenset({"content-length", "transfer-encoding", "content-range"})
TUNNEL_FIELD = HEADER_NAME.lower()
# fields the edge sets on the request as the cache sees it (Vary and collapsing read them)
CACHE_VIEW = frozenset({"accept-encoding", "x-forwarded-proto"})
ALLOW = "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE"


def cache_view(req: Request) -> list[tuple[str, str]]:
    """The request as the cache (and the origin) sees it: Accept-Encoding normalised to
    br/gzip/identity as Varnish does (a few variants per object, not one per browser),
    X-Forwarded-Proto set to the scheme the client used (never the client's own)."""
    out = [(k, v) for k, v in req.headers if k.lower() not in CACHE_VIEW]
    given = field(req.headers, "accept-encoding") if has_field(req.headers, "accept-encoding") else None
    normal = encoding.normalize_accept_encoding(given)
    if normal:
        out.append(("Accept-Encoding", normal))
    out.append(("X-Forwarded-Proto", req.scheme))
    return out


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
        self.file_waits = rt.counter("akacdn_edge_hit_file_waits", "Large hits sent as a slow client took them")
        self.served = 0
        self.counts = SerialCounts()
        self.second = SecondRequest()
        self._background: set[asyncio.Task[None]] = set()
        self._hit = self.requests.labels("hit")
        # the plain hit counts on its answer alone; `flush` adds up the answers hit since
        # the last flush (those whose span of Age and ttl began since then, or holds still)
        self._answered: set[Prepared] = set()
        self._peek = store.memory.peek
        self.plain_hits = 0  # (a running total: `flush` adds to it)
        self.before_flush: list[Callable[[], None]] = []
        rt.before_scrape.append(self.flush)
        self.locks: MissLocks | None = None  # `[edge] workers` > 1: misses meet across processes
        self._holds: dict[Key, Hold] = {}
        self._plain: dict[str, dict[bytes, tuple[Customer, Key] | None]] = {}  # scheme -> target+Host -> key
        # recovery-oriented operation: a fault rolls the daemon (or fails one request in the
        # in-place mode); serials refused here: quarantined elsewhere, or disabled in place
        self.recovery = rt.recovery
        if self.recovery is not None:
            self.recovery.summary = self.summarize
        self.hit_dir = rt.state_dir / "cache"  # where large hits' files live (unnamed)
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
    def forget_plain(self) -> None:
        """A reload: what the old config said of hosts, and the plain-hit answers built
        with its response rules, no longer hold."""
        self._plain.clear()
        self.store.memory.forget_prepared()

    def _plain_key(self, scheme: str, host: bytes, target: bytes) -> tuple[Customer, Key] | None:
        """(customer, cache key) for a Host and an origin-form target, when the plain hit
        may answer it (not an ARL, not absolute-form), memoised until `forget_plain`."""
        memo = self._plain.setdefault(scheme, {})
        h, t = host.decode("latin-1"), target.decode("latin-1")
        found = self.customers().lookup(h)
        got = None
        if found is not None and t[:1] == "/" and not (found[1] and arl.is_arl(t)):
            got = (found[0], cache_key(found[0].name, normalize_target(t), scheme))
        if len(memo) > 50_000:
            memo.clear()
        memo[target + b" " + host] = got  # (a target has no space: the parser refuses it)
        return got

    def plain_hit(
        self, head: bool, host: bytes, target: bytes, now: float, scheme: str = "http"
    ) -> list[bytes] | tuple[bytes, HitFile] | None:
        """The answer to a plain GET/HEAD (no conditional, range or cache directives) when a
        fresh stored response that does not vary answers it; else None (the full flow).
        The hottest path of the edge: every step here is paid per request."""
        try:
            plain = self._plain[scheme][target + b" " + host]
        except KeyError:
            plain = self._plain_key(scheme, host, target)
        if plain is None:
            return None
        variants = self._peek(plain[1])
        if variants is None or len(variants) != 1:
            return None
        v = variants[0]
        if v.vary_key != ():
            return None
        p = v.prepared
        if p is None:
            if not isinstance(v.body, bytes):
                return None
            p = v.prepared = self._prepare(plain[0], v.entry, v.body)
        if not p.since < now < p.until:  # a whole second of Age or ttl turned (or the first hit)
            if not p.current(now):  # (not fresh, or not the plain hit)
                return None
            # once a second per answer: its key marked used, the answer where `flush` counts
            self.store.memory.touch(plain[1])
            self._answered.add(p)
        p.hits += 1  # (counted into its serial's row, `served` and the metric by `flush`)
        if p.file is not None and not head and scheme == "http":  # sendfile: no TLS in between
            return p.large  # type: ignore[return-value]  # (set with the file)
        return [p.head, p.tail] if head else [p.head, p.tail, p.body]

    def _prepare(self, customer: Customer, entry: Entry, body: bytes) -> Prepared:
        """A stored variant's plain-hit answer, with the customer's response rules applied. An
        encoded body is never the plain hit: whether the client takes it is the flow's call."""
        if customer.response_headers:
            entry = msgspec.structs.replace(
                entry, headers=tuple(apply_rules(list(entry.headers), customer.response_headers))
            )
        p = Prepared(entry, body, self.via, self.machine)
        p.counted = self.counts.row(customer.serial)
        if encoding.content_coding(entry.headers) is not None:
            p.plain = False
        elif len(p.body) >= MIN_BODY and p.plain:
            try:
                p.attach(HitFile(self.hit_dir, p.head, p.body))
            except OSError as e:  # no file: the hit is written from memory
                self.rt.log.limited("hit_file_failed", error=str(e))
        return p

    def flush(self, now: float | None = None) -> None:
        """Bring the counts up to date before they are read (a report, `served`, a scrape):
        the `before_flush` hooks (the connections' requests per client address), then
        the plain hits, counted only on their answers (`Prepared.hits`), into their
        serials' rows, `served` and the hit counter. `now`: the plain hit's clock."""
        for hook in self.before_flush:
            hook()
        now, total = time.time() if now is None else now, 0
        for p in list(self._answered):
            n = p.hits
            if n:
                p.hits = 0
                SerialCounts.add_plain_hits(p.counted, n, p.error, len(p.body))
                total += n
            elif not now < p.until:  # its next hit goes through `current`, which adds it again
                self._answered.discard(p)
        if total:
            self.served += total
            self.plain_hits += total
            self._hit.inc(total)

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
        if decodes_for(entry.headers, headers):  # a range of the encoded bytes is not what it asked for
            return self._reply(req, entry.status, entry.headers, body, cs, x_cache, age)
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
        grant: str | None = None
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
            grant = req.header(TUNNEL_FIELD) if found is not None else None
            if grant is not None and found is not None:
                resp = await self._tunneled(req, found, host, target, grant)
            else:
                headers = cache_view(req)
                resp = await self._handle(req, found, host, target, headers)
                if found is not None:
                    resp = self._finish(req, found[0], headers, resp)
        except Exception as e:  # not clearly addressable: roll, or (in place) fail this one request
            self.failed(e, req)
            text = "akacdn: this request failed; the server recovered in place\n"
            resp = self._error(req, 500, text, "fault", "fault")
        if found is not None:
            tunneled = grant is not None
            self.counts.record(found[0].serial, resp.x_cache, resp.status, resp.length or 0, tunneled)
        return resp

    async def _tunneled(
        self, req: Request, found: tuple[Customer, bool], host: str | None, target: str, value: str
    ) -> Response:
        """Another edge's request (`upstream.py`): served only with a valid grant. SureRoute:
        relayed to the origin as it came, nothing stored; a parent's: the cache flow, for
        the child's scheme, never to a parent again. The asker's answer needs no response
        rules or decoding here (the asking edge applies them for its client)."""
        customer = found[0]
        upstreams = self.fetcher.upstreams
        try:
            if upstreams is None:
                raise TunnelRefused("unknown_key")
            g = upstreams.verify(value, customer, req.method, target)
        except TunnelRefused as e:
            resp = self._error(req, 403, f"akacdn: tunnel refused ({e.reason})\n", "tunnel-refused", "tunnel_refused")
            resp.headers.append((ERROR_HEADER, f"refused: {e.reason}"))
            return resp
        req.headers = [(k, v) for k, v in req.headers if k.lower() != TUNNEL_FIELD]
        if g.purpose == "sureroute":
            try:
                got = await self.fetcher.relay(customer, req.method, target, req.headers, req.body or None)
            except OriginError as e:
                self.rt.log.limited("origin_error", customer=customer.name, error=str(e), tunnel_for=g.sender)
                cs = 'akacdn; fwd=bypass; detail="origin-unreachable"'
                extra = [(ERROR_HEADER, "origin unreachable")]
                return self._reply(req, 502, [], b"akacdn: origin unreachable\n", cs, "MISS", extra=extra)
            return self._reply(req, got.status, got.headers, got.body, 'akacdn; fwd=bypass; detail="sureroute"', "MISS")
        proto = req.header("x-forwarded-proto")
        if proto in ("http", "https"):
            req.scheme = proto
        req.from_child = True
        headers = cache_view(req)
        resp = await self._handle(req, found, host, target, headers)
        cs = next((v for k, v in resp.headers if k == "Cache-Status"), "")
        if resp.status == 502 and "origin-unreachable" in cs:  # the child tries its next way
            resp.headers.append((ERROR_HEADER, "origin unreachable"))
        return resp

    async def _handle_injected(self, req: Request) -> Response:
        return await self._handle_request(req, injected=True)

    def _finish(self, req: Request, customer: Customer, headers: Headers, resp: Response) -> Response:
        """The last steps for every answer of a customer: a body in an encoding the client
        does not accept is decoded (RFC 9110 12.5.3), then the customer's response rules."""
        if resp.status == 200 and decodes_for(resp.headers, headers):
            coding = encoding.content_coding(resp.headers)
            assert coding is not None
            resp.headers = encoding.transformed_headers(resp.headers, None)
            if req.method != "HEAD":
                resp.body = self._transcode(resp.body, encoding.decoder(coding, self.fetcher.max_body))
            resp.length = None
        if customer.response_headers:
            resp.headers = apply_rules(resp.headers, customer.response_headers)
        return resp

    def _transcode(self, body: Body, codec: encoding.Codec) -> BodyStream:
        """A body re-encoded as it is read (a task this handler owns)."""
        out = BodyStream(None, self.fetcher.spool_dir)
        if isinstance(body, BodyStream):
            source: object = body.chunks()
        elif isinstance(body, FileBody):
            source = body.pieces()
        else:
            source = [body]
        self._own(asyncio.get_running_loop().create_task(pump(source, codec, out)))  # type: ignore[arg-type]
        return out

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
        headers: list[tuple[str, str]],
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
        key = cache_key(customer.name, target, req.scheme)
        client = Client(req.remote, req.scheme, host, req.from_child)
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
                return await self._miss_across_workers(req, found, host, target, key, headers)
            fwd = "vary-miss" if variants else "uri-miss"
            return await self._fetch(req, customer, key, headers, client, override, fwd, None, held)
        if origin_preconditions(headers):  # only the origin may evaluate these (RFC 9111 4.3.2)
            return await self._fetch(req, customer, key, headers, client, override, "request", None, held)
        r = reuse(req.method, headers, chosen.entry, time.time(), self.policy)
        if r.action in (Action.HIT, Action.STALE):
            return self._from_store(req, headers, chosen, r, "HIT" if r.action == Action.HIT else "STALE")
        if r.action == Action.SWR:
            self._revalidate_later(customer, key, headers, client, override, chosen)
            return self._from_store(req, headers, chosen, r, "STALE")
        if r.action == Action.ONLY_IF_CACHED:
            return self._reply(req, 504, [], b"", "akacdn; fwd=stale; detail=only-if-cached", "MISS")
        return await self._fetch(req, customer, key, headers, client, override, fwd_reason(r), (chosen, r))

    async def _miss_across_workers(
        self, req: Request, found: tuple[Customer, bool], host: str | None, target: str, key: Key, headers: Headers
    ) -> Response:
        """A miss with `[edge] workers` > 1: the key's first miss in this process takes its
        miss lock (`misslock.Hold`), looks again (on disk, for what another worker stored) and
        fetches if still missing, holding the lock until the object is stored. The others
        here join that fetch while it streams, or wait for the hold to end and look again."""
        assert self.locks is not None
        view = list(headers)
        hold = self._holds.get(key)
        if hold is not None:  # this process already misses the key: never touch its lock
            await asyncio.shield(hold.decided)
            if not hold.joinable:  # nothing to collapse into: wait until it is stored
                await asyncio.shield(hold.released)
            return await self._handle(req, found, host, target, view, again=True)
        hold = self._holds[key] = Hold(lambda: self._holds.pop(key, None) if self._holds.get(key) is hold else None)
        try:
            await self.locks.acquire(key, hold)
            return await self._handle(req, found, host, target, view, again=True, held=hold)
        finally:
            if not hold.passed:
                hold.release()
            hold.decide()

    async def _get(
        self, customer: Customer, key: Key, ask: list[tuple[str, str]], client: Client
    ) -> tuple[OriginResponse, bool]:
        """GET from the origin, collapsed with others where the answer fits them all:
        (response, collapsed into another's request). OriginError when it failed."""
        target = origin_target(key)
        got, collapsed = await self.fetcher.fetch(customer, target, ask, client)
        if collapsed and not fits(got, ask):  # the shared answer varies on a field we differ in
            fields = vary_fields(got.headers)
            if fields is None:  # Vary: * is never shared
                got, collapsed = await self.fetcher.fetch_alone(customer, target, ask, client), False
            else:  # collapse again with those who share our values of the Vary fields
                got, collapsed = await self.fetcher.fetch(customer, target, ask, client, fields)
        if collapsed and not storable("GET", ask, got.status, got.headers).ok:
            # a response not for a shared cache (private, no-store...) is not shared either
            got, collapsed = await self.fetcher.fetch_alone(customer, target, ask, client), False
        return got, collapsed

    async def _revalidate(
        self,
        customer: Customer,
        key: Key,
        headers: list[tuple[str, str]],
        client: Client,
        override: float | None,
        v: Variant,
    ) -> tuple[OriginResponse, bool, Variant | None]:
        """Ask the origin whether a stored variant is still good (the one revalidation of the
        foreground and of stale-while-revalidate): (answer, collapsed, the freshened variant
        or None). A 304 freshens the stored responses RFC 9111 4.3.4 selects; a 304 that
        selects none of them is not used: the object is fetched again, unconditionally."""
        plain = [(k, val) for k, val in headers if not k.lower().startswith("if-")]
        got, collapsed = await self._get(customer, key, plain + revalidation_headers(v.entry.headers), client)
        if validation_outcome(got.status) != Validation.FRESHEN:
            return got, collapsed, None
        variants = self.store.variants(key) or []
        if not any(x.vary_key == v.vary_key for x in variants):
            variants = with_variant(variants, v)
        candidates = update_candidates(headers, [(x.vary_key, x.entry, x) for x in variants])
        update: list[tuple[str, str]] = got.headers
        chosen = select_for_update(update, candidates)
        if not any(x.vary_key == v.vary_key for x in chosen) and encoding.content_coding(v.entry.headers):
            # a copy the edge re-encoded has the weak form of the origin's ETag (RFC 9110 8.8.3)
            update = as_transformed(got.headers)
            chosen = select_for_update(update, candidates)
        if not any(x.vary_key == v.vary_key for x in chosen):
            self.rt.log.limited("revalidation_mismatch", customer=customer.name, target=key[1])
            got, collapsed = await self._get(customer, key, plain, client)
            return got, collapsed, None
        fresh = v
        for x in chosen:
            entry = freshen(x.entry, update, got.request_time, got.response_time, customer.default_ttl,
                            override, self.policy)  # fmt: skip
            new = Variant(x.vary_key, entry, x.body)
            if storable("GET", headers, entry.status, entry.headers).ok:
                variants = with_variant(variants, new)
            else:  # the 304 made it private or no-store: answer this once, keep it no longer
                variants = [y for y in variants if y.vary_key != x.vary_key]
            if x.vary_key == v.vary_key:
                fresh = new
        if variants:
            self._store(key, variants)
        else:
            self.store.drop(key)
        return got, collapsed, fresh

    async def _fetch(
        self,
        req: Request,
        customer: Customer,
        key: Key,
        headers: list[tuple[str, str]],
        client: Client,
        override: float | None,
        fwd: str,
        stale: tuple[Variant, Reuse] | None,
        held: Hold | None = None,
    ) -> Response:
        """Ask the origin (conditionally when a stored variant needs revalidation)."""
        try:
            if stale is None:
                got, collapsed = await self._get(customer, key, headers, client)
            else:
                got, collapsed, fresh = await self._revalidate(customer, key, headers, client, override, stale[0])
                if fresh is not None:
                    r = Reuse(Action.HIT, "revalidated", 0.0, fresh.entry.lifetime)
                    resp = self._from_store(req, headers, fresh, r, "REVALIDATED")
                    set_field(resp, "Cache-Status", forwarded_status(fwd, 304, None, fresh.entry, time.time()).value())
                    return resp
        except OriginError as e:
            self.rt.log.limited("origin_error", customer=customer.name, error=str(e))
            return self._origin_failed(req, headers, stale, None)
        if stale is not None and validation_outcome(got.status) == Validation.ERROR:
            return self._origin_failed(req, headers, stale, got)
        if got.status == 304:  # the client's own conditional, passed on: nothing to store
            return self._reply(req, 304, got.headers, b"", forwarded_status(fwd, 304), "MISS")
        got = self._compressed(customer, headers, got)
        return await self._store_and_answer(req, customer, key, headers, override, fwd, got, collapsed, held)

    def _compressed(self, customer: Customer, headers: Headers, got: OriginResponse) -> OriginResponse:
        """The origin's answer as the edge keeps it: with `compress` on, a compressible
        uncompressed body is compressed as it arrives (br or gzip, as this client accepts)
        and the answer varies on Accept-Encoding (also the identity copy: then a client that
        accepts compression misses it and gets its own)."""
        if not customer.compress or not encoding.may_compress(got.status, got.headers):
            return got
        coding = encoding.choose(field(headers, "accept-encoding") or None)
        if coding is None:
            new = OriginResponse(got.status, encoding.with_vary(got.headers, "Accept-Encoding"), got.body,
                                 got.request_time, got.response_time)  # fmt: skip
        else:
            body = self._transcode(got.body, encoding.encoder(coding))
            new = OriginResponse(got.status, encoding.transformed_headers(got.headers, coding), body,
                                 got.request_time, got.response_time)  # fmt: skip
        new.asked_with, new.forget = got.asked_with, got.forget
        return new

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
        verdict, entry = store_decision("GET", headers, got.status, got.headers, got.request_time, got.response_time,
                                        customer.default_ttl, override, self.policy)  # fmt: skip
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
        client: Client,
        override: float | None,
        v: Variant,
    ) -> None:
        """stale-while-revalidate: one background revalidation per key at a time; what it
        may store is decided as in the foreground (`store_decision`)."""
        if any(t.get_name() == repr(key) for t in self._background):
            return

        async def revalidate() -> None:
            try:
                got, collapsed, fresh = await self._revalidate(customer, key, headers, client, override, v)
                if fresh is not None or collapsed or validation_outcome(got.status) == Validation.ERROR:
                    return
                got = self._compressed(customer, headers, got)
                verdict, entry = store_decision(
                    "GET", headers, got.status, got.headers, got.request_time, got.response_time,
                    customer.default_ttl, override, self.policy,
                )  # fmt: skip
                if not verdict.ok:
                    got.forget()
                    return
                body = await got.whole()
            except OriginError:
                return
            variants = with_variant(
                self.store.variants(key) or [], Variant(variant_key(got.headers, headers), entry, body)
            )
            self._store(key, variants)

        self._own(asyncio.get_running_loop().create_task(revalidate(), name=repr(key)))

    async def _unsafe(
        self, req: Request, customer: Customer, key: Key, headers: list[tuple[str, str]], client: Client
    ) -> Response:
        """POST/PUT/DELETE/OPTIONS...: forwarded to the origin, then what it changed is
        invalidated. TRACE is refused (it would reflect cookies and credentials to a page's
        scripts); OPTIONS with Max-Forwards: 0 is answered here (RFC 9110 7.6.2)."""
        if req.method == "TRACE":
            text = "akacdn: TRACE is not served\n"
            resp = self._error(req, 405, text, "method", "method_not_allowed")
            resp.headers.append(("Allow", ALLOW))
            return resp
        if max_forwards_exhausted(req.method, headers):
            cs = 'akacdn; fwd=bypass; detail="max-forwards"'
            return self._reply(req, 200, [("Allow", ALLOW)], b"", cs, "MISS", None, 0)
        body = req.body
        try:
            got = await self.fetcher.forward(customer, req.method, origin_target(key), headers, client, body)
        except OriginError:
            cs = 'akacdn; fwd=method; detail="origin-unreachable"'
            return self._reply(req, 502, [], b"akacdn: origin unreachable\n", cs, "MISS")
        host = customer.hostnames[0] if customer.hostnames else (req.header("host") or "")
        for path in invalidates(req.method, got.status, f"http://{host}{origin_target(key)}", got.headers):
            for scheme in ("http", "https"):
                self.store.drop(cache_key(customer.name, path, scheme))
        return self._reply(req, got.status, got.headers, got.body, forwarded_status("method", got.status), "MISS")


def decodes_for(stored: Headers, headers: Headers) -> bool:
    """Whether a representation must be decoded for this client: its coding is one the
    client does not accept (by the normalised Accept-Encoding of `headers`), the edge can
    decode it, and the origin did not forbid transforming it (no-transform)."""
    coding = encoding.content_coding(stored)
    if coding is None:
        return False
    if encoding.accepts(field(headers, "accept-encoding") or None, coding) or not encoding.can_decode(coding):
        return False
    return "no-transform" not in directives(stored)
