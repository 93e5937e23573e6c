"""The reliable transport on a devnet: the mapping center serves its signed maps and its
purge journal over HTTP, a relay serves them as a cache (also once the center is gone),
journal pages are authenticated."""

from __future__ import annotations

import urllib.error
import urllib.request

from akacdn.devnet.supervisor import Devnet
from akacdn.mapping.maps import verify
from akacdn.messaging.journal import decode_page
from akacdn.messaging.transport import check_mac


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (loopback)
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_maps_and_journal_from_the_center_and_from_a_relay_also_when_the_center_is_gone(devnet: Devnet) -> None:
    net = devnet.net
    mgmt = net.ports.management
    center = f"http://{net.machine('mc1').address}:{mgmt}/v1/mc1"
    relay = f"http://{net.machine('relay1').address}:{mgmt}/v1/mc1"

    status, headers, body = get(f"{center}/maps/low")
    assert status == 200 and verify(net.mapper_keys(), body).key == "low"
    version = headers["X-Akacdn-Version"]
    assert get(f"{relay}/maps/low")[2] == body  # the relay's copy is the center's signed bytes
    req = urllib.request.Request(f"{relay}/maps/low", headers={"If-None-Match": f'"{version}"'})
    try:
        urllib.request.urlopen(req, timeout=5)  # noqa: S310
        raise AssertionError("expected 304")
    except urllib.error.HTTPError as e:
        assert e.code == 304

    status, headers, page_bytes = get(f"{relay}/journal/purge?since=0")
    assert status == 200 and check_mac(net.message_keys, headers.get("X-Akacdn-Mac"), page_bytes)
    page = decode_page(page_bytes)
    assert not page.gone and page.head == len(page.entries)
    assert not check_mac(net.message_keys, headers.get("X-Akacdn-Mac"), page_bytes + b"x")

    assert get(f"http://{net.machine('relay1').address}:{mgmt}/v1/nosuch/maps/low")[0] == 404
    assert get(f"{center}/journal/purge?since=x")[0] == 400
    assert get(f"{relay}/journal/purge?since=x")[0] == 502  # the center refused it: nothing to cache

    devnet.kill("mc1")
    status, headers, again = get(f"{relay}/maps/low?min=999.1")  # newer than any: the relay must ask
    assert status == 200 and again == body and headers.get("X-Akacdn-Stale") == "1"
