"""akamaize: golden pages, one URL at a time, byte-exactness, config and the CLI.

Golden files live in golden/akamaize/: `<input>.in.html` and, per case, `<case>.out.html`.
After a deliberate change of behaviour, regenerate with `AKACDN_UPDATE_GOLDEN=1 pytest
tests/unit/test_akamaize.py` and read the diff before committing it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.config import ConfigError, Customer, Network, load_network
from akacdn.devnet.network import DEMO_HOST
from akacdn.devnet.origin import COLOURS, PAGE
from akacdn.edge import arl
from akacdn.edge.akamaize import Akamaizer, akamaize, splice

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden" / "akamaize"
EDGE = "http://a123.g.akacdn.test/7/123/1d/www.demo.example"

# (case, input file, changes to the devnet's demo customer, page URL)
CASES: list[tuple[str, str, dict[str, Any], str | None]] = [
    ("demo", "demo", {}, None),
    ("demo-cname", "demo", {"akamaize": "cname"}, None),
    ("quoting", "quoting", {}, "http://www.demo.example/dir/index.html"),
    ("skip", "skip", {}, None),
    ("css", "css", {}, "http://www.demo.example/css-test/page.html"),
    ("base", "base", {}, "http://www.demo.example/dir/page.html"),
    (
        "srcset-cname",
        "srcset",
        {"akamaize": "cname", "edge_hostname": "static.demo.example", "hostnames": [DEMO_HOST, "static.demo.example"]},
        None,
    ),
    ("dynamic", "dynamic", {"arl_ttl": "12h", "dynamic": ["*?*", "/private/*", "/API/*"]}, None),
]


def demo_page() -> str:
    """The demo origin's page, as it serves it."""
    return PAGE.format(images="\n".join(f'<img src="/img/{n}.png" alt="">' for n in COLOURS if "photo" in n))


def _customer(net: Network, **changes: Any) -> Customer:
    (demo,) = net.customers
    return msgspec.structs.replace(demo, **changes)


@pytest.mark.parametrize(("case", "source", "changes", "page_url"), CASES, ids=[c[0] for c in CASES])
def test_golden(shared_net: Network, case: str, source: str, changes: dict[str, Any], page_url: str | None) -> None:
    page = (GOLDEN / f"{source}.in.html").read_text()
    got = akamaize(page, _customer(shared_net, **changes), shared_net.base_domain, page_url).html
    want_file = GOLDEN / f"{case}.out.html"
    if os.environ.get("AKACDN_UPDATE_GOLDEN"):
        want_file.write_text(got)
    assert got == want_file.read_text()


def test_demo_page_is_golden_input() -> None:
    assert (GOLDEN / "demo.in.html").read_text() == demo_page()


# -- one URL at a time -------------------------------------------------------------------

URLS = [
    # (attribute value as written, page URL, expected edge URL or None)
    ("/img/a.gif", None, f"{EDGE}/img/a.gif"),
    ("img/a.gif", "http://www.demo.example/d/p.html", f"{EDGE}/d/img/a.gif"),
    ("../a.gif", "http://www.demo.example/d/e/p.html", f"{EDGE}/d/a.gif"),
    ("/../../a.gif", None, f"{EDGE}/a.gif"),  # clamped at the root, as browsers do
    ("http://www.demo.example/a.gif", None, f"{EDGE}/a.gif"),
    ("HTTP://WWW.DEMO.EXAMPLE./a.gif", None, f"{EDGE}/a.gif"),
    ("http://www.demo.example:80/a.gif", None, f"{EDGE}/a.gif"),
    ("https://www.demo.example:443/a.gif", None, "https://a123.g.akacdn.test/7/123/1d/www.demo.example/a.gif"),
    (
        "//www.demo.example/a.gif",
        "https://www.demo.example/",
        "https://a123.g.akacdn.test/7/123/1d/www.demo.example/a.gif",
    ),
    ("\\img\\a.gif", None, f"{EDGE}/img/a.gif"),
    (" /a.gif\n", None, f"{EDGE}/a.gif"),
    ("/a\tb.gif", None, f"{EDGE}/ab.gif"),
    ("/a b.gif", None, f"{EDGE}/a%20b.gif"),
    ("/\u00e9t\u00e9.gif", None, f"{EDGE}/%C3%A9t%C3%A9.gif"),
    ("/a.gif?v=1&w=2", None, f"{EDGE}/a.gif?v=1&w=2"),
    ("/sprite.svg#icon", None, f"{EDGE}/sprite.svg#icon"),
    ("/", None, f"{EDGE}/"),
    ("http://www.demo.example", None, f"{EDGE}/"),
    ("http://www.demo.example:8080/a.gif", None, None),
    ("http://other.example/a.gif", None, None),
    ("http://demo.example/a.gif", None, None),
    ("http://u:p@www.demo.example/a.gif", None, None),
    ("ftp://www.demo.example/a.gif", None, None),
    ("data:image/gif;base64,AAAA", None, None),
    ("javascript:void(0)", None, None),
    ("mailto:x@www.demo.example", None, None),
    ("#top", None, None),
    ("", None, None),
    ("http://[::1/a.gif", None, None),
    ("/search.php", None, None),
    ("/x/y.CGI", None, None),
    ("/cgi-bin/a.gif", None, None),
    ("/img/a.gif?x=1", None, f"{EDGE}/img/a.gif?x=1"),
    ("/img/a.gif", "http://other.example/", None),  # relative to a page elsewhere
    ("/img/a.gif", "https://www.demo.example/", "https://a123.g.akacdn.test/7/123/1d/www.demo.example/img/a.gif"),
]


