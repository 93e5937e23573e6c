"""Akamaize (pure): rewrite a customer's HTML page so its embedded static objects load from the edge.

What the Free Flow Launcher did for Akamai's customers in 2000: the customer keeps the
page and everything dynamic (scripts on the server, cookies, transactions); images,
stylesheets, scripts and media it names move to edge URLs, either ARLs
(`http://a123.g.akacdn.test/7/123/1d/www.demo.example/img/a.gif`) or the same path on an
edge hostname (`http://static.demo.example/img/a.gif`, a customer hostname CNAMEd to
`a123.g.akacdn.test`; `a123.g.<base>` itself when none is configured).

Theory of operation
-------------------
The page is never parsed into a tree and written out again. A small tokenizer, after the
WHATWG HTML tokenizer as far as this needs, walks the text and finds the *spans* of
attribute values and CSS `url(...)` / `@import "..."` strings that name embedded objects:

    text      -> `<!--...-->` (also `<!-->`, `--!>`), `<!...>` `<?...>` `</...>` skipped;
                 `<name attrs...>` is a start tag: quoted (`"`, `'`) and unquoted values,
                 names and tags case-insensitive; a tag cut off by the end of the page is
                 left alone (a browser drops it)
    start tag -> after script, style, textarea, title, xmp, iframe, noembed, noframes:
                 raw text up to `</name`; only <style> text is read (as CSS), never script
                 code; after <plaintext> nothing more is read

Each found URL is decoded (character references in attributes, by the attribute rules;
none in <style> text), resolved against the page URL and the first `<base href>` seen so
far (as a browser resolves while it parses), and rewritten when its host is one of the
customer's hostnames (explicit port only the scheme's default), its scheme is http(s),
and its path does not match the customer's `dynamic` globs. The replacement is escaped for
its context (`&` -> `&amp;` and the quote in attributes; refused if it would not fit a
CSS string or unquoted `url()`). Every other byte is copied as it was: with no URL to
rewrite, the output is the input. The output keeps each URL's scheme (an https page gets
https edge URLs, never mixed content) and fragment (`sprite.svg#icon`).

Left on the origin on purpose: requests a browser makes in CORS mode, which would fail
once cross-origin unless the origin already sends Access-Control-Allow-Origin: elements
with `crossorigin` or `integrity`, module scripts, `modulepreload`, preloads `as=font`,
and `url()`s inside `@font-face`. Links (`<a href>`), forms, frames and `<base>` are pages,
not embedded objects, and are not touched.

Not handled: CSS `image-set()` strings, SVG `<image href>`/`<use href>`, `data-src` style
lazy loading, script-data double-escaping (`<!--<script>` inside a script), pages in
UTF-16 (callers pass text; the CLI decodes bytes as UTF-8 with surrogateescape so any
ASCII-compatible page round-trips byte for byte).
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable, Iterator
from html.entities import html5 as _ENTITIES
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit

from ..config import Customer, glob_regex
from . import arl

# element -> attributes that hold one URL of an embedded object
URL_ATTRS: dict[str, tuple[str, ...]] = {
    "img": ("src", "lowsrc"),
    "script": ("src",),
    "link": ("href",),  # for the rel values in LINK_RELS
    "source": ("src",),
    "video": ("poster", "src"),
    "audio": ("src",),
    "track": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "input": ("src",),  # type=image
    "body": ("background",),
    "table": ("background",),
    "tr": ("background",),
    "td": ("background",),
    "th": ("background",),
}
# element -> attributes that hold a srcset list ("a.jpg 1x, b.jpg 2x")
SRCSET_ATTRS: dict[str, tuple[str, ...]] = {"img": ("srcset",), "source": ("srcset",), "link": ("imagesrcset",)}
LINK_RELS = frozenset(
    {"stylesheet", "icon", "apple-touch-icon", "apple-touch-icon-precomposed", "mask-icon", "preload", "prefetch"}
)
RAWTEXT = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"})

_WS = "\t\n\f\r "
_C0_SPACE = "".join(map(chr, range(0x21)))  # what browsers strip around a URL
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_REF = re.compile(r"&(?:#[xX][0-9a-fA-F]+;?|#[0-9]+;?|([A-Za-z][A-Za-z0-9]*;?))")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_RAW_END: dict[str, re.Pattern[str]] = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE) for name in RAWTEXT}

Fits = Callable[[str], bool]


class Rewrite(NamedTuple):
    """One URL the page names, and what became of it."""

    start: int  # span of the URL in the page
    end: int
    url: str  # as the page means it (character references decoded)
    edge_url: str | None  # what it was rewritten to; None: left alone
    reason: str  # "edge", or why it was left alone
    written: str = ""  # the text that replaced page[start:end] (edge_url, escaped for its context)


class Akamaized(NamedTuple):
    html: str
    rewrites: list[Rewrite]  # every URL considered, in page order

    @property
    def changed(self) -> list[Rewrite]:
        return [r for r in self.rewrites if r.edge_url is not None]


class Akamaizer:
    """One customer's rewriting rules, compiled once; `page()` rewrites a page."""

    def __init__(self, customer: Customer, base_domain: str, *, subzone: str = "g") -> None:
        self.customer = customer
        self.hosts = frozenset(h.lower().rstrip(".") for h in customer.hostnames)
        self.ttl = arl.parse_ttl(customer.arl_ttl)
        self.arl_host = arl.edge_host(customer.serial, base_domain, subzone)
        self.edge_host = customer.edge_hostname or self.arl_host
        self.dynamic = [(p, glob_regex(p)) for p in customer.dynamic]

    def default_page_url(self) -> str | None:
        return f"http://{self.customer.hostnames[0]}/" if self.customer.hostnames else None

    # -- one URL ---------------------------------------------------------------------

    def edge_url(self, url: str, base: str | None) -> tuple[str | None, str]:
        """(edge URL, "edge") for a URL to move to the edge, else (None, why not)."""
        u = url.strip(_C0_SPACE).replace("\t", "").replace("\n", "").replace("\r", "")
        if not u or u.startswith("#"):
            return None, "no object"
        m = _SCHEME.match(u)
        if m and m.group(1).lower() not in _DEFAULT_PORTS:
            return None, f"{m.group(1).lower()}: URL"
        u = u.replace("\\", "/")  # as browsers do for http(s)
        if base is None and not m:
            return None, "relative, and no page URL"
        try:
            if base is not None:
                u = urljoin(base, u)
            parts = urlsplit(u)
            port = parts.port
        except ValueError:
            return None, "not a valid URL"
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.netloc:
            return None, "not a valid URL"
        if "@" in parts.netloc:
            return None, "has user info"
        host = (parts.hostname or "").rstrip(".")
        if host not in self.hosts:
            return None, "other host"
        if port is not None and port != _DEFAULT_PORTS[scheme]:
            return None, f"port {port}"
        path = parts.path or "/"
        query = parts.query if "?" in u.partition("#")[0] else None
        target = path if query is None else f"{path}?{query}"
        for pattern, rx in self.dynamic:
            if rx.fullmatch(target if "?" in pattern else path):
                return None, f"dynamic ({pattern})"
        fragment = "#" + parts.fragment if "#" in u else ""
        try:
            path = arl.normalize_path(path, clamp=True)
            target = path if query is None else f"{path}?{query}"
            if self.customer.akamaize == "arl":
                new = f"{scheme}://{self.arl_host}" + arl.build(self.customer.serial, self.ttl, host, target)
            else:
                new = f"{scheme}://{self.edge_host}" + arl.quote_target(target)
        except arl.ARLError as e:
            return None, str(e)
        return new + fragment, "edge"

    # -- a page ----------------------------------------------------------------------

    def page(self, html: str, page_url: str | None = None) -> Akamaized:
        """Rewrite a page (`page_url`: where it is served; default http://<first hostname>/)."""
        page_base = page_url or self.default_page_url()
        base = page_base
        base_seen = False

        edits: list[Rewrite] = []

        def consider(start: int, end: int, url: str, fits: Fits, escape: str | None, why_not: str = "") -> None:
            """escape: the attribute's quote ("" unquoted) to escape for, None in <style> text."""
            if why_not:
                edits.append(Rewrite(start, end, url, None, why_not))
                return
            new, reason = self.edge_url(url, base)
            if new is not None and not fits(new):
                new, reason = None, "rewritten URL would not fit its context"
            written = "" if new is None else new if escape is None else _attr_escape(new, escape)
            edits.append(Rewrite(start, end, url, new, reason, written))

        for tok in _tokens(html):
            if isinstance(tok, _RawText):
                if tok.name == "style":
                    for s in _css_urls(html, tok.start, tok.end):
                        consider(s.start, s.end, s.url, _css_fits(s.quote), None, s.why_not)
                continue
            first: dict[str, _Attr] = {}
            for a in tok.attrs:
                first.setdefault(a.name, a)
            if tok.name == "base" and not base_seen and "href" in first:
                base_seen = True
                href = _decode(html, first["href"])[0].strip(_WS)
                if page_base is not None or _SCHEME.match(href):
                    try:
                        joined = urljoin(page_base or "", href)
                        if urlsplit(joined).scheme.lower() in _DEFAULT_PORTS:
                            base = joined
                    except ValueError:
                        pass
            cors = _cors_reason(tok.name, first, html)
            for name in URL_ATTRS.get(tok.name, ()):
                a = first.get(name)
                if a is None or not _wanted(tok.name, first, html):
                    continue
                text, pos = _decode(html, a)
                lo, hi = _strip_span(text)
                if lo < hi:
                    consider(pos[lo], pos[hi], text[lo:hi], _attr_fits(a.quote), a.quote, cors)
            for name in SRCSET_ATTRS.get(tok.name, ()):
                a = first.get(name)
                if a is None or not _wanted(tok.name, first, html):
                    continue
                text, pos = _decode(html, a)
                for lo, hi in _srcset_urls(text):
                    consider(pos[lo], pos[hi], text[lo:hi], _attr_fits(a.quote), a.quote, cors)
            a = first.get("style")
            if a is not None:
                text, pos = _decode(html, a)
                for s in _css_urls(text, 0, len(text)):
                    fits = _both(_css_fits(s.quote), _attr_fits(a.quote))
                    consider(pos[s.start], pos[s.end], s.url, fits, a.quote, s.why_not)

        return Akamaized(splice(html, edits), edits)


