"""Shared fate: a referral's LLNSes span regions and networks (ISPs), and rendezvous hashing
moves only the serials of a server that is gone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.mapping.assign import nameservers_for_client, servers_for_serial
from akacdn.mapping.maps import NameServer, Server

CLIENTS = ("192.0.2", "198.51.100", "203.0.113", "2001:db8::", "10.1.2")


def deployment(per_region: list[int]) -> list[NameServer]:
    return [NameServer(f"r{r}-ns{i}", f"r{r}", f"10.{r}.0.{i}") for r, n in enumerate(per_region) for i in range(n)]


@st.composite
def deployments(draw: st.DrawFn) -> tuple[list[NameServer], dict[str, str]]:
    per_region = draw(st.lists(st.integers(1, 4), min_size=1, max_size=10))
    pool = draw(st.lists(st.sampled_from(["isp-a", "isp-b", "isp-c", "isp-d", ""]), min_size=1, max_size=5))
    networks = {f"r{r}": draw(st.sampled_from(pool)) for r in range(len(per_region))}
    return deployment(per_region), networks


@settings(max_examples=300, deadline=None)
@given(deployments(), st.sampled_from(CLIENTS), st.data())
def test_eight_llns_over_three_regions_and_two_networks_when_present(
    case: tuple[list[NameServer], dict[str, str]], client: str, data: st.DataObject
) -> None:
    nss, networks = case
    regions = sorted({ns.region for ns in nss})
    preferred = data.draw(st.sampled_from([None, *regions]))
    got = nameservers_for_client(client, nss, preferred=preferred, networks=networks)
    assert len(got) == 8 and set(got) <= set(nss)
    chosen = {ns.region for ns in got}
    assert len(chosen) >= min(3, len(regions))
    known = {networks[r] for r in regions} - {""}
    assert len({networks[r] for r in chosen} - {""}) >= min(2, len(known))
    if preferred is not None:
        assert got[0].region == preferred
    assert nameservers_for_client(client, list(reversed(nss)), preferred=preferred, networks=networks) == got


def test_one_network_still_three_regions() -> None:
    nss = deployment([2] * 6)
    networks = {f"r{r}": "isp-a" for r in range(6)}
    for client in CLIENTS:
        got = nameservers_for_client(client, nss, networks=networks)
        assert len(got) == 8 and len({ns.region for ns in got}) == 3
        assert got == nameservers_for_client(client, nss)  # nothing to spread over: the plain choice


def test_a_second_network_replaces_a_same_network_region() -> None:
    nss = deployment([2] * 6)
    networks = {"r0": "isp-b", **{f"r{r}": "isp-a" for r in range(1, 6)}}
    for client in CLIENTS:
        plain = [r for r in dict.fromkeys(ns.region for ns in nameservers_for_client(client, nss))]
        got = [r for r in dict.fromkeys(ns.region for ns in nameservers_for_client(client, nss, networks=networks))]
        assert len(got) == 3 and "r0" in got  # the only region of isp-b is always among them
        if "r0" not in plain:  # the best isp-a regions keep their rank order
            assert got[0] == plain[0] and got[1] == "r0" and got[2] == plain[1]


def test_preferred_stays_first_even_when_its_network_is_unknown() -> None:
    nss = deployment([1] * 5)
    networks = {"r0": "", "r1": "isp-a", "r2": "isp-a", "r3": "isp-b", "r4": "isp-b"}
    for client in CLIENTS:
        got = nameservers_for_client(client, nss, preferred="r0", networks=networks)
        regions = list(dict.fromkeys(ns.region for ns in got))
        assert regions[0] == "r0" and len(regions) == 3
        assert {networks[r] for r in regions[1:]} == {"isp-a", "isp-b"}


def test_more_networks_than_regions_takes_more_regions() -> None:
    nss = deployment([1] * 6)
    networks = {f"r{r}": f"isp-{r % 3}" for r in range(6)}
    got = nameservers_for_client("192.0.2", nss, regions=2, networks=networks, min_networks=3)
    regions = {ns.region for ns in got}
    assert len(regions) == 3 and len({networks[r] for r in regions}) == 3


def test_without_networks_behaviour_is_unchanged() -> None:
    nss = deployment([2] * 6)
    for client in CLIENTS:
        assert len({ns.region for ns in nameservers_for_client(client, nss)}) == 3


# --- rendezvous: a dead server moves only its own serials ------------------------------------


@pytest.mark.parametrize("n", [10, 50])
def test_removing_one_server_moves_only_its_serials(n: int) -> None:
    servers = [Server(f"s{i}", "r1", f"10.0.{i // 250}.{i % 250}", 100) for i in range(n)]
    dead = servers[n // 3]
    alive = [s for s in servers if s != dead]
    serials = range(1, 10_001)
    moved = 0
    for serial in serials:
        before = servers_for_serial(serial, servers)
        after = servers_for_serial(serial, alive)
        if set(after) != set(before):
            moved += 1
            assert dead in before, f"serial {serial} moved without having the dead server"
            assert len(set(before) & set(after)) == 1  # the survivor stays
        else:
            assert dead not in before and after == before
    fraction = moved / len(serials)
    assert abs(fraction - 2 / n) <= 0.25 * (2 / n), fraction
