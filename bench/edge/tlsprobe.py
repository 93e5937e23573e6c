"""What the TLS handshakes between wrk and a server were: a relay on loopback that reads
the first (plaintext) handshake message each way, ClientHello and ServerHello, and
counts the new connections, the ones where wrk offered a session to resume and the
ones the server resumed, with the version, cipher and key-exchange group agreed.

wrk 4.1 reuses one SSL object per connection slot: on a reconnect it calls
`SSL_shutdown` + `SSL_clear`, which keeps the last session, so the next `SSL_connect`
offers it (a TLS 1.3 PSK from the server's session ticket, or a TLS 1.2 session id or
ticket). Whether the handshakes of `Connection: close` runs were full ones is then up
to the server; this probe says what happened instead of assuming it.

The probe is a separate short wrk run through the relay (its own address), never the
measured one: the relay's copying would land in neither server's CPU but would slow
wrk down.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field, fields

from . import wrk

# handshake message types, extension numbers (RFC 8446 4, 4.2; RFC 5077)
CLIENT_HELLO, SERVER_HELLO = 1, 2
EXT_SESSION_TICKET, EXT_PRE_SHARED_KEY, EXT_SUPPORTED_VERSIONS, EXT_KEY_SHARE = 35, 41, 43, 51
# a ServerHello with this random is a HelloRetryRequest (RFC 8446 4.1.3)
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
VERSIONS = {0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
GROUPS = {0x0017: "P-256", 0x0018: "P-384", 0x0019: "P-521", 0x001D: "X25519", 0x001E: "X448"}
CIPHERS = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256",
    0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384",
    0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305",
}


class NotHello(ValueError):
    """The bytes are not (yet) a whole ClientHello or ServerHello."""


@dataclass
class Hello:
    kind: int  # CLIENT_HELLO or SERVER_HELLO
    version: int  # legacy_version
    random: bytes
    session_id: bytes
    cipher: int | None  # ServerHello: the suite chosen
    extensions: dict[int, bytes]

    @property
    def negotiated_version(self) -> int:
        """ServerHello: the version agreed (supported_versions, else legacy_version)."""
        sv = self.extensions.get(EXT_SUPPORTED_VERSIONS)
        return struct.unpack("!H", sv[:2])[0] if sv is not None and len(sv) == 2 else self.version


def parse_hello(data: bytes) -> Hello:
    """The first handshake message in a TLS record stream: a ClientHello or ServerHello
    (which may span records). Raises NotHello when the bytes are not one, or not all of it yet."""
    hs = bytearray()
    pos = 0
    while True:
        if len(data) < pos + 5:
            raise NotHello("short record header")
        ctype, _ver, n = struct.unpack_from("!BHH", data, pos)
        if ctype != 22:
            raise NotHello(f"record type {ctype}, not handshake")
        if len(data) < pos + 5 + n:
            raise NotHello("short record")
        hs += data[pos + 5 : pos + 5 + n]
        pos += 5 + n
        if len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
            break
    kind, body = hs[0], bytes(hs[4 : 4 + int.from_bytes(hs[1:4], "big")])
    if kind not in (CLIENT_HELLO, SERVER_HELLO):
        raise NotHello(f"handshake type {kind}")
    try:
        version = struct.unpack_from("!H", body, 0)[0]
        random = body[2:34]
        at = 34
        sid = body[at + 1 : at + 1 + body[at]]
        at += 1 + body[at]
        cipher = None
        if kind == CLIENT_HELLO:
            at += 2 + struct.unpack_from("!H", body, at)[0]  # cipher suites
            at += 1 + body[at]  # compression methods
        else:
            cipher = struct.unpack_from("!H", body, at)[0]
            at += 3  # cipher suite, compression method
        extensions: dict[int, bytes] = {}
        if at < len(body):
            end = at + 2 + struct.unpack_from("!H", body, at)[0]
            at += 2
            while at < end:
                etype, elen = struct.unpack_from("!HH", body, at)
                extensions[etype] = body[at + 4 : at + 4 + elen]
                at += 4 + elen
    except (struct.error, IndexError) as e:
        raise NotHello(f"truncated hello: {e}") from None
    return Hello(kind, version, random, sid, cipher, extensions)


def offered_resumption(ch: Hello) -> bool:
    """The client offered a session: a TLS 1.3 PSK, or a non-empty TLS 1.2 ticket."""
    return EXT_PRE_SHARED_KEY in ch.extensions or bool(ch.extensions.get(EXT_SESSION_TICKET))


def resumed(ch: Hello, sh: Hello) -> bool:
    """The server accepted it: in TLS 1.3 a pre_shared_key in the ServerHello; in TLS 1.2
    the client's (non-empty) session id echoed (session-id and ticket resumption both)."""
    if sh.negotiated_version == 0x0304:
        return EXT_PRE_SHARED_KEY in sh.extensions
    return bool(ch.session_id) and sh.session_id == ch.session_id