def splice(html: str, rewrites: list[Rewrite]) -> str:
    """The page with each rewritten span replaced by its new text, every other byte as it was."""
    out: list[str] = []
    at = 0
    for r in sorted(rewrites):
        if r.edge_url is None or r.start < at:
            continue  # spans never overlap; be safe anyway
        out.append(html[at : r.start])
        out.append(r.written)
        at = r.end
    out.append(html[at:])
    return "".join(out)


def akamaize(html: str, customer: Customer, base_domain: str, page_url: str | None = None) -> Akamaized:
    """Rewrite one page for one customer (see `Akamaizer` to rewrite many)."""
    return Akamaizer(customer, base_domain).page(html, page_url)


# -- tokenizer -----------------------------------------------------------------------


class _Attr(NamedTuple):
    name: str  # lower case
    start: int  # value span in the page (start == end: empty or no value)
    end: int
    quote: str  # '"', "'" or "" (unquoted or no value)


class _Tag(NamedTuple):
    name: str  # lower case
    attrs: list[_Attr]


class _RawText(NamedTuple):
    name: str
    start: int
    end: int


def _tokens(html: str) -> Iterator[_Tag | _RawText]:
    """Start tags and raw-text element contents, in page order (see the module comment)."""
    n = len(html)
    i = html.find("<")
    while 0 <= i < n - 1:
        c = html[i + 1]
        if c.isascii() and c.isalpha():
            tag = _scan_tag(html, i + 1)
            if tag is None:
                return  # cut off by the end of the page
            name, attrs, end = tag
            yield _Tag(name, attrs)
            if name == "plaintext":
                return
            if name in RAWTEXT:
                m = _RAW_END[name].search(html, end)
                stop = m.start() if m else n
                yield _RawText(name, end, stop)
                end = stop
            i = html.find("<", end)
        elif html.startswith("<!--", i):
            p = i + 4
            if html.startswith(">", p):
                end = p + 1
            elif html.startswith("->", p):
                end = p + 2
            else:
                ends = [e + len(t) for t in ("-->", "--!>") if (e := html.find(t, p)) >= 0]
                end = min(ends) if ends else n
            i = html.find("<", end)
        elif c == "/" and i + 2 < n and html[i + 2].isascii() and html[i + 2].isalpha():
            tag = _scan_tag(html, i + 2)
            if tag is None:
                return
            i = html.find("<", tag[2])
        elif c in "!?/":
            end = html.find(">", i + 2)
            if end < 0:
                return
            i = html.find("<", end + 1)
        else:
            i = html.find("<", i + 1)


