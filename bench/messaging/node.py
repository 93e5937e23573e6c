"""A messaging node for tests and benchmarks: the daemons' own `MessagingClient` in a
process of its own, publishing a schedule of messages or recording what it receives.

    python -m bench.messaging.node sub --config F --machine s1 --out s1.jsonl
    python -m bench.messaging.node pub --config F --machine pub --count 1000 --rate 100 \\
        --size 300 --big-size 204800 --big-every 50 --out pub.jsonl [--dump first.bin]

Bodies are checkable: 12 bytes (message index, size), then bytes that follow from the
index, so a subscriber knows each message is whole and intact. The subscriber writes a
JSON line per message (index, seq, size, latency from the publisher's send time,
recovered by NACK, intact) and serves /metrics like a daemon; the publisher writes one
per message sent, then stays `--linger` seconds to answer NACKs. `--dump` writes the
sealed datagrams of one message (length-prefixed) for replay tests. SIGTERM ends both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import struct
import sys
import time
from pathlib import Path

from akacdn.config import load_network
from akacdn.messaging.client import Message, MessagingClient
from akacdn.runtime import Runtime, run

from .network import TOPIC

_HEAD = struct.Struct(">QI")


def make_body(index: int, size: int) -> bytes:
    size = max(size, _HEAD.size)
    return _HEAD.pack(index, size) + random.Random(index).randbytes(size - _HEAD.size)


def check_body(body: bytes) -> tuple[int, bool]:
    """(index, intact) of a received body."""
    if len(body) < _HEAD.size:
        return -1, False
    index, size = _HEAD.unpack_from(body)
    return index, len(body) == size and body == make_body(index, size)


async def subscriber(rt: Runtime, out: Path, topic: str) -> None:
    f = open(out, "a", buffering=1 << 16)  # noqa: SIM115 (closed in finally)

    def on_message(msg: Message) -> None:
        index, ok = check_body(msg.body)
        lat = time.time() - msg.sent_at
        f.write(json.dumps({"i": index, "seq": msg.seq, "size": len(msg.body), "lat": round(lat, 6),
                            "rec": msg.recovered, "ok": ok}) + "\n")  # fmt: skip

    async def flush() -> None:  # readers poll the file while we run
        while True:
            await asyncio.sleep(0.1)
            f.flush()

    client = MessagingClient(rt, [topic], on_message)
    await client.start()
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(client.run())
            tg.create_task(rt.serve_management())
            tg.create_task(flush())
            rt.ready("node")
    finally:
        f.close()
        client.close()


async def publisher(rt: Runtime, a: argparse.Namespace) -> None:
    client = MessagingClient(rt, [], lambda _: None, port=0 if a.any_port else None)
    await client.start()
    f = open(a.out, "a", buffering=1)  # noqa: SIM115 (closed in finally)

    async def schedule() -> None:
        await asyncio.sleep(a.start_after)
        loop = asyncio.get_running_loop()
        begin = loop.time()
        for i in range(a.count):
            size = a.big_size if a.big_every and i % a.big_every == a.big_every - 1 else a.size
            at = begin + i / a.rate
            if (wait := at - loop.time()) > 0:
                await asyncio.sleep(wait)
            ok = client.publish(a.topic, make_body(i, size))
            f.write(json.dumps({"i": i, "seq": client.outbox.last(a.topic), "size": size, "at": time.time(),
                                "ok": ok}) + "\n")  # fmt: skip
            if i == a.dump_index and a.dump:
                stream = (client.sender, a.topic, client.epoch)
                with open(a.dump, "wb") as d:
                    for data in client.history.lookup(stream, client.outbox.last(a.topic), []):
                        d.write(struct.pack(">I", len(data)) + data)
        await asyncio.sleep(a.linger)  # answer NACKs for what is still missing

    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(client.run()), tg.create_task(rt.serve_management())]
            rt.ready("node")
            await schedule()
            for t in tasks:  # done: the rest ends with us
                t.cancel()
    finally:
        f.close()
        client.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.messaging.node", description=__doc__.split("\n")[0])
    p.add_argument("role", choices=["pub", "sub"])
    p.add_argument("--config", required=True)
    p.add_argument("--machine", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--topic", default=TOPIC)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--rate", type=float, default=100.0, help="messages per second")
    p.add_argument("--size", type=int, default=300)
    p.add_argument("--big-size", type=int, default=200 * 1024)
    p.add_argument("--big-every", type=int, default=0, help="every Nth message is big (0: none)")
    p.add_argument("--start-after", type=float, default=0.5)
    p.add_argument("--linger", type=float, default=5.0)
    p.add_argument("--dump", type=Path, default=None, help="write message --dump-index's sealed datagrams here")
    p.add_argument("--dump-index", type=int, default=0)
    p.add_argument("--any-port", action="store_true", help="publish from an ephemeral port")
    a = p.parse_args(argv)
    net = load_network(a.config)
    rt = Runtime(net, net.machine(a.machine), f"bench-{a.role}")
    main_ = (lambda: subscriber(rt, a.out, a.topic)) if a.role == "sub" else (lambda: publisher(rt, a))
    return run(main_, fast_loop=True, log=rt.log)


if __name__ == "__main__":
    sys.exit(main())
