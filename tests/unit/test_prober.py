"""Measured mapping's probes over real loopback sockets: the DNS and TCP probes, the lab's
probe responder (emulated RTT, changed while it runs), and a Prober's round."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import struct
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from akacdn.config import Network, load_network
from akacdn.devnet.network import Layout, write_config
from akacdn.devnet.responder import Responder, reply_to
from akacdn.mapping.maps import LowMap, RegionServers, Server
from akacdn.mapping.messages import ProbeReport, ProbeResult
from akacdn.mapping.probe import plan
from akacdn.mapping.prober import Prober, probe_dns, probe_tcp
from akacdn.runtime import Runtime

LOCAL = "127.0.0.1"
DEADLINE = 15.0  # seconds a poll may take before the test fails (never a measure of speed)


def _free_port(kind: int, host: str = LOCAL) -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def _until(check: Callable[[], Any], what: str) -> None:
    """Poll `check` (an async callable returning truth) until true, or fail after DEADLINE."""
    try:
        async with asyncio.timeout(DEADLINE):
            while not await check():
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"not within {DEADLINE} s: {what}")


@pytest.fixture
async def delayed(tmp_path: Path) -> AsyncIterator[tuple[Responder, Path, int]]:
    """A responder on 127.0.0.1 answering loopback after 50 ms: (it, its control file, its port)."""
    control = tmp_path / "delays.json"
    control.write_text(json.dumps({"default": 0.0, "prefixes": {"127.0.0.0/8": 0.05}}))
    r = Responder(control)
    [(_, port)] = await r.start([(LOCAL, 0)])
    try:
        yield r, control, port
    finally:
        r.close()


async def test_dns_probe_measures_the_emulated_delay(delayed: tuple[Responder, Path, int]) -> None:
    r, _, port = delayed
    rtt = await probe_dns(LOCAL, port, 5.0)
    assert rtt is not None
    assert rtt >= 0.05 - 1e-6  # (the loop's timers may fire a clock resolution early)
    assert r.counts["answered"] == 1
    rtt = await probe_dns(LOCAL, port, 5.0, source=LOCAL)
    assert rtt is not None and rtt >= 0.05 - 1e-6


async def test_the_delay_table_is_reread_when_the_control_file_changes(delayed: tuple[Responder, Path, int]) -> None:
    r, control, port = delayed
    control.write_text(json.dumps({"default": 0.2}))  # 127/8 no longer listed: the default

    async def no_delay_left() -> bool:
        assert await probe_dns(LOCAL, port, 5.0) is not None
        return r.control.table.delay(LOCAL) == 0.2

    await _until(no_delay_left, "the new table in force")

    async def slower() -> bool:
        rtt = await probe_dns(LOCAL, port, 5.0)
        return rtt is not None and rtt >= 0.2 - 1e-6

    await _until(slower, "replies 200 ms late")
    control.write_text(json.dumps({"default": 0, "prefixes": {"127.0.0.0/8": 0}}))

    async def immediate() -> bool:
        assert await probe_dns(LOCAL, port, 5.0) is not None
        return r.control.table.delay(LOCAL) == 0

    await _until(immediate, "no delay")


async def test_a_bad_control_file_keeps_the_table(delayed: tuple[Responder, Path, int]) -> None:
    r, control, port = delayed
    control.write_text('{"default": "soon"}')

    async def looked() -> bool:
        assert await probe_dns(LOCAL, port, 5.0) is not None
        return r.control._seen is not None and r.control._seen[1] == control.stat().st_size

    await _until(looked, "the bad file read")
    assert r.control.table.delay(LOCAL) == 0.05


async def test_malformed_datagrams_are_counted_and_ignored(delayed: tuple[Responder, Path, int]) -> None:
    r, _, port = delayed
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.connect((LOCAL, port))
        for junk in (b"", b"\x01", b"\x00" * 11, b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fabc"):
            s.send(junk)
        response = struct.pack("!HHHHHH", 7, 0x8000, 1, 0, 0, 0) + b"\x00\x00\x02\x00\x01"
        s.send(response)  # a response is not answered (no loops)

        async def counted() -> bool:
            return r.counts["malformed"] == 5

        await _until(counted, "5 malformed datagrams counted")
    assert await probe_dns(LOCAL, port, 5.0) is not None  # still answering


def test_the_reply_keeps_id_question_and_rd() -> None:
    query = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + b"\x03foo\x00\x00\x01\x00\x01"
    reply = reply_to(query)
    assert reply is not None
    qid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", reply)
    assert (qid, qd, an, ns, ar) == (0xBEEF, 1, 0, 0, 0)
    assert flags == 0x8100  # QR, RD kept; AA=0, RA=0, NOERROR
    assert reply[12:] == b"\x03foo\x00\x00\x01\x00\x01"


@pytest.mark.skipif(not _ipv6(), reason="no IPv6 loopback")
async def test_dns_probe_over_ipv6(tmp_path: Path) -> None:
    control = tmp_path / "delays.json"
    control.write_text(json.dumps({"default": 0.0, "prefixes": {"::1/128": 0.05}}))
    r = Responder(control)
    try:
        [(_, port)] = await r.start([("::1", 0)])
        rtt = await probe_dns("::1", port, 5.0, source=LOCAL)  # an IPv4 source is left out for IPv6
        assert rtt is not None and rtt >= 0.05 - 1e-6
    finally:
        r.close()


async def test_nothing_listening_is_lost_without_waiting_for_the_timeout() -> None:
    port = _free_port(socket.SOCK_DGRAM)
    async with asyncio.timeout(DEADLINE):  # the probe's own timeout is far longer: ICMP ended it
        assert await probe_dns(LOCAL, port, 120.0) is None


async def test_a_timeout_is_a_loss() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # receives, never answers
        silent.bind((LOCAL, 0))
        assert await probe_dns(LOCAL, silent.getsockname()[1], 0.05) is None


class _Tricky(asyncio.DatagramProtocol):
    """Answers a query with foreign datagrams first (the right id from another port, a
    wrong id, a query, junk), and the right reply 50 ms later."""

    def __init__(self, other: socket.socket) -> None:
        self.other = other
        self.transport: asyncio.DatagramTransport | None = None
        self.queries = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        self.queries += 1
        qid, flags = struct.unpack_from("!HH", data)
        assert flags & 0x8100 == 0  # a query, RD=0
        good = reply_to(data)
        assert good is not None
        self.other.sendto(good, addr)  # right id, wrong source port
        self.transport.sendto(struct.pack("!H", qid ^ 0x5A5A) + good[2:], addr)  # wrong id
        self.transport.sendto(data, addr)  # our own query back: not a response
        self.transport.sendto(b"\x00\x01\x02", addr)  # junk
        asyncio.get_running_loop().call_later(0.05, self.transport.sendto, good, addr)


async def test_only_the_reply_to_our_query_counts() -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind((LOCAL, 0))
        transport, proto = await loop.create_datagram_endpoint(lambda: _Tricky(other), local_addr=(LOCAL, 0))
        try:
            port = transport.get_extra_info("sockname")[1]
            rtt = await probe_dns(LOCAL, port, 5.0)
            assert proto.queries == 1
            assert rtt is not None and rtt >= 0.05 - 1e-6  # the foreign ones, earlier, were ignored
        finally:
            transport.close()


async def test_tcp_probe() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((LOCAL, 0))
        listener.listen(8)  # the kernel completes the handshake: no accept needed
        port = listener.getsockname()[1]
        rtt = await probe_tcp(LOCAL, port, 5.0)
        assert rtt is not None and rtt >= 0
        assert await probe_tcp(LOCAL, port, 5.0, source=LOCAL) is not None
        assert await probe_tcp(LOCAL, port, 5.0, source="::1") is not None  # other family: left out
    closed = _free_port(socket.SOCK_STREAM)
    async with asyncio.timeout(DEADLINE):
        assert await probe_tcp(LOCAL, closed, 120.0) is None


# -- a Prober's round ------------------------------------------------------------------

NET = 213  # devnet addresses 127.213.x.y: clear of a devnet (127.0.x.y) that may run here
TARGET, DEAD = "127.213.50.1", "127.213.51.1"


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[tuple[Network, Responder]]:
    """A devnet config whose LLNSes (r2, r3) and one client network's target are a
    responder; r1-e1's view: one network with a dead target too, one by TCP, one all dead,
    one only r2 may serve."""
    control = tmp_path / "delays.json"
    control.write_text(json.dumps({"default": 0.0}))
    r = Responder(control)
    try:
        [(_, port)] = await r.start([("127.213.2.1", 0)])
        await r.start([("127.213.3.1", port), (TARGET, port)])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind((TARGET, 0))
            listener.listen(8)
            tcp_port = listener.getsockname()[1]

            def tweak(network: dict[str, Any], _customers: dict[str, Any]) -> None:
                network["probing"] = {"interval": 0.2, "timeout": 2.0, "rate": 100}
                network["client_networks"] = [
                    {"prefix": "198.18.1.0/24", "probes": [f"{TARGET}:{port}", f"{DEAD}:{port}"]},
                    {"prefix": "198.18.2.0/24", "probes": [f"{TARGET}:{tcp_port}"], "probe": "tcp"},
                    {"prefix": "198.18.3.0/24", "probes": [f"{DEAD}:{port}"] * 3, "regions": ["r1"]},
                    {"prefix": "198.18.4.0/24", "probes": [f"{TARGET}:{port}"], "regions": ["r2"]},
                ]

            net = load_network(write_config(tmp_path / "devnet", Layout(NET, port, 8080), tweak))
            yield net, r
    finally:
        r.close()


EXPECTED_NETWORKS = ("198.18.1.0/24", "198.18.2.0/24", "198.18.3.0/24")


def _check_report(report: ProbeReport) -> None:
    assert (report.machine, report.region) == ("r1-e1", "r1")
    assert report.at > 0
    got = {r.target: r for r in report.networks}
    assert tuple(got) == EXPECTED_NETWORKS  # sorted; r2's network left out
    assert (got["198.18.1.0/24"].sent, got["198.18.1.0/24"].lost) == (2, 1)
    assert got["198.18.1.0/24"].rtt_ms >= 0
    assert (got["198.18.2.0/24"].sent, got["198.18.2.0/24"].lost) == (1, 0)
    assert got["198.18.2.0/24"].rtt_ms >= 0
    assert got["198.18.3.0/24"] == ProbeResult("198.18.3.0/24", 3, 3, -1.0)
    assert [r.target for r in report.regions] == ["r2", "r3"]
    assert all((r.sent, r.lost) == (1, 0) and r.rtt_ms >= 0 for r in report.regions)


async def test_a_prober_round_publishes_its_report(lab: tuple[Network, Responder]) -> None:
    net, responder = lab
    rt = Runtime(net, net.machine("r1-e1"), "edge")
    published: list[bytes] = []
    prober = Prober(rt, published.append, source=net.machine("r1-e1").address)
    report = await prober.round()
    assert report is not None
    assert [msgspec.msgpack.decode(b, type=ProbeReport) for b in published] == [report]
    _check_report(report)
    assert responder.counts["answered"] == 3  # 198.18.1.0/24's live target, r2's and r3's LLNS
    value = rt.registry.get_sample_value
    assert value("akacdn_probes_sent_total", {"kind": "network"}) == 6
    assert value("akacdn_probes_lost_total", {"kind": "network"}) == 4
    assert value("akacdn_probes_sent_total", {"kind": "region"}) == 2
    assert value("akacdn_probes_lost_total", {"kind": "region"}) == 0


async def test_a_prober_takes_its_share_from_the_map(lab: tuple[Network, Responder]) -> None:
    net, _ = lab
    rt = Runtime(net, net.machine("r1-e1"), "edge")
    prober = Prober(rt, lambda _: None)

    def servers(region: str) -> tuple[Server, ...]:
        return tuple(Server(m.id, region, m.address, 100) for m in net.by_role("edge") if m.region == region)

    low = LowMap((1, 1), 0.0, tuple(RegionServers(r, servers(r), True) for r in ("r1", "r2", "r3")))
    prober.use_map(low)
    assert prober.live_edges == ("r1-e1", "r1-e2", "r1-e3")
    report = await prober.round()
    assert report is not None
    planned = plan(net, rt.machine, prober.live_edges)
    assert {r.target for r in (*report.networks, *report.regions)} == {t.key for t in planned}


async def test_nothing_to_probe_publishes_nothing(tmp_path: Path) -> None:
    def tweak(network: dict[str, Any], _customers: dict[str, Any]) -> None:
        network["probing"] = {"regions": False}
        network["client_networks"] = [c for c in network["client_networks"] if not c.get("probes")]

    net = load_network(write_config(tmp_path / "devnet", Layout(NET, 5353, 8080), tweak))
    published: list[bytes] = []
    assert await Prober(Runtime(net, net.machine("r1-e1"), "edge"), published.append).round() is None
    assert published == []


async def test_the_prober_runs_rounds_until_cancelled(
    lab: tuple[Network, Responder], capsys: pytest.CaptureFixture[str]
) -> None:
    net, _ = lab
    rt = Runtime(net, net.machine("r1-e1"), "edge")
    published: list[bytes] = []
    two = asyncio.Event()

    def publish(body: bytes) -> None:
        published.append(body)
        if len(published) >= 2:
            two.set()

    prober = Prober(rt, publish)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(prober.run())
        async with asyncio.timeout(DEADLINE):
            await two.wait()
        task.cancel()
    assert task.cancelled()
    reports = [msgspec.msgpack.decode(body, type=ProbeReport) for body in published]
    _check_report(reports[0])
    for later in reports[1:]:  # the other regions only once per region_interval (60 s)
        assert later.regions == ()
        assert [(r.target, r.sent, r.lost) for r in later.networks] == [
            (r.target, r.sent, r.lost) for r in reports[0].networks
        ]
    rounds = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"probe_round"' in line]
    assert len(rounds) >= 2
    assert rounds[0]["targets"] == 8 and rounds[0]["lost"] == 4 and rounds[0]["seconds"] >= 0


async def test_the_responder_runs_as_a_program_and_stops_on_sigterm(tmp_path: Path) -> None:
    control = tmp_path / "delays.json"
    control.write_text(json.dumps({"default": 0.0}))
    port = _free_port(socket.SOCK_DGRAM)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "akacdn.devnet.responder", "--listen", f"{LOCAL}:{port}", "--control", str(control),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(DEADLINE):
            line = json.loads(await proc.stdout.readline())
        assert (line["event"], line["addresses"]) == ("listening", [f"{LOCAL}:{port}"])
        assert await probe_dns(LOCAL, port, 5.0) is not None
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DEADLINE):
            assert await proc.wait() == 0
        assert await proc.stdout.read() == b""  # one line per start, nothing else
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
