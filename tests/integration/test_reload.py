"""SIGHUP reloads the config atomically; a bad file is refused and the old one kept."""

from __future__ import annotations

import json
import signal

from akacdn.devnet.network import BASE_DOMAIN
from akacdn.devnet.supervisor import Devnet

from .conftest import curl, dig, wait_for

NEW_CUSTOMER = """
[[customers]]
name = "news"
serial = 456
hostnames = ["www.news.example"]
origin = "http://{origin}:{port}"
default_ttl = 60
"""


def events(dn: Devnet, machine: str, name: str) -> list[dict]:
    return [e for e in json.loads(dn.management(machine, "/events")[1]) if e["event"] == name]


def test_sighup_adds_a_customer_and_refuses_a_bad_file(devnet: Devnet) -> None:
    lay = devnet.layout
    llns, edge = lay.llns(1), lay.edge(1, 1)
    name = f"a456.g.{BASE_DOMAIN}"
    assert dig(llns, lay.dns_port, name).status == "NXDOMAIN"
    assert curl(f"http://{edge}:{lay.http_port}/", "-H", "Host: www.news.example")[0] == 421

    customers = devnet.dir / "customers.toml"
    good = customers.read_text()
    customers.write_text(good + NEW_CUSTOMER.format(origin=lay.origin, port=lay.http_port))
    for m in ("r1-llns", "r1-e1"):
        devnet.signal(m, signal.SIGHUP)
        wait_for(lambda m=m: events(devnet, m, "config_reloaded"), 10, f"{m} to reload")

    d = dig(llns, lay.dns_port, name)
    assert d.status == "NOERROR" and len(d.addresses()) == 2
    status, headers, _ = curl(f"http://{edge}:{lay.http_port}/", "-H", "Host: www.news.example")
    assert status == 200 and headers["x-cache"] == "MISS"

    customers.write_text(good + "[[customers]]\nname = 'BAD NAME'\n")
    for m in ("r1-llns", "r1-e1"):
        devnet.signal(m, signal.SIGHUP)
        refused = wait_for(lambda m=m: events(devnet, m, "config_refused"), 10, f"{m} to refuse the file")
        assert refused[0]["key"].startswith("$.customers[1]"), refused  # type: ignore[index]
    # the last good config stays in force
    assert dig(llns, lay.dns_port, name).status == "NOERROR"
    assert curl(f"http://{edge}:{lay.http_port}/", "-H", "Host: www.news.example")[0] == 200
    assert devnet.procs["r1-llns"].poll() is None and devnet.procs["r1-e1"].poll() is None
