"""The failover benchmark's client probe, run inside the client namespace
(`ip netns exec <ns> python probe.py ADDRESS...`): every `--every` seconds (10 ms) it
starts one request per address on a fresh TCP connection (non-blocking raw sockets on an
asyncio loop, so a request to a dead address does not hold up the next ones), with a
`--connect-timeout` (50 ms) and a `--read-timeout`, sends `GET / HTTP/1.1` and reads the
answer's header block for `X-Served-By`. One line per request on stdout:

    <start> <end> <address> <machine>        an answer, naming who served it
    <start> <end> <address> !<reason>        no answer: !connect-timeout, !read-timeout,
                                             !refused, !reset, !eof, !no-served-by, !<errno>

Times are CLOCK_MONOTONIC seconds, the clock every namespace shares with the runner.
Stand-alone on purpose (stdlib only): it starts fast and imports nothing of akacdn.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import socket
import struct
import sys
import time

LINGER_RST = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT pile-up at 100+ connections/s


def served_by(head: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"x-served-by":
            return v.strip().decode("latin-1") or None
    return None


async def attempt(address: str, port: int, connect_timeout: float, read_timeout: float) -> None:
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stage = "connect"
    try:
        await asyncio.wait_for(loop.sock_connect(s, (address, port)), connect_timeout)
        stage = "read"
        req = f"GET / HTTP/1.1\r\nHost: {address}\r\nUser-Agent: akacdn-failover-probe\r\nConnection: close\r\n\r\n"
        await loop.sock_sendall(s, req.encode())
        buf = b""
        deadline = time.monotonic() + read_timeout
        while b"\r\n\r\n" not in buf and len(buf) < 65536:
            chunk = await asyncio.wait_for(loop.sock_recv(s, 65536), max(0.0, deadline - time.monotonic()))
            if not chunk:
                break
            buf += chunk
        who = served_by(buf.partition(b"\r\n\r\n")[0])
        result = who if who else ("!eof" if not buf else "!no-served-by")
    except TimeoutError:
        result = f"!{stage}-timeout"
    except ConnectionRefusedError:
        result = "!refused"
    except ConnectionResetError:
        result = "!reset"
    except OSError as e:
        result = f"!{errno.errorcode.get(e.errno or 0, 'oserror')}"
    finally:
        s.close()
    sys.stdout.write(f"{t0:.6f} {time.monotonic():.6f} {address} {result}\n")


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    t = time.monotonic()
    while True:
        for a in args.address:
            task = loop.create_task(attempt(a, args.port, args.connect_timeout, args.read_timeout))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sys.stdout.flush()
        t += args.every
        now = time.monotonic()
        if t < now:  # fell behind (a busy machine): carry on from now, no burst
            t = now
        await asyncio.sleep(t - now)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("address", nargs="+")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--every", type=float, default=0.01)
    p.add_argument("--connect-timeout", type=float, default=0.05)
    p.add_argument("--read-timeout", type=float, default=0.5)
    try:
        asyncio.run(main(p.parse_args()))
    except KeyboardInterrupt:
        pass