def _scan_tag(html: str, j: int) -> tuple[str, list[_Attr], int] | None:
    """The tag whose name starts at j: (name, attributes, offset after '>'), or None at EOF."""
    n = len(html)
    k = j
    while j < n and html[j] not in "\t\n\f\r />":
        j += 1
    name = html[k:j].lower()
    attrs: list[_Attr] = []
    while True:
        while j < n and html[j] in "\t\n\f\r /":
            j += 1
        if j >= n:
            return None
        if html[j] == ">":
            return name, attrs, j + 1
        k = j
        j += 1  # the first character belongs to the name, even "=" or a quote
        while j < n and html[j] not in "\t\n\f\r />=":
            j += 1
        aname = html[k:j].lower()
        while j < n and html[j] in _WS:
            j += 1
        if j < n and html[j] == "=":
            j += 1
            while j < n and html[j] in _WS:
                j += 1
            if j >= n:
                return None
            q = html[j]
            if q in "\"'":
                e = html.find(q, j + 1)
                if e < 0:
                    return None
                attrs.append(_Attr(aname, j + 1, e, q))
                j = e + 1
            else:
                k = j
                while j < n and html[j] not in "\t\n\f\r >":
                    j += 1
                attrs.append(_Attr(aname, k, j, ""))
        else:
            attrs.append(_Attr(aname, j, j, ""))