@pytest.mark.parametrize(("url", "page_url", "want"), URLS, ids=[u[0] or "empty" for u in URLS])
def test_edge_url(shared_net: Network, url: str, page_url: str | None, want: str | None) -> None:
    z = Akamaizer(_customer(shared_net), shared_net.base_domain)
    got, reason = z.edge_url(url, page_url or z.default_page_url())
    assert got == want, reason
    assert (reason == "edge") == (want is not None)
    if got is not None and "/7/123/" in got:
        target = got.split("akacdn.test", 1)[1].partition("#")[0]
        assert arl.parse(target).origin_host == DEMO_HOST


def test_edge_url_cname_forms(shared_net: Network) -> None:
    c = _customer(shared_net, akamaize="cname")
    z = Akamaizer(c, shared_net.base_domain)
    assert z.edge_url("/img/a b.gif?x=1#f", z.default_page_url()) == (
        "http://a123.g.akacdn.test/img/a%20b.gif?x=1#f",
        "edge",
    )
    z = Akamaizer(msgspec.structs.replace(c, edge_hostname="img.demo.example"), shared_net.base_domain)
    assert z.edge_url("/img/a.gif", z.default_page_url())[0] == "http://img.demo.example/img/a.gif"


def test_reasons(shared_net: Network) -> None:
    page = '<img src="/a.php"><img src="http://o.example/x.gif"><script type=module src=/m.js></script>'
    reasons = [r.reason for r in akamaize(page, _customer(shared_net), shared_net.base_domain).rewrites]
    assert reasons == ["dynamic (*.php)", "other host", "CORS request (module script)"]


def test_idempotent(shared_net: Network) -> None:
    for source in ("demo", "quoting", "css", "srcset"):
        page = (GOLDEN / f"{source}.in.html").read_text()
        for changes in ({}, {"akamaize": "cname"}):
            c = _customer(shared_net, **changes)
            once = akamaize(page, c, shared_net.base_domain).html
            assert akamaize(once, c, shared_net.base_domain).html == once


def test_spans_are_the_only_changes(shared_net: Network) -> None:
    page = (GOLDEN / "quoting.in.html").read_text()
    result = akamaize(page, _customer(shared_net), shared_net.base_domain)
    assert result.changed and splice(page, result.rewrites) == result.html
    kept = [r for r in result.rewrites if r.edge_url is None]
    assert all(r.written == "" for r in kept)


# -- properties ------------------------------------------------------------------------

