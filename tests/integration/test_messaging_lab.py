"""The messaging network in a namespace lab (198.18.0.0/15): a publisher, 3 relays in 3
regions, 10 subscribers, each its own network namespace, real `akacdn relay` processes
and the daemons' messaging client in the others (`bench.messaging.lab`), with random
loss on every relay link injected with nftables (`numgen random`).

Needs root (network namespaces, nftables); runs here and in CI."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from akacdn.config import load_network
from akacdn.messaging.client import relays
from akacdn.messaging.envelope import Keyring
from akacdn.messaging.paths import choose
from bench.messaging.lab import RELAYS, MessagingLab, read_dump, tools_missing
from bench.messaging.network import PUBLISHER

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, nftables)")

COUNT, RATE, BIG_EVERY = 1000, 100, 50  # 20 messages of 200 KB (171 chunks each) among 1,000


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[MessagingLab]:
    if tools_missing():
        pytest.fail(f"missing {tools_missing()}: run `make test`, which installs them")
    lab = MessagingLab(tmp_path / "lab", subscribers=10)
    try:
        lab.build()
        yield lab
    finally:
        lab.stop_all()


def test_every_subscriber_gets_999_in_1000_at_10_percent_loss_per_link_with_a_relay_killed(lab: MessagingLab) -> None:
    """k = 2, NACK on; 10 % of the datagrams into and out of every relay are dropped (each
    path publisher -> relay -> subscriber loses about 19 %); one of the publisher's two
    relays is stopped mid-stream. Then forged and replayed datagrams are injected."""
    config = lab.configure(paths=2, nack=True)
    lab.start_relays()
    lab.start_subscribers()
    lab.wait_subscribed()
    lab.set_loss(10)
    net = load_network(config)
    on_path = choose(relays(net), {r.id for r in relays(net)}, PUBLISHER, "", 2)
    victim = on_path[0].id
    dump = lab.dir / "first.bin"
    lab.publish(COUNT, RATE, big_every=BIG_EVERY, kill_relay=(victim, COUNT / RATE / 2), dump=dump,
                dump_index=BIG_EVERY - 1, linger=5)  # fmt: skip
    assert lab.dropped() > 1000, "the loss rules dropped datagrams"
    # forgeries and replays, after the stream: the datagrams of the first 200 KB message
    # again, and the same under a key nobody has, to every live relay and every subscriber
    captured = read_dump(dump)
    assert len(captured) == 171
    ring = Keyring(net.message_keys, net.message_key_id)
    forged = Keyring({net.message_key_id: os.urandom(32)}, net.message_key_id)
    fakes = [forged.seal(ring.open(d)) for d in captured]
    live = [h for h, (rid, _) in RELAYS.items() if rid != victim]
    targets = [lab.ip(h) for h in live] + [lab.ip(s) for s in lab.subs]
    lab.set_loss(0)
    lab.inject(captured + fakes, targets)

    def refused() -> bool:
        # relays: forgeries fail the tag; replays come from an address not the publisher's
        relays_ok = all(
            lab.metric(h, lab.ip(h), "akacdn_relay_dropped_total", reason="bad_mac") >= len(fakes)
            and lab.metric(h, lab.ip(h), "akacdn_relay_dropped_total", reason="wrong_source") >= len(captured)
            for h in live
        )
        # subscribers hear only relays: both kinds are refused before anything else
        subs_ok = all(
            lab.metric(s, lab.ip(s), "akacdn_messages_dropped_total", reason="not_from_relay") >= 2 * len(captured)
            for s in lab.subs
        )
        return relays_ok and subs_ok

    deadline = time.monotonic() + 30
    while not refused():
        assert time.monotonic() < deadline, "forged and replayed datagrams were not all counted"
        time.sleep(0.5)
    lab.stop_subscribers()
    results = lab.results(COUNT)
    for r in results:
        assert r.damaged == 0 and r.twice == 0, r
        assert r.received >= 0.999 * COUNT, f"{r.name} received {r.received} of {COUNT}"