# -- attribute values ----------------------------------------------------------------


def _decode(html: str, a: _Attr) -> tuple[str, list[int]]:
    """An attribute's value with character references decoded, and for each character of
    it (and one past the end) its offset in the page."""
    raw = html[a.start : a.end]
    if "&" not in raw:
        return raw, list(range(a.start, a.end + 1))
    out: list[str] = []
    pos: list[int] = []
    at = 0

    def literal(upto: int) -> None:
        for k in range(at, upto):
            out.append(raw[k])
            pos.append(a.start + k)

    for m in _REF.finditer(raw):
        literal(m.start())
        at = m.start()
        name = m.group(1)
        if name is None:  # numeric
            text, used = htmllib.unescape(m.group(0)), len(m.group(0))
        elif name.endswith(";") and name in _ENTITIES:
            text, used = _ENTITIES[name], len(m.group(0))
        else:
            text, used = "", 0
            bare = name.rstrip(";")
            for size in range(len(bare), 0, -1):
                if bare[:size] in _ENTITIES:  # a legacy name without ";"
                    after = raw[m.start() + 1 + size : m.start() + 2 + size]
                    if not (after.isascii() and (after.isalnum() or after == "=")):
                        text, used = _ENTITIES[bare[:size]], 1 + size
                    break
        if used:
            out.extend(text)
            pos.extend([a.start + at] * len(text))
            at += used
        # an undecoded "&name" is copied as literal text by the next literal() call
    literal(len(raw))
    pos.append(a.end)
    return "".join(out), pos


def _strip_span(text: str) -> tuple[int, int]:
    lo, hi = 0, len(text)
    while lo < hi and text[lo] in _WS:
        lo += 1
    while hi > lo and text[hi - 1] in _WS:
        hi -= 1
    return lo, hi


def _srcset_urls(text: str) -> Iterator[tuple[int, int]]:
    """URL spans of a srcset list (HTML "parse a srcset attribute", without checks)."""
    n = len(text)
    i = 0
    while True:
        while i < n and (text[i] in _WS or text[i] == ","):
            i += 1
        if i >= n:
            return
        start = i
        while i < n and text[i] not in _WS:
            i += 1
        end = i
        if text[end - 1] == ",":
            while end > start and text[end - 1] == ",":
                end -= 1
        else:  # descriptors up to a comma outside parentheses
            depth = 0
            while i < n and not (text[i] == "," and depth == 0):
                depth += text[i] == "("
                depth -= text[i] == ")" and depth > 0
                i += 1
        if end > start:
            yield start, end


def _attr_value(html: str, first: dict[str, _Attr], name: str) -> str | None:
    a = first.get(name)
    return None if a is None else _decode(html, a)[0].strip(_WS).lower()


def _wanted(tag: str, first: dict[str, _Attr], html: str) -> bool:
    if tag == "link":
        rel = _attr_value(html, first, "rel") or ""
        return any(t in LINK_RELS for t in rel.split())
    if tag == "input":
        return _attr_value(html, first, "type") == "image"
    return True


def _cors_reason(tag: str, first: dict[str, _Attr], html: str) -> str:
    """Why the element's request is made in CORS mode (and so must stay same-origin), or ""."""
    if "crossorigin" in first or "integrity" in first:
        return "CORS request (crossorigin/integrity)"
    if tag == "script" and _attr_value(html, first, "type") == "module":
        return "CORS request (module script)"
    if tag == "link":
        rel = (_attr_value(html, first, "rel") or "").split()
        if "modulepreload" in rel or ("preload" in rel and _attr_value(html, first, "as") == "font"):
            return "CORS request (font or module preload)"
    return ""


