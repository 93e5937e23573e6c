"""Map building decisions: liveness, build (spill, never empty), versioning, signatures, hashing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.config import Network
from akacdn.mapping.assign import client_bucket, nameservers_for_client, servers_for_serial
from akacdn.mapping.builder import Liveness, MapBook, build
from akacdn.mapping.maps import LowMap, MapError, NameServer, Server, SignedMap, TopMap, newer, sign, verify
from akacdn.mapping.messages import Heartbeat, RegionReport

# --- helpers ---------------------------------------------------------------------------------


def hb(net: Network, machine: str, healthy: bool = True) -> Heartbeat:
    m = net.machine(machine)
    return Heartbeat(m.id, m.role, m.region, healthy)


def live_set(net: Network, down: tuple[str, ...] = ()) -> dict[str, Heartbeat]:
    return {m.id: hb(net, m.id) for m in net.machines if m.id not in down}


def lows_by_region(lows: list[LowMap]) -> dict[str, list[str]]:
    return {rs.region: [s.machine for s in rs.servers] for low in lows for rs in low.regions}


def private_key(net: Network) -> Ed25519PrivateKey:
    raw = Path(net.machine("mc1").key_file).read_text().strip()
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(raw))


# --- Liveness --------------------------------------------------------------------------------


def test_live_within_dead_after_and_dead_beyond(net: Network) -> None:
    lv = Liveness(net)
    assert lv.heard("r1-e1", hb(net, "r1-e1"), now=100.0) is None
    assert set(lv.live(100.0 + 2.9, dead_after=3.0)) == {"r1-e1"}
    assert lv.live(100.0 + 3.1, dead_after=3.0) == {}
    # a later heartbeat revives it
    lv.heard("r1-e1", hb(net, "r1-e1"), now=110.0)
    assert set(lv.live(111.0, dead_after=3.0)) == {"r1-e1"}


def test_a_region_agents_dead_report_takes_a_peer_out_until_it_beats_again(net: Network) -> None:
    lv = Liveness(net)
    for m in ("r1-e1", "r1-e2", "r2-e1"):
        lv.heard(m, hb(net, m), now=10.0)
    report = RegionReport("r1-e2", "r1", alive=["r1-e2"], dead=["r1-e1", "r2-e1", "r1-llns"], holds=[])
    assert lv.reported("r1-e2/agent", report, now=10.5) == ["r1-e1"], "only its own region and role"
    assert set(lv.live(10.5, dead_after=3.0)) == {"r1-e2", "r2-e1"}
    lv.heard("r1-e1", hb(net, "r1-e1"), now=11.0)  # it beats again: back
    assert set(lv.live(11.0, dead_after=3.0)) == {"r1-e1", "r1-e2", "r2-e1"}


def test_an_agent_still_listing_a_restarted_peer_dead_does_not_take_it_out_again(net: Network) -> None:
    # the agent lists a dead peer in every report until the peer has proved itself to it;
    # the restarted daemon beats meanwhile: only the first report of the death counts
    lv = Liveness(net)
    lv.heard("r1-e1", hb(net, "r1-e1"), now=10.0)
    report = RegionReport("r1-e2", "r1", alive=["r1-e2"], dead=["r1-e1"], holds=[])
    assert lv.reported("r1-e2/agent", report, now=10.5) == ["r1-e1"]
    lv.heard("r1-e1", hb(net, "r1-e1"), now=11.0)  # restarted
    assert lv.reported("r1-e2/agent", report, now=11.5) == []  # the same death, listed again
    assert "r1-e1" in lv.live(11.5, dead_after=3.0)
    cleared = RegionReport("r1-e2", "r1", alive=["r1-e1", "r1-e2"], dead=[], holds=[])
    assert lv.reported("r1-e2/agent", cleared, now=12.0) == []
    assert lv.reported("r1-e2/agent", report, now=13.0) == ["r1-e1"]  # a new death counts


def test_region_reports_are_believed_only_from_the_machines_own_agent(net: Network) -> None:
    lv = Liveness(net)
    lv.heard("r1-e1", hb(net, "r1-e1"), now=10.0)
    report = RegionReport("r1-e2", "r1", alive=[], dead=["r1-e1"], holds=[])
    assert lv.reported("r1-e2", report, now=10.5) == []  # the edge daemon, not its agent
    assert lv.reported("r1-e3/agent", report, now=10.5) == []  # another machine's agent
    assert lv.reported("ghost/agent", RegionReport("ghost", "r1", [], ["r1-e1"], []), now=10.5) == []
    assert set(lv.live(10.5, dead_after=3.0)) == {"r1-e1"}


def test_unhealthy_is_not_live_even_when_heard(net: Network) -> None:
    lv = Liveness(net)
    lv.heard("r1-e1", hb(net, "r1-e1"), now=1.0)
    lv.heard("r1-e2", hb(net, "r1-e2", healthy=False), now=1.0)
    assert set(lv.live(1.0, 3.0)) == {"r1-e1"}
    lv.heard("r1-e1", hb(net, "r1-e1", healthy=False), now=2.0)  # says it is sick: out at once
    assert lv.live(2.0, 3.0) == {}


@pytest.mark.parametrize(
    ("sender", "beat", "reason"),
    [
        ("ghost", Heartbeat("ghost", "edge", "r1"), "unknown_machine"),
        ("r1-e2", Heartbeat("r1-e1", "edge", "r1"), "unknown_machine"),  # speaks for another machine
        ("r1-e1", Heartbeat("r1-e1", "llns", "r1"), "role_mismatch"),
        ("r1-e1", Heartbeat("r1-e1", "edge", "r2"), "role_mismatch"),
        ("tlns1", Heartbeat("tlns1", "tlns", "r1"), "role_mismatch"),
    ],
    ids=["unknown", "sender-mismatch", "wrong-role", "wrong-region", "tlns-claims-region"],
)
def test_liveness_refuses_heartbeats_that_do_not_match_config(
    net: Network, sender: str, beat: Heartbeat, reason: str
) -> None:
    lv = Liveness(net)
    assert lv.heard(sender, beat, now=1.0) == reason
    assert lv.live(1.0, 3.0) == {}  # and nothing was recorded


# --- build -----------------------------------------------------------------------------------


def test_all_live_top_lists_every_llns_and_low_map_every_regions_edges(net: Network) -> None:
    top, lows = build(net, live_set(net), made_at=5.0)
    assert top is not None and top.version == (0, 0) and top.made_at == 5.0
    assert [(ns.machine, ns.region, ns.address) for ns in top.nameservers] == [
        ("r1-llns", "r1", "127.0.1.1"),
        ("r2-llns", "r2", "127.0.2.1"),
        ("r3-llns", "r3", "127.0.3.1"),
    ]
    assert len(lows) == 1 and lows[0].key == "low"
    assert lows_by_region(lows) == {r: [f"{r}-e1", f"{r}-e2", f"{r}-e3"] for r in ("r1", "r2", "r3")}
    assert all(rs.serving for rs in lows[0].regions)
    assert all(s.capacity == 100 for rs in lows[0].regions for s in rs.servers)


def test_maps_carry_the_client_routes(net: Network) -> None:
    top, lows = build(net, live_set(net), 0.0)
    routes = sorted((c.prefix, c.region) for c in net.client_networks if c.region)  # (measured ones: no static)
    assert routes and [(c.prefix, c.region) for c in top.clients] == routes  # type: ignore[union-attr]
    # the low map carries them ranked: the static region, then its fallbacks
    fallback = {r.id: r.fallback for r in net.regions}
    assert [(r.prefix, r.regions) for r in lows[0].routes] == [(p, (r, *fallback[r])) for p, r in routes]
    assert lows[0].defaults == {r.id: (r.id, *r.fallback) for r in net.regions}


def test_top_map_lists_only_live_llns(net: Network) -> None:
    top, _ = build(net, live_set(net, down=("r2-llns",)), 0.0)
    assert top is not None
    assert [ns.machine for ns in top.nameservers] == ["r1-llns", "r3-llns"]


def test_unhealthy_or_silent_machines_are_left_out_via_liveness(net: Network) -> None:
    lv = Liveness(net)
    for m in net.machines:
        lv.heard(m.id, hb(net, m.id, healthy=m.id != "r1-e2"), now=0.0 if m.id != "r3-e1" else -10.0)
    _, lows = build(net, lv.live(0.0, 3.0), 0.0)
    got = lows_by_region(lows)
    assert got["r1"] == ["r1-e1", "r1-e3"] and got["r3"] == ["r3-e2", "r3-e3"]


@pytest.mark.parametrize(
    ("down", "serving"),
    [
        (("r2-e2", "r2-e3"), {"r1": True, "r2": False, "r3": True}),  # one edge left: not serving
        (("r2-e1", "r2-e2", "r2-e3"), {"r1": True, "r2": False, "r3": True}),
        (("r2-e3",), {"r1": True, "r2": True, "r3": True}),  # two live edges are enough
    ],
    ids=["one-left", "none-left", "two-left"],
)
def test_region_with_fewer_than_two_live_edges_is_not_serving(
    net: Network, down: tuple[str, ...], serving: dict[str, bool]
) -> None:
    _, lows = build(net, live_set(net, down), 0.0)
    assert {rs.region: rs.serving for rs in lows[0].regions} == serving
    # its live edges stay listed: they are the last resort when no region is serving
    assert lows_by_region(lows)["r2"] == [f"r2-e{i}" for i in (1, 2, 3) if f"r2-e{i}" not in down]


def test_nothing_live_gives_no_maps_never_empty_ones(net: Network) -> None:
    assert build(net, {}, 0.0) == (None, [])


def test_llns_without_edges_gives_top_only_and_edges_without_llns_gives_low_only(net: Network) -> None:
    edges = tuple(m.id for m in net.by_role("edge"))
    llnses = tuple(m.id for m in net.by_role("llns"))
    top, lows = build(net, live_set(net, down=edges), 0.0)
    assert top is not None and lows == []
    top, lows = build(net, live_set(net, down=llnses), 0.0)
    assert top is None and len(lows) == 1


_ALL = [f"r{r}-e{i}" for r in (1, 2, 3) for i in (1, 2, 3)] + [f"r{r}-llns" for r in (1, 2, 3)]


@settings(max_examples=200, deadline=None)
@given(live_ids=st.sets(st.sampled_from(_ALL)))
def test_build_never_produces_an_empty_map(shared_net: Network, live_ids: set[str]) -> None:
    net = shared_net
    top, lows = build(net, {m: hb(net, m) for m in live_ids}, 0.0)
    live_llns = {m for m in live_ids if m.endswith("llns")}
    live_edges = {m for m in live_ids if not m.endswith("llns")}
    assert (top is None) == (not live_llns)
    serving = {r for r in ("r1", "r2", "r3") if sum(m.startswith(r + "-e") for m in live_edges) >= 2}
    in_serving = {m for m in live_llns if m.split("-")[0] in serving}
    if top is not None:  # the LLNSes of serving regions; all live ones if none of those lives
        assert {ns.machine for ns in top.nameservers} == (in_serving or live_llns)
    assert (lows == []) == (not live_edges)
    for low in lows:
        for rs in low.regions:
            own = sorted(m for m in live_edges if m.startswith(rs.region + "-"))
            assert [s.machine for s in rs.servers] == own  # a region lists exactly its live edges
            assert rs.serving == (len(own) >= 2)


# --- MapBook ---------------------------------------------------------------------------------


def _fresh(net: Network, made_at: float, down: tuple[str, ...] = ()) -> list[TopMap | LowMap]:
    top, lows = build(net, live_set(net, down), made_at)
    return ([top] if top else []) + list(lows)


def test_mapbook_versions_each_new_map_in_turn(net: Network) -> None:
    book = MapBook(term=7)
    changed = book.update(_fresh(net, 1.0))
    assert [(m.key, m.version) for m in changed] == [("top", (7, 1)), ("low", (7, 2))]
    assert book.maps["low"].version == (7, 2)


def test_mapbook_same_content_keeps_version(net: Network) -> None:
    book = MapBook(term=1)
    book.update(_fresh(net, 1.0))
    before = {k: m.version for k, m in book.maps.items()}
    assert book.update(_fresh(net, 2.0)) == []  # only made_at differs
    assert {k: m.version for k, m in book.maps.items()} == before
    assert book.maps["top"].made_at == 1.0


def test_mapbook_changed_content_takes_next_sequence(net: Network) -> None:
    book = MapBook(term=3)
    book.update(_fresh(net, 1.0))
    changed = book.update(_fresh(net, 2.0, down=("r1-e1",)))
    assert [(m.key, m.version) for m in changed] == [("low", (3, 3))]
    assert lows_by_region([book.maps["low"]])["r1"] == ["r1-e2", "r1-e3"]  # type: ignore[list-item]
    changed = book.update(_fresh(net, 3.0))  # and back
    assert [(m.key, m.version) for m in changed] == [("low", (3, 4))]
    assert book.maps["top"].version == (3, 1)


def test_mapbook_keeps_last_map_when_a_map_is_not_built(net: Network) -> None:
    book = MapBook(term=1)
    book.update(_fresh(net, 1.0))
    edges = tuple(m.id for m in net.by_role("edge"))
    assert book.update(_fresh(net, 2.0, down=edges)) == []
    assert len(lows_by_region([book.maps["low"]])["r1"]) == 3  # type: ignore[list-item]


def test_new_term_produces_newer_versions(net: Network) -> None:
    old = MapBook(term=1)
    for i in range(5):  # many sequence numbers in the old term
        old.update(_fresh(net, float(i), down=(f"r1-e{1 + i % 2}",)))
    new = MapBook(term=2)
    for m in new.update(_fresh(net, 9.0)):
        assert newer(m.version, old.maps[m.key].version)
        assert not newer(old.maps[m.key].version, m.version)


# --- sign / verify / newer -------------------------------------------------------------------


@pytest.fixture
def signed_low(net: Network) -> tuple[dict[str, bytes], bytes, LowMap]:
    book = MapBook(term=4)
    book.update(_fresh(net, 1.0))
    low = book.maps["low"]
    assert isinstance(low, LowMap)
    return net.mapper_keys(), sign(private_key(net), "mc1", low), low


def test_good_map_verifies(signed_low: tuple[dict[str, bytes], bytes, LowMap]) -> None:
    keys, data, low = signed_low
    assert verify(keys, data) == low


def test_top_map_round_trips(net: Network) -> None:
    top, _ = build(net, live_set(net), 1.0)
    assert top is not None
    assert verify(net.mapper_keys(), sign(private_key(net), "mc1", top)) == top


def _reseal(data: bytes, **change: object) -> bytes:
    sm = msgspec.msgpack.decode(data, type=SignedMap)
    return msgspec.msgpack.encode(msgspec.structs.replace(sm, **change))


def test_tampered_body_is_refused(signed_low: tuple[dict[str, bytes], bytes, LowMap]) -> None:
    keys, data, _ = signed_low
    sm = msgspec.msgpack.decode(data, type=SignedMap)
    body = sm.body.replace(b"127.0.2.11", b"6.6.6.6.666")
    assert body != sm.body
    with pytest.raises(MapError) as got:
        verify(keys, _reseal(data, body=body))
    assert got.value.reason == "bad_signature"


def test_tampered_signature_is_refused(signed_low: tuple[dict[str, bytes], bytes, LowMap]) -> None:
    keys, data, _ = signed_low
    sm = msgspec.msgpack.decode(data, type=SignedMap)
    sig = bytes([sm.signature[0] ^ 1]) + sm.signature[1:]
    with pytest.raises(MapError) as got:
        verify(keys, _reseal(data, signature=sig))
    assert got.value.reason == "bad_signature"


def test_other_key_under_known_signer_is_refused(signed_low: tuple[dict[str, bytes], bytes, LowMap]) -> None:
    keys, _, low = signed_low
    forged = sign(Ed25519PrivateKey.generate(), "mc1", low)
    with pytest.raises(MapError) as got:
        verify(keys, forged)
    assert got.value.reason == "bad_signature"


def test_unknown_signer_is_refused(signed_low: tuple[dict[str, bytes], bytes, LowMap]) -> None:
    keys, data, _ = signed_low
    with pytest.raises(MapError) as got:
        verify(keys, _reseal(data, signer="mc9"))
    assert got.value.reason == "unknown_signer"
    with pytest.raises(MapError) as got:
        verify({}, data)
    assert got.value.reason == "unknown_signer"


@pytest.mark.parametrize(
    "data", [b"", b"\x00", b"garbage!", b"\x93\x01\x02\x03", msgspec.msgpack.encode(["mc1", "x", 1])]
)
def test_garbage_is_malformed(net: Network, data: bytes) -> None:
    with pytest.raises(MapError) as got:
        verify(net.mapper_keys(), data)
    assert got.value.reason == "malformed"


def test_signed_non_map_body_is_malformed_body(net: Network) -> None:
    body = msgspec.msgpack.encode({"type": "side", "x": 1})
    data = msgspec.msgpack.encode(SignedMap("mc1", body, private_key(net).sign(body)))
    with pytest.raises(MapError) as got:
        verify(net.mapper_keys(), data)
    assert got.value.reason == "malformed_body"


@pytest.mark.parametrize(
    ("new", "current", "expected"),
    [
        ((1, 1), None, True),
        ((1, 3), (1, 2), True),
        ((2, 1), (1, 99), True),
        ((1, 2), (1, 2), False),
        ((1, 1), (1, 2), False),
        ((1, 99), (2, 1), False),
        ([1, 3], [1, 2], True),  # versions that came through msgpack as lists
    ],
)
def test_newer(new: tuple[int, int], current: tuple[int, int] | None, expected: bool) -> None:
    assert newer(new, current) is expected


# --- assign: servers for a serial ------------------------------------------------------------


def _servers(n: int, capacity: int = 100) -> list[Server]:
    return [Server(f"s{i}", "r1", f"10.0.0.{i}", capacity) for i in range(n)]


def test_servers_for_serial_is_stable_and_two_distinct() -> None:
    servers = _servers(6)
    for serial in range(1, 200):
        got = servers_for_serial(serial, servers)
        assert len(got) == 2 and got[0] != got[1]
        assert servers_for_serial(serial, list(reversed(servers))) == got  # input order does not matter
    assert servers_for_serial(5, servers[:1]) == servers[:1]
    assert servers_for_serial(5, []) == []


def test_servers_spread_over_serials() -> None:
    servers = _servers(6)
    counts = Counter(s.machine for serial in range(1, 601) for s in servers_for_serial(serial, servers))
    assert set(counts) == {s.machine for s in servers}  # no server holds every customer, each holds some
    assert max(counts.values()) < 600


@settings(max_examples=300)
@given(serial=st.integers(1, 999999), n=st.integers(3, 12), data=st.data())
def test_removing_servers_moves_only_their_serials(serial: int, n: int, data: st.DataObject) -> None:
    servers = _servers(n)
    chosen = servers_for_serial(serial, servers)
    others = [s for s in servers if s not in chosen]
    # removing a server not chosen changes nothing
    gone = data.draw(st.sampled_from(others))
    assert servers_for_serial(serial, [s for s in servers if s != gone]) == chosen
    # removing one chosen server keeps the other
    lost = data.draw(st.sampled_from(chosen))
    kept = next(s for s in chosen if s != lost)
    after = servers_for_serial(serial, [s for s in servers if s != lost])
    assert kept in after and lost not in after and len(after) == 2


def test_capacity_weighting_shifts_share() -> None:
    servers = [
        Server("small1", "r1", "10.0.0.1", 100),
        Server("small2", "r1", "10.0.0.2", 100),
        Server("big", "r1", "10.0.0.3", 200),
    ]
    first = Counter(servers_for_serial(serial, servers, n=1)[0].machine for serial in range(1, 4001))
    # expected shares 1/4, 1/4, 1/2 of 4000; the bounds are generous (deterministic hashing)
    assert 1700 < first["big"] < 2300
    assert 800 < first["small1"] < 1200 and 800 < first["small2"] < 1200
    equal = Counter(servers_for_serial(s, _servers(3), n=1)[0].machine for s in range(1, 4001))
    assert all(1100 < c < 1560 for c in equal.values())


# --- assign: nameservers for a resolver ------------------------------------------------------


def _nameservers(regions: int, per_region: int) -> list[NameServer]:
    return [NameServer(f"r{r}-ns{i}", f"r{r}", f"10.{r}.0.{i}") for r in range(regions) for i in range(per_region)]


@pytest.mark.parametrize(("regions", "per_region"), [(1, 1), (2, 1), (3, 1), (5, 2), (10, 4)])
def test_nameservers_for_client_gives_8_from_at_most_3_regions(regions: int, per_region: int) -> None:
    nss = _nameservers(regions, per_region)
    for client in ("192.0.2", "198.51.100", "203.0.113", "2001:db8::"):
        got = nameservers_for_client(client, nss)
        assert len(got) == 8 and set(got) <= set(nss)
        assert len({ns.region for ns in got}) == min(3, regions)
        assert nameservers_for_client(client, list(reversed(nss))) == got  # deterministic


def test_nameservers_for_client_differs_between_clients() -> None:
    nss = _nameservers(10, 2)
    answers = {tuple(nameservers_for_client(f"10.{i}.0", nss)) for i in range(50)}
    assert len(answers) > 10  # resolvers are spread over regions, not all sent to one place


def test_nameservers_for_client_with_none_is_empty() -> None:
    assert nameservers_for_client("192.0.2", []) == []


@pytest.mark.parametrize(
    ("address", "bucket"),
    [
        ("192.0.2.1", "192.0.2"),
        ("192.0.2.254", "192.0.2"),
        ("198.51.100.7", "198.51.100"),
        ("2001:db8:1234:5678::1", "2001:db8:1234:5600::"),
        ("2001:db8:1234:56ff:ffff::1", "2001:db8:1234:5600::"),
        ("2001:db8:1234:5700::1", "2001:db8:1234:5700::"),
    ],
)
def test_client_bucket(address: str, bucket: str) -> None:
    assert client_bucket(address) == bucket


def test_same_bucket_same_nameservers() -> None:
    nss = _nameservers(6, 2)
    a = nameservers_for_client(client_bucket("192.0.2.1"), nss)
    assert nameservers_for_client(client_bucket("192.0.2.200"), nss) == a
    v6 = nameservers_for_client(client_bucket("2001:db8:0:1::1"), nss)
    assert nameservers_for_client(client_bucket("2001:db8:0:ff::2"), nss) == v6


def test_next_expiry_is_the_first_live_machines_deadline(net: Network) -> None:
    lv = Liveness(net)
    lv.heard("r1-e1", hb(net, "r1-e1"), 10.0)
    lv.heard("r1-e2", hb(net, "r1-e2"), 11.0)
    assert lv.next_expiry({"r1-e1", "r1-e2"}, 3.0) == 13.0  # (even once past: the build is due)
    assert lv.next_expiry({"r1-e2"}, 3.0) == 14.0  # r1-e1 left the live set at the last build
    assert lv.next_expiry(set(), 3.0) is None