def group(sh: Hello) -> str | None:
    """TLS 1.3: the key-exchange group of the server's key share."""
    ks = sh.extensions.get(EXT_KEY_SHARE)
    if ks is None or len(ks) < 2:
        return None
    g = struct.unpack_from("!H", ks, 0)[0]
    return GROUPS.get(g, f"0x{g:04x}")


@dataclass
class Tally:
    connections: int = 0
    handshakes: int = 0  # both hellos seen
    offered: int = 0  # ClientHello offered a session
    resumed: int = 0  # ServerHello accepted it
    hello_retry: int = 0
    unreadable: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    ciphers: Counter[str] = field(default_factory=Counter)
    groups: Counter[str] = field(default_factory=Counter)

    def add(self, ch: Hello, sh: Hello) -> None:
        self.handshakes += 1
        self.offered += offered_resumption(ch)
        self.resumed += resumed(ch, sh)
        self.hello_retry += sh.random == HRR_RANDOM
        self.versions[VERSIONS.get(sh.negotiated_version, f"0x{sh.negotiated_version:04x}")] += 1
        if sh.cipher is not None:
            self.ciphers[CIPHERS.get(sh.cipher, f"0x{sh.cipher:04x}")] += 1
        g = group(sh)
        if g:
            self.groups[g] += 1

    def as_dict(self) -> dict[str, object]:
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Counter) else v) for f in fields(self)}

    def summary(self) -> str:
        """'TLS probe: wrk offered a session to resume in 95 of 100 handshakes, the server resumed 95
        (TLS 1.3, TLS_AES_256_GCM_SHA384, X25519)': what was agreed, several values joined by '/'."""
        conds = ", ".join("/".join(c) for c in (list(self.versions), list(self.ciphers), list(self.groups)) if c)
        return (
            f"TLS probe: wrk offered a session to resume in {self.offered} of {self.handshakes} handshakes, "
            f"the server resumed {self.resumed}" + (f" ({conds})" if conds else "")
        )


class Relay:
    """A TCP relay listen -> upstream in a thread of its own, tallying each connection's hellos
    (`port`: the one it listens on, for a listen port 0)."""

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int]) -> None:
        self.listen, self.upstream = listen, upstream
        self.port = listen[1]
        self.tally = Tally()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tls-probe-relay", daemon=True)

    def __enter__(self) -> Relay:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *_: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as e:  # noqa: BLE001 (handed to __enter__)
            self._error = e
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def accepted(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            t = asyncio.current_task()
            assert t is not None
            tasks.add(t)
            try:
                await self._pipe_pair(r, w)
            except asyncio.CancelledError:
                pass  # the relay stopping (what was read is tallied already)
            finally:
                tasks.discard(t)

        server = await asyncio.start_server(accepted, *self.listen, reuse_address=True)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for t in list(tasks):
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()

    async def _pipe_pair(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.tally.connections += 1
        try:
            sr, sw = await asyncio.open_connection(*self.upstream)
        except OSError:
            cw.close()
            return
        heads = [bytearray(), bytearray()]  # client->server, server->client: their first bytes
        tallied = False

        def look() -> None:
            """Tally the connection once both hellos are whole (before forwarding the
            ServerHello: the client cannot be done before it is counted)."""
            nonlocal tallied
            try:
                ch, sh = parse_hello(bytes(heads[0])), parse_hello(bytes(heads[1]))
            except NotHello:
                return
            tallied = True
            if ch.kind == CLIENT_HELLO and sh.kind == SERVER_HELLO:
                self.tally.add(ch, sh)
            else:
                self.tally.unreadable += 1

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, head: bytearray) -> None:
            try:
                while data := await r.read(65536):
                    if not tallied and len(head) < 16384:
                        head += data[: 16384 - len(head)]
                        look()
                    w.write(data)
                    await w.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                with contextlib.suppress(OSError):
                    if w.can_write_eof():
                        w.write_eof()

        try:
            await asyncio.gather(pipe(cr, sw, heads[0]), pipe(sr, cw, heads[1]))
        finally:
            for w in (cw, sw):
                w.close()
        if not tallied and (heads[0] or heads[1]):
            self.tally.unreadable += 1  # closed before both hellos were whole


def probe(
    upstream: tuple[str, int], listen: tuple[str, int], host: str, path: str, seconds: float = 1.0, connections: int = 4
) -> Tally:
    """A short `wrk -H 'Connection: close'` run over https through a relay to `upstream`:
    what its handshakes were."""
    url = f"https://{listen[0]}:{listen[1]}{path}"
    with Relay(listen, upstream) as relay:
        subprocess.run(
            wrk.argv(url, host, connections, seconds, 1, ("Connection: close",)),
            capture_output=True,
            timeout=seconds + 30,
            check=False,
        )
    return relay.tally