_PIECES = [
    "<img src=", "<IMG SRC=", "<link rel=stylesheet href=", "<script src=", "<source srcset=", "<video poster=",
    "<base href=", "<style>", "</style>", "<script>", "</script>", "<!--", "-->", "<!", "<?", "</", "<", ">", "/>",
    '"', "'", "=", " ", "\n", "&amp;", "&", "&#47;", ";", "url(", ")", "@import ", "/* ", " */", "style=", ",",
    "a.gif", "/img/b.png", "../", "./", "?x=1", "#f", "1x", "2x", "http://other.example/", "//cdn.example/",
    "data:x", "\\", "\u00e9", "\udce9", "<textarea>", "</textarea>", "<plaintext>", "{", "}", "@font-face",
]  # fmt: skip
_pages = st.lists(st.sampled_from(_PIECES), max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(_pages)
def test_no_match_no_change(shared_net: Network, page: str) -> None:
    # relative URLs resolve on another host, absolute ones name other hosts: nothing moves
    result = akamaize(page, _customer(shared_net), shared_net.base_domain, "http://elsewhere.example/")
    assert result.html == page
    assert not result.changed


@settings(max_examples=300, deadline=None)
@given(_pages)
def test_rewrites_stay_in_their_spans(shared_net: Network, page: str) -> None:
    c = _customer(shared_net)
    result = akamaize(page, c, shared_net.base_domain)
    assert splice(page, result.rewrites) == result.html  # the spans are the only changes
    for r in result.changed:
        assert r.edge_url is not None and r.edge_url.startswith("http://a123.g.akacdn.test/7/123/1d/www.demo.example/")
        assert page[r.start : r.end] != r.written
    assert akamaize(result.html, c, shared_net.base_domain).html == result.html  # idempotent


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_handled(shared_net: Network, page: str) -> None:
    akamaize(page, _customer(shared_net), shared_net.base_domain)


# -- config ----------------------------------------------------------------------------


def test_config_defaults(net: Network) -> None:
    (c,) = net.customers
    assert (c.akamaize, c.arl_ttl, c.edge_hostname) == ("arl", "1d", "")
    assert "*.php" in c.dynamic and "/cgi-bin/*" in c.dynamic and "*?*" not in c.dynamic


@pytest.mark.parametrize(
    ("changes", "key", "fragment"),
    [
        ({"akamaize": "rewrite"}, "akamaize", "Invalid enum value"),
        ({"arl_ttl": "1w"}, "arl_ttl", "bad TTL"),
        ({"arl_ttl": "400d"}, "arl_ttl", "out of range"),
        ({"dynamic": ["img/*.gif"]}, "dynamic[0]", "not a path glob"),
        ({"dynamic": ["/a b/*"]}, "dynamic[0]", "not a path glob"),
        ({"dynamic": [""]}, "dynamic[0]", "not a path glob"),
        ({"edge_hostname": "bad_name.example"}, "edge_hostname", "not a valid domain"),
        ({"edge_hostname": "static.other.example"}, "edge_hostname", "neither"),
        ({"edge_hostname": "a123.x.akacdn.test"}, "edge_hostname", "neither"),
    ],
)
def test_config_refuses(devnet_path: Path, changes: dict[str, Any], key: str, fragment: str) -> None:
    _write_customer(devnet_path, changes)
    with pytest.raises(ConfigError) as e:
        load_network(devnet_path)
    assert e.value.key.endswith(key) and fragment in e.value.reason, str(e.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"akamaize": "cname", "edge_hostname": "a123.g.akacdn.test"},
        {"akamaize": "cname", "edge_hostname": "Static.Demo.Example.", "hostnames": [DEMO_HOST, "static.demo.example"]},
        {"arl_ttl": "0", "dynamic": []},
        {"arl_ttl": "3600", "dynamic": ["*?*", "/account/*"]},
    ],
)
def test_config_accepts(devnet_path: Path, changes: dict[str, Any]) -> None:
    _write_customer(devnet_path, changes)
    (c,) = load_network(devnet_path).customers
    assert c.edge_hostname == c.edge_hostname.lower().rstrip(".")


def _write_customer(devnet_path: Path, changes: dict[str, Any]) -> None:
    import tomllib

    path = devnet_path.parent / "customers.toml"
    doc = tomllib.loads(path.read_text())
    doc["customers"][0].update(changes)
    path.write_text(tomli_w.dumps(doc))


# -- CLI -------------------------------------------------------------------------------


def _cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "akacdn", "akamaize", *args], cwd=ROOT, input=stdin, capture_output=True, timeout=60
    )


def test_cli_demo_page(devnet_path: Path) -> None:
    p = _cli("--config", str(devnet_path), "--customer", "demo", stdin=demo_page().encode())
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == (GOLDEN / "demo.out.html").read_text()
    assert p.stderr == b""


def test_cli_page_url_and_verbose(devnet_path: Path) -> None:
    page = b'<img src="a.gif"><img src="/x.php">'
    p = _cli("--config", str(devnet_path), "--customer", "demo", "--page-url", "http://www.demo.example/d/", "-v",
             stdin=page)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout == f'<img src="{EDGE}/d/a.gif"><img src="/x.php">'.encode()
    assert b"kept: dynamic (*.php)" in p.stderr and b"1 of 2 URLs" in p.stderr


def test_cli_keeps_bytes_it_cannot_decode(devnet_path: Path) -> None:
    page = b'<meta charset="iso-8859-1"><p>caf\xe9</p><img src="/caf\xe9.gif">\xff\r\n'
    p = _cli("--config", str(devnet_path), "--customer", "demo", stdin=page)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b'<meta charset="iso-8859-1"><p>caf\xe9</p><img src="' + EDGE.encode() + b'/caf%E9.gif">\xff\r\n'


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--customer", "nobody"], b"no customer 'nobody'"),
        (["--customer", "demo", "--page-url", "http://other.example/"], b"not an http(s) URL on one of"),
        (["--customer", "demo", "--page-url", "ftp://www.demo.example/"], b"not an http(s) URL on one of"),
    ],
)
def test_cli_refuses(devnet_path: Path, args: list[str], message: bytes) -> None:
    p = _cli("--config", str(devnet_path), *args, stdin=b"<img src=/a.gif>")
    assert p.returncode == 2
    assert message in p.stderr and p.stdout == b""
