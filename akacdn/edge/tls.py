"""TLS termination at the edge: one server context per certificate, chosen by SNI.

The listener's context (`Certificates.server`) never changes; its SNI callback switches
each handshake to the context of the certificate for the name the client asked for: a
customer's (`tls_cert` for its `hostnames`), else the network's (`[edge] tls_cert`, for
the aNNN.<subzone>.<base> names and any other), else the first customer's. A reload
builds new contexts and swaps the name table in one assignment: connections already
open keep theirs, new handshakes get the new certificates. A certificate that fails to
load at a reload (replaced on disk between the config check and the load) is refused
with an event naming the file, and the one already in use is kept.

TLS 1.2 and 1.3, ALPN `http/1.1` (the server speaks HTTP/1.1 only); OpenSSL's defaults
otherwise (Python's secure cipher list, session tickets).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

from ..config import Network

Pair = tuple[Path, Path]  # (certificate chain, private key)


def server_context(pair: Pair | None) -> ssl.SSLContext:
    """A TLS server context for one certificate (None: none loaded, the listener's own)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if pair is not None:
        ctx.load_cert_chain(*pair)
    return ctx


def configured(net: Network) -> tuple[Pair | None, dict[str, Pair]]:
    """(the network's certificate, {hostname: a customer's certificate}) from the config."""
    base = Path(net.path).parent
    default = (base / net.edge.tls_cert, base / net.edge.tls_key) if net.edge.tls_cert else None
    by_name: dict[str, Pair] = {}
    for c in net.customers:
        if c.tls_cert:
            for h in c.hostnames:
                by_name[h] = (base / c.tls_cert, base / c.tls_key)
    return default, by_name


class Certificates:
    """The certificates an edge serves, by SNI name; `server` is the listener's context."""

    def __init__(self, net: Network, refused: Callable[[str, str], None] = lambda file, why: None) -> None:
        self.refused = refused  # (file, reason) of a certificate that did not load
        self._loaded: dict[Pair, tuple[float, ssl.SSLContext]] = {}  # by files, with their mtime
        self._by_name: dict[str, ssl.SSLContext] = {}
        self._default: ssl.SSLContext | None = None
        self.server = server_context(None)
        self.server.sni_callback = self._select
        self.update(net)

    @property
    def enabled(self) -> bool:
        """Whether there is any certificate to serve (else no HTTPS listener)."""
        return self._default is not None

    def _context(self, pair: Pair) -> ssl.SSLContext | None:
        """The context of a certificate: reused while its files are unchanged, reloaded when
        they changed, the old one kept (and the failure reported) when the new files fail."""
        old = self._loaded.get(pair)
        try:
            mtime = max(pair[0].stat().st_mtime, pair[1].stat().st_mtime)
            if old is not None and old[0] == mtime:
                return old[1]
            ctx = server_context(pair)
        except (OSError, ssl.SSLError) as e:
            self.refused(str(pair[0]), str(getattr(e, "reason", None) or e))
            return old[1] if old is not None else None
        self._loaded[pair] = (mtime, ctx)
        return ctx

    def update(self, net: Network) -> None:
        """Take the certificates of a (re)loaded config."""
        default_pair, pairs = configured(net)
        by_name: dict[str, ssl.SSLContext] = {}
        for name, pair in pairs.items():
            ctx = self._context(pair)
            if ctx is not None:
                by_name[name] = ctx
        default = self._context(default_pair) if default_pair is not None else None
        if default is None and by_name:
            default = next(iter(by_name.values()))
        self._by_name, self._default = by_name, default
        in_use = {p for p in pairs.values()} | ({default_pair} if default_pair else set())
        self._loaded = {p: v for p, v in self._loaded.items() if p in in_use}

    def for_name(self, name: str | None) -> ssl.SSLContext | None:
        """The context a handshake for SNI `name` gets (None: no certificate at all)."""
        if name:
            got = self._by_name.get(name.lower().rstrip("."))
            if got is not None:
                return got
        return self._default

    def _select(self, sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> int | None:
        ctx = self.for_name(name)
        if ctx is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        sock.context = ctx
        return None