# -- CSS -------------------------------------------------------------------------------


class _CssUrl(NamedTuple):
    start: int
    end: int
    url: str
    quote: str  # '"', "'" or "" (unquoted url())
    why_not: str  # "" or why it must stay (inside @font-face)


def _css_urls(s: str, start: int, stop: int) -> Iterator[_CssUrl]:
    """`url(...)` and `@import "..."` URL spans in CSS text s[start:stop] (escaped ones skipped)."""
    i = start
    importing = False
    depth = 0
    font_face_pending = False
    font_depth = 0  # depth of the @font-face block we are in, 0: none
    while i < stop:
        c = s[i]
        if c == "/" and s.startswith("/*", i):
            e = s.find("*/", i + 2, stop)
            i = stop if e < 0 else e + 2
            continue
        if c in "\"'":
            e = _css_string_end(s, i + 1, stop, c)
            if importing and e is not None and "\\" not in s[i + 1 : e]:
                yield _CssUrl(i + 1, e, s[i + 1 : e], c, "")
            importing = False
            i = stop if e is None else e + 1
            continue
        if c == "@":
            word = re.match(r"@([A-Za-z-]+)", s[i:stop])
            kw = word.group(1).lower() if word else ""
            importing = kw == "import"
            font_face_pending = kw == "font-face"
            i += 1 + len(kw)
            continue
        if c == "{":
            depth += 1
            if font_face_pending:
                font_depth, font_face_pending = depth, False
        elif c == "}":
            if depth == font_depth:
                font_depth = 0
            depth = max(0, depth - 1)
        elif c in "uU" and s[i : i + 4].lower() == "url(" and not _ident_before(s, i, start):
            found = _css_url_token(s, i + 4, stop)
            importing = False
            if found is None:
                i += 4
                continue
            lo, hi, q, after = found
            yield _CssUrl(lo, hi, s[lo:hi], q, "inside @font-face (needs CORS)" if font_depth else "")
            i = after
            continue
        if c not in _WS:
            importing = False
        i += 1


def _ident_before(s: str, i: int, start: int) -> bool:
    return i > start and (s[i - 1].isalnum() or s[i - 1] in "-_\\" or not s[i - 1].isascii())


def _css_string_end(s: str, i: int, stop: int, q: str) -> int | None:
    while i < stop:
        c = s[i]
        if c == q:
            return i
        if c == "\n":
            return None
        i += 2 if c == "\\" else 1
    return None


def _css_url_token(s: str, i: int, stop: int) -> tuple[int, int, str, int] | None:
    """The URL inside `url(` ... `)` starting at i: (start, end, quote, offset after ')')."""
    while i < stop and s[i] in _WS:
        i += 1
    if i < stop and s[i] in "\"'":
        q = s[i]
        e = _css_string_end(s, i + 1, stop, q)
        if e is None or "\\" in s[i + 1 : e]:
            return None
        j = e + 1
        while j < stop and s[j] in _WS:
            j += 1
        if j >= stop or s[j] != ")":
            return None
        return i + 1, e, q, j + 1
    e = s.find(")", i, stop)
    if e < 0:
        return None
    lo, hi = i, e
    while hi > lo and s[hi - 1] in _WS:
        hi -= 1
    body = s[lo:hi]
    if not body or any(ch in body for ch in "\"'(\\") or any(ch in _WS for ch in body):
        return None
    return lo, hi, "", e + 1


# -- fitting the new URL into its context ---------------------------------------------


def _attr_fits(quote: str) -> Fits:
    def fits(url: str) -> bool:
        return bool(quote) or not any(ch in url for ch in _WS + "\"'<>`")

    return fits


def _css_fits(quote: str) -> Fits:
    def fits(url: str) -> bool:
        if quote:
            return quote not in url and "\\" not in url and "\n" not in url
        return not any(ch in url for ch in _WS + "\"'()\\")

    return fits


def _both(a: Fits, b: Fits) -> Fits:
    return lambda url: a(url) and b(url)


def _attr_escape(url: str, quote: str) -> str:
    out = url.replace("&", "&amp;")
    if quote == '"':
        out = out.replace('"', "&quot;")
    elif quote == "'":
        out = out.replace("'", "&#39;")
    return out
