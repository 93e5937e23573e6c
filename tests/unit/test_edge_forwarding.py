"""How the edge forwards a request to an origin: hop-by-hop fields dropped, Host replaced,
Via / X-Forwarded-* / Forwarded (RFC 7239) added, Max-Forwards counted, customer rules last."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from akacdn.config import HeaderRule
from akacdn.edge.fields import HOP_BY_HOP, split_list
from akacdn.edge.forwarding import (
    EDGE_ADDED_REQUEST,
    apply_rules,
    forwarded_element,
    max_forwards_exhausted,
    origin_request_fields,
    response_fields,
)

VIA = "1.1 r1-e1 (akacdn)"

# RFC 7239 4: forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] ), value = token / quoted-string
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[\t !#-\[\]-~]|\\[\t -~])*"'
_PAIR = rf"{_TOKEN}=(?:{_TOKEN}|{_QUOTED})"
ELEMENT = re.compile(rf"(?:{_PAIR})?(?:;(?:{_PAIR})?)*")
SAFE_VALUE = re.compile(r"[\t -~]*")


def fwd(fields: list[tuple[str, str]], method: str = "GET", **kw: object) -> list[tuple[str, str]]:
    args: dict = dict(
        method=method, client_ip="192.0.2.7", proto="https", client_host="www.example.com", origin_host="origin.test"
    )
    args.update(kw)
    args.setdefault("via", VIA)
    return origin_request_fields(fields, **args)


def values(fields: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in fields if k.lower() == name.lower()]


# -- apply_rules ---------------------------------------------------------------------------


def test_rules_add_set_remove_in_order_case_insensitively() -> None:
    fields = [("X-A", "1"), ("x-a", "2"), ("X-B", "b"), ("Cookie", "c")]
    rules = [
        HeaderRule(action="add", name="X-New", value="n"),
        HeaderRule(action="set", name="X-A", value="only"),
        HeaderRule(action="remove", name="COOKIE"),
        HeaderRule(action="add", name="X-B", value="b2"),
    ]
    assert apply_rules(fields, rules) == [("X-B", "b"), ("X-New", "n"), ("X-A", "only"), ("X-B", "b2")]
    assert fields == [("X-A", "1"), ("x-a", "2"), ("X-B", "b"), ("Cookie", "c")]  # not modified in place


def test_response_fields_are_the_same_rules() -> None:
    rules = [HeaderRule(action="set", name="Cache-Control", value="no-store")]
    got = response_fields([("cache-control", "max-age=60"), ("ETag", '"x"')], rules)
    assert got == [("ETag", '"x"'), ("Cache-Control", "no-store")]


_names = st.sampled_from(["X-A", "x-a", "X-B", "Cookie", "x-b"])
_fields = st.lists(st.tuples(_names, st.text(max_size=5)), max_size=8)
_rules = st.lists(
    st.builds(
        lambda a, n, v: HeaderRule(action=a, name=n, value="" if a == "remove" else v),
        st.sampled_from(["add", "set", "remove"]),
        _names,
        st.text(max_size=5),
    ),
    max_size=6,
)


@given(_fields, _rules)
def test_rules_match_a_reference_model(fields: list[tuple[str, str]], rules: list[HeaderRule]) -> None:
    got = apply_rules(fields, rules)
    model = list(fields)
    for r in rules:
        if r.action in ("set", "remove"):
            model = [(k, v) for k, v in model if k.lower() != r.name.lower()]
        if r.action in ("add", "set"):
            model.append((r.name, r.value))
    assert got == model
    if rules and rules[-1].action == "remove":
        assert not values(got, rules[-1].name)
    if rules and rules[-1].action == "set":
        assert values(got, rules[-1].name) == [rules[-1].value]


# -- forwarded_element ---------------------------------------------------------------------


def test_forwarded_element_ipv4_ipv6_and_host() -> None:
    assert forwarded_element("192.0.2.7", "https", "example.com") == "for=192.0.2.7;proto=https;host=example.com"
    assert forwarded_element("2001:db8::1", "http", None) == 'for="[2001:db8::1]";proto=http'
    assert forwarded_element("[2001:DB8:0::1]", "http", "example.com:8080") == (
        'for="[2001:db8::1]";proto=http;host="example.com:8080"'
    )


def test_forwarded_element_normalises_mapped_and_zoned_addresses() -> None:
    assert forwarded_element("::ffff:192.0.2.7", "http", None) == "for=192.0.2.7;proto=http"
    assert forwarded_element("fe80::1%eth0", "http", None) == 'for="[fe80::1]";proto=http'


def test_forwarded_element_leaves_out_what_it_cannot_write() -> None:
    assert forwarded_element("192.0.2.7", "https", 'evil"host') == "for=192.0.2.7;proto=https"
    assert forwarded_element("192.0.2.7", "https", "a\r\nX-Injected: 1") == "for=192.0.2.7;proto=https"
    assert forwarded_element("192.0.2.7", "https", "h\\x") == "for=192.0.2.7;proto=https"
    assert forwarded_element("192.0.2.7", "ht tp", "ok") == "for=192.0.2.7;host=ok"
    assert forwarded_element("not an ip", "http", None) == "for=unknown;proto=http"
    assert forwarded_element("_hidden", "http", None) == "for=_hidden;proto=http"
    assert forwarded_element("192.0.2.7", "http", "") == "for=192.0.2.7;proto=http"


@given(st.text(max_size=40), st.text(max_size=10), st.none() | st.text(max_size=40))
def test_forwarded_element_is_always_valid_syntax(ip: str, proto: str, host: str | None) -> None:
    element = forwarded_element(ip, proto, host)
    assert ELEMENT.fullmatch(element), element
    assert element.startswith("for=")


# -- origin_request_fields -----------------------------------------------------------------


def test_a_typical_request() -> None:
    client = [
        ("Host", "www.example.com"),
        ("User-Agent", "curl/8"),
        ("Accept", "*/*"),
        ("Connection", "keep-alive"),
        ("Keep-Alive", "timeout=5"),
    ]
    assert fwd(client) == [
        ("Host", "origin.test"),
        ("User-Agent", "curl/8"),
        ("Accept", "*/*"),
        ("Via", VIA),
        ("X-Forwarded-For", "192.0.2.7"),
        ("Forwarded", "for=192.0.2.7;proto=https;host=www.example.com"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "www.example.com"),
    ]


def test_hop_by_hop_and_connection_named_fields_are_dropped() -> None:
    client = [(name.title(), "x") for name in HOP_BY_HOP] + [
        ("Connection", "X-Secret, close"),
        ("x-secret", "s"),
        ("X-Kept", "k"),
        ("Expect", "100-continue"),
    ]
    got = fwd(client, method="POST")
    names = {k.lower() for k, _ in got}
    assert not names & HOP_BY_HOP
    assert "x-secret" not in names and "expect" not in names
    assert values(got, "X-Kept") == ["k"]


def test_connection_can_name_forwarding_fields_too() -> None:
    client = [("Connection", "X-Forwarded-For, Forwarded, Via"), ("X-Forwarded-For", "6.6.6.6"),
              ("Forwarded", "for=6.6.6.6"), ("Via", "1.0 spoof")]  # fmt: skip
    got = fwd(client)
    assert values(got, "X-Forwarded-For") == ["192.0.2.7"]
    assert values(got, "Forwarded") == ["for=192.0.2.7;proto=https;host=www.example.com"]
    assert values(got, "Via") == [VIA]


def test_range_is_dropped_for_get_and_head_only() -> None:
    client = [("Range", "bytes=0-9"), ("If-Range", '"e"')]
    for method in ("GET", "HEAD"):
        got = fwd(client, method=method)
        assert not values(got, "Range") and not values(got, "If-Range")
    got = fwd(client, method="POST")
    assert values(got, "Range") == ["bytes=0-9"] and values(got, "If-Range") == ['"e"']


def test_client_forwarding_chain_is_kept_and_appended_to() -> None:
    client = [
        ("X-Forwarded-For", "203.0.113.1"),
        ("x-forwarded-for", "203.0.113.2, 203.0.113.3"),
        ("Forwarded", "for=203.0.113.1;proto=http"),
        ("Via", "1.0 corp-proxy"),
        ("via", "1.1 other"),
    ]
    got = fwd(client, client_ip="2001:db8::7", proto="http", client_host=None)
    assert values(got, "X-Forwarded-For") == ["203.0.113.1, 203.0.113.2, 203.0.113.3, 2001:db8::7"]
    assert values(got, "Forwarded") == ['for=203.0.113.1;proto=http, for="[2001:db8::7]";proto=http']
    assert values(got, "Via") == ["1.0 corp-proxy", "1.1 other", VIA]
    assert [k for k, _ in got if k.lower() == "via"] == ["Via", "via", "Via"]  # the client's spelling kept
    assert not values(got, "X-Forwarded-Host")


def test_a_malformed_client_chain_cannot_hide_the_edges_entry() -> None:
    client = [("Forwarded", 'for="203.0.113.1'), ("X-Forwarded-For", '"203.0.113.1, 203.0.113.2 , a b,, ')]
    got = fwd(client, proto="http", client_host=None)
    assert values(got, "Forwarded") == ["for=192.0.2.7;proto=http"]  # an unbalanced quote: the chain dropped
    assert values(got, "X-Forwarded-For") == ["unknown, 203.0.113.2, unknown, 192.0.2.7"]
    client = [("Forwarded", 'for="[2001:db8::9]"; proto=https, for=_x')]  # well-formed (OWS around ";")
    got = fwd(client, proto="http", client_host=None)
    assert split_list(values(got, "Forwarded")[0]) == ['for="[2001:db8::9]"; proto=https', "for=_x",
                                                       "for=192.0.2.7;proto=http"]  # fmt: skip


def test_spoofable_proto_and_host_are_the_edges() -> None:
    client = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.test"), ("Host", "evil.test")]
    got = fwd(client, proto="http", client_host="www.example.com")
    assert values(got, "X-Forwarded-Proto") == ["http"]
    assert values(got, "X-Forwarded-Host") == ["www.example.com"]
    assert values(got, "Host") == ["origin.test"]


def test_hostile_client_host_is_not_written() -> None:
    got = fwd([], client_host="a\r\nX-Evil: 1")
    assert not values(got, "X-Forwarded-Host")
    assert values(got, "Forwarded") == ["for=192.0.2.7;proto=https"]


def test_max_forwards_counts_down_for_options_and_trace() -> None:
    for method in ("OPTIONS", "TRACE"):
        got = fwd([("Max-Forwards", "5"), ("max-forwards", "9")], method=method)
        assert [(k, v) for k, v in got if k.lower() == "max-forwards"] == [("Max-Forwards", "4")]
    assert values(fwd([("Max-Forwards", "5")], method="GET"), "Max-Forwards") == ["5"]
    assert values(fwd([("Max-Forwards", "junk")], method="OPTIONS"), "Max-Forwards") == ["junk"]
    assert values(fwd([("Max-Forwards", "1")], method="OPTIONS"), "Max-Forwards") == ["0"]
    huge = "9" * 5000  # int() would refuse this many digits
    assert values(fwd([("Max-Forwards", huge)], method="TRACE"), "Max-Forwards") == [str(10**18 - 1)]


def test_max_forwards_exhausted() -> None:
    assert max_forwards_exhausted("OPTIONS", [("Max-Forwards", "0")])
    assert max_forwards_exhausted("TRACE", [("max-forwards", " 000 ")])
    assert not max_forwards_exhausted("GET", [("Max-Forwards", "0")])
    assert not max_forwards_exhausted("options", [("Max-Forwards", "0")])  # methods are case-sensitive
    assert not max_forwards_exhausted("OPTIONS", [("Max-Forwards", "1")])
    assert not max_forwards_exhausted("OPTIONS", [("Max-Forwards", "-0")])
    assert not max_forwards_exhausted("OPTIONS", [])


def test_rules_come_last() -> None:
    rules = [
        HeaderRule(action="remove", name="forwarded"),
        HeaderRule(action="set", name="host", value="other.origin"),
        HeaderRule(action="add", name="X-Cdn", value="akacdn"),
    ]
    got = fwd([("Accept", "*/*")], rules=rules)
    assert not values(got, "Forwarded")
    assert got[-2:] == [("host", "other.origin"), ("X-Cdn", "akacdn")]
    assert values(got, "Host") == ["other.origin"]


def test_edge_added_names_are_what_it_adds() -> None:
    got = fwd([])
    assert [k for k, _ in got[1:]] == list(EDGE_ADDED_REQUEST)


_hostile_names = st.sampled_from(
    [
        "Host",
        "connection",
        "Connection",
        "X-Forwarded-For",
        "Forwarded",
        "Via",
        "Max-Forwards",
        "Range",
        "TE",
        "X-Forwarded-Proto",
        "Expect",
        "Cookie",
        "X-Any",
    ]  # fmt: skip
) | st.text(max_size=12)


_hostile_values = st.text(max_size=30) | st.text(alphabet='"\\,; =_ab1.:[]\r\n\x00', max_size=30)


@given(
    st.lists(st.tuples(_hostile_names, _hostile_values), max_size=12),
    st.sampled_from(["GET", "HEAD", "POST", "OPTIONS", "TRACE", "get", ""]),
    st.text(max_size=40),
    st.sampled_from(["http", "https"]) | st.text(max_size=8),
    st.none() | st.text(max_size=30),
)
def test_never_raises_and_keeps_its_promises(
    client: list[tuple[str, str]], method: str, ip: str, proto: str, host: str | None
) -> None:
    got = fwd(client, method=method, client_ip=ip, proto=proto, client_host=host)
    assert got[0] == ("Host", "origin.test")
    assert len(values(got, "Host")) == 1
    named = {n.strip().lower() for k, v in client if k.lower() == "connection" for n in v.split(",")}
    for name, _ in got[1:]:
        assert name.lower() not in HOP_BY_HOP | {"expect", "host"}
        assert name.lower() not in named - {"via", "x-forwarded-for", "forwarded", "x-forwarded-proto",
                                            "x-forwarded-host"}  # fmt: skip
    passed = [line for line in got if line in client]
    assert passed == [line for line in client if line in passed]  # order kept, spelling kept
    assert values(got, "Via")[-1] == VIA
    xff = values(got, "X-Forwarded-For")
    assert len(xff) == 1 and SAFE_VALUE.fullmatch(split_list(xff[0])[-1])
    forwarded = values(got, "Forwarded")
    assert len(forwarded) == 1 and ELEMENT.fullmatch(split_list(forwarded[0])[-1])
    for name in ("X-Forwarded-Proto", "X-Forwarded-Host"):
        assert all(SAFE_VALUE.fullmatch(v) for v in values(got, name))
        assert len(values(got, name)) <= 1
    if method in ("GET", "HEAD"):
        assert not values(got, "Range")


@given(
    st.lists(st.tuples(st.sampled_from(["Forwarded", "forwarded", "X-Forwarded-For"]), _hostile_values), max_size=4),
    st.text(max_size=20),
)
def test_the_edges_entry_is_always_the_last_one_an_origin_reads(client: list[tuple[str, str]], ip: str) -> None:
    got = fwd(client, client_ip=ip)
    (forwarded,) = values(got, "Forwarded")
    assert split_list(forwarded)[-1] == forwarded_element(ip, "https", "www.example.com")
    (xff,) = values(got, "X-Forwarded-For")
    items = [i.strip() for i in xff.split(",")]
    assert items[-1] == split_list(xff)[-1] == forwarded_element(ip, "", None).removeprefix("for=").strip('"[]')
