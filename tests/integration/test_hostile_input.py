"""Forged, replayed and malformed input is refused and counted; nothing crashes, nothing is lost."""

from __future__ import annotations

import os
import socket
import struct
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from akacdn.devnet.network import BASE_DOMAIN
from akacdn.devnet.supervisor import Devnet
from akacdn.mapping.maps import LowMap, RegionServers, Server, sign
from akacdn.messaging.envelope import DATA, Datagram, Keyring

from .conftest import dig, wait_for

NAME = f"a123.g.{BASE_DOMAIN}"


def send_udp(addr: str, port: int, data: bytes, source: str = "") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        if source:
            s.bind((source, 0))
        s.sendto(data, (addr, port))


def _ring(devnet: Devnet) -> Keyring:
    return Keyring(devnet.net.message_keys, devnet.net.message_key_id)


def test_relay_drops_forged_and_replayed_messages(devnet: Devnet) -> None:
    relay = devnet.net.machine("relay1")
    port = devnet.net.ports.messaging
    d = Datagram(DATA, "r1-e1", "heartbeat", time.time_ns(), 1, 0, 1, 1, time.time(), b"\x80")
    good = _ring(devnet).seal(d)
    forged = Keyring({devnet.net.message_key_id: os.urandom(32)}, devnet.net.message_key_id).seal(d)

    send_udp(relay.address, port, forged)
    send_udp(relay.address, port, b"\x00" * 10)
    wait_for(lambda: devnet.metric("relay1", "akacdn_relay_dropped_total", reason="bad_mac") >= 1, 5, "bad_mac")
    wait_for(lambda: devnet.metric("relay1", "akacdn_relay_dropped_total", reason="size") >= 1, 5, "size")

    send_udp(relay.address, port, good)  # from elsewhere than r1-e1's address
    wait_for(lambda: devnet.metric("relay1", "akacdn_relay_dropped_total", reason="wrong_source") >= 1, 5, "src")
    source = devnet.net.machine("r1-e1").address
    send_udp(relay.address, port, good, source)
    send_udp(relay.address, port, good, source)  # a replay of a captured datagram
    wait_for(lambda: devnet.metric("relay1", "akacdn_relay_dropped_total", reason="duplicate") >= 1, 5, "dup")
    assert devnet.ready("relay1")


def test_llns_refuses_a_map_with_a_bad_signature(devnet: Devnet) -> None:
    lay = devnet.layout
    before = sorted(dig(lay.llns(1), lay.dns_port, NAME).addresses())
    # a well-formed message (the attacker has the message key) carrying a map signed by the wrong key
    bad = (Server("mc1", "r1", "198.51.100.66", 100),) * 2
    evil = LowMap((10**6, 1), time.time(), (RegionServers("r1", bad, True),))
    body = sign(Ed25519PrivateKey.generate(), "mc1", evil)
    d = Datagram(DATA, "mc1", "map.low", time.time_ns(), 1, 0, 1, len(body), time.time(), body)
    for relay in devnet.net.by_role("relay"):  # from the mapping center's address: it passes the relays
        send_udp(relay.address, devnet.net.ports.messaging, _ring(devnet).seal(d), devnet.net.machine("mc1").address)
    wait_for(
        lambda: devnet.metric("r1-llns", "akacdn_maps_refused_total", reason="bad_signature") >= 1,
        5,
        "the forged map to be refused",
    )
    assert sorted(dig(lay.llns(1), lay.dns_port, NAME).addresses()) == before


def test_nameservers_survive_garbage_over_udp_and_tcp(devnet: Devnet) -> None:
    lay = devnet.layout
    rnd = __import__("random").Random(7)
    for addr in (lay.tlns[0], lay.llns(1)):
        for _ in range(300):
            size = rnd.choice([0, 1, 11, 12, 13, 17, 40, 300, 600])
            send_udp(addr, lay.dns_port, bytes(rnd.getrandbits(8) for _ in range(size)))
        with socket.create_connection((addr, lay.dns_port), timeout=5) as s:
            junk = bytes(rnd.getrandbits(8) for _ in range(50))
            s.sendall(struct.pack("!H", len(junk)) + junk + b"\xff\xff\x01")  # then a lying length
        assert dig(addr, lay.dns_port, NAME, "A", "+norec").status == "NOERROR"
        assert dig(addr, lay.dns_port, NAME, "A", "+norec", "+tcp").status == "NOERROR"
    assert not devnet.exited()
