"""Kernel side of IP takeover: service addresses over netlink, gratuitous ARP on the wire.

The region agent's only module that touches the kernel. It carries out the actions of
`akacdn.region.takeover`: `Add` -> `Interface.add`, `Release` -> `Interface.remove`,
`Announce` -> `Announcer.announce`.

- Netlink: pyroute2's asyncio API (`AsyncIPRoute`, 0.9.x) on the stock asyncio loop only
  (pyroute2 fails on uvloop, its sync API inside a running loop); `open` refuses uvloop.
- Linux sends no gratuitous ARP on `ip addr add`. Each `announce` round sends a broadcast
  ARP request (sender = target = the address, target MAC zero, as the kernel and RFC 5227
  do) and a broadcast ARP reply with our own MAC as target MAC (so Linux's `arp_is_garp`
  takes it too). A Linux neighbour that has an entry for the address takes either (new
  MAC, STALE, even within `locktime`) on default sysctls; to create a missing entry it
  needs `arp_accept=1`. (A reply with a broadcast target MAC is ignored within locktime.)
- scapy's import is slow: `Announcer()` does it and `prepare()` opens the socket and builds
  the frames, both at agent start. Sockets (one per interface, reused) are bound to no
  protocol (receive nothing) and non-blocking (never stall the loop).
- IPv6: addresses are added with IFA_F_NODAD (usable at once, no duplicate address
  detection to wait for), and `announce` sends an unsolicited neighbour advertisement
  (RFC 4861 7.2.6: to all-nodes ff02::1, hop limit 255, Override set, Solicited clear,
  our MAC as target link-layer address). A Linux neighbour that has an entry for the
  address takes the new MAC (STALE); like ARP it creates no entry from it by default.

Errors: only `ActionError` escapes (netlink errors, a vanished interface, timeouts, bad
input, socket errors); anything else is a bug. Timestamps (monotonic): `add` returns when
the kernel acknowledged the address, `announce` when its first frame went to the kernel.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

IFA_F_NODAD = 0x02  # linux/if_addr.h: skip duplicate address detection (IPv6)
_MIN_FRAME = 60  # Ethernet minimum without FCS: frames are padded to it
_BROADCAST = "ff:ff:ff:ff:ff:ff"
_ALL_NODES, _ALL_NODES_MAC = "ff02::1", "33:33:00:00:00:01"
_ZERO_MAC = "00:00:00:00:00:00"
_MAX_BUILT = 1024  # frame sets kept (address, mac); all dropped when full

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ActionError(Exception):
    """A kernel action failed; the message says which action, on what, and why."""


class Link(NamedTuple):  # the interface holding the machine's own address
    ifname: str
    index: int
    mac: str
    prefixlen: int  # of the machine's own address there: service addresses get the same


class Scapy(NamedTuple):
    conf: Any
    Ether: Any
    ARP: Any
    IPv6: Any
    NA: Any
    TargetMAC: Any


def load_scapy() -> Scapy:
    """Import scapy's layer-2 parts: slow the first time, a dictionary lookup after."""
    from scapy.config import conf
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
    from scapy.layers.l2 import ARP, Ether

    return Scapy(conf, Ether, ARP, IPv6, ICMPv6ND_NA, ICMPv6NDOptDstLLAddr)


def _ip(address: str) -> IPAddress:
    try:
        return ipaddress.ip_address(address)
    except ValueError as e:
        raise ActionError(f"bad address {address!r}") from e


def _held(msg: Any) -> IPAddress | None:
    """The local address of an RTM_NEWADDR message (IFA_LOCAL on IPv4, else IFA_ADDRESS)."""
    text = msg.get("local") or msg.get("address")
    return ipaddress.ip_address(text) if text else None


class Interface:
    """The interface holding the machine's own address, driven over netlink.

    `iface = await Interface.open(host_address)` inside the stock asyncio loop, then
    `add` / `remove` / `present`; `close()` (or `async with`) at the end. Every netlink
    exchange is bounded by `timeout` seconds.
    """

    def __init__(self, ipr: AsyncIPRoute, timeout: float) -> None:
        self._ipr, self.timeout, self.link = ipr, timeout, Link("", 0, "", 0)

    @classmethod
    async def open(cls, host_address: str, timeout: float = 5.0) -> Interface:
        """Open a netlink socket and find the interface holding `host_address`."""
        if type(asyncio.get_running_loop()).__module__.startswith("uvloop"):
            raise ActionError("pyroute2 needs the stock asyncio loop, not uvloop")
        try:
            iface = cls(AsyncIPRoute(), timeout)
        except OSError as e:
            raise ActionError(f"cannot open a netlink socket: {e}") from e
        try:
            await iface.find(host_address)
        except BaseException:
            iface.close()
            raise
        return iface

    async def find(self, host_address: str) -> Link:
        """Find (again) the interface holding `host_address`; it becomes the one acted on."""
        ip = _ip(host_address)
        async with self._netlink(f"find the interface of {ip}"):
            found = [(m["index"], m["prefixlen"]) async for m in await self._ipr.addr("dump") if _held(m) == ip]
            if not found:
                raise ActionError(f"no interface holds {ip}")
            (link,) = await self._ipr.link("get", index=found[0][0])
        self.link = Link(link.get("ifname"), link["index"], link.get("address"), found[0][1])
        return self.link

    async def add(self, address: str, prefixlen: int) -> float:
        """Add `address/prefixlen` (already present is fine); returns the monotonic time it was in."""
        try:
            ip = ipaddress.ip_interface(f"{address}/{prefixlen}").ip
        except ValueError as e:
            raise ActionError(f"bad address {address}/{prefixlen}") from e
        extra = {"flags": IFA_F_NODAD} if ip.version == 6 else {}
        async with self._netlink(f"add {ip}/{prefixlen} on {self.link.ifname}"):
            try:
                await self._ipr.addr("add", index=self.link.index, address=str(ip), prefixlen=prefixlen, **extra)
            except NetlinkError as e:
                if e.code != errno.EEXIST:
                    raise
        return time.monotonic()

    async def remove(self, address: str) -> bool:
        """Remove `address` whatever its prefix length; False if it was not there."""
        ip = _ip(address)
        async with self._netlink(f"remove {ip} from {self.link.ifname}"):
            await self._ipr.link("get", index=self.link.index)  # ENODEV if the interface is gone
            held = [m async for m in await self._ipr.addr("dump", index=self.link.index) if _held(m) == ip]
            for m in held:
                try:
                    await self._ipr.addr("del", index=self.link.index, address=str(ip), prefixlen=m["prefixlen"])
                except NetlinkError as e:
                    if e.code != errno.EADDRNOTAVAIL:  # gone meanwhile: fine
                        raise
        return bool(held)

    async def present(self) -> set[str]:
        """Every address on the interface (host, service and link-local), as text."""
        async with self._netlink(f"list the addresses of {self.link.ifname}"):
            await self._ipr.link("get", index=self.link.index)
            held = [_held(m) async for m in await self._ipr.addr("dump", index=self.link.index)]
        return {str(a) for a in held if a is not None}

    def close(self) -> None:
        self._ipr.close()

    async def __aenter__(self) -> Interface:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    @asynccontextmanager
    async def _netlink(self, what: str) -> AsyncIterator[None]:
        """Bound a netlink exchange by the timeout and turn its failures into ActionError."""
        try:
            async with asyncio.timeout(self.timeout):
                yield
        except TimeoutError as e:
            raise ActionError(f"{what}: no netlink answer within {self.timeout} s") from e
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                raise ActionError(f"{what}: interface {self.link.ifname} (index {self.link.index}) is gone") from e
            raise ActionError(f"{what}: netlink error {e.code} ({os.strerror(e.code)})") from e
        except OSError as e:
            raise ActionError(f"{what}: {e}") from e


class Announcer:
    """Sends gratuitous ARP bursts. Importing scapy happens here: build one at agent start."""

    def __init__(self) -> None:
        self._sockets: dict[str, Any] = {}  # ifname -> scapy L2 socket, one per interface
        self._built: dict[tuple[str, str], list[bytes]] = {}  # (address, mac) -> frames; bounded
        try:
            self._scapy = load_scapy()
            bytes(self._scapy.Ether(src=_ZERO_MAC) / self._scapy.ARP())  # warm scapy's first build up
        except Exception as e:
            raise ActionError(f"cannot load scapy: {e}") from e

    def prepare(self, ifname: str, mac: str, addresses: Iterable[str] = ()) -> None:
        """Open `ifname`'s socket and build the frames for `addresses` now (at agent start)."""
        for address in addresses:
            self._frames(address, mac)
        self._socket(ifname)

    async def announce(self, ifname: str, address: str, mac: str, count: int = 3, spacing: float = 0.2) -> float:
        """Send `count` rounds (IPv4: ARP request + reply; IPv6: a neighbour advertisement)
        `spacing` s apart; returns when the first went out."""
        if count < 1 or spacing < 0:
            raise ActionError(f"announce {address}: need count >= 1 and spacing >= 0, not {count}, {spacing}")
        frames = self._frames(address, mac)
        first = 0.0
        for i in range(count):
            if i:
                await asyncio.sleep(spacing)
            for frame in frames:
                sock = self._socket(ifname)
                try:
                    sock.outs.send(frame)
                except OSError as e:  # interface down or gone: reopen next time
                    self._drop(ifname)
                    raise ActionError(f"gratuitous ARP on {ifname}: {e}") from e
                first = first or time.monotonic()
        return first

    def close(self) -> None:
        for ifname in list(self._sockets):
            self._drop(ifname)

    def __enter__(self) -> Announcer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _frames(self, address: str, mac: str) -> list[bytes]:
        ip = _ip(address)
        key = (str(ip), mac)
        if key not in self._built:
            if len(self._built) >= _MAX_BUILT:  # a region has a handful of addresses: never in practice
                self._built.clear()
            sc = self._scapy
            if ip.version == 4:
                ether, arp = sc.Ether(dst=_BROADCAST, src=mac), sc.ARP
                frames = [
                    ether / arp(op=1, hwsrc=mac, psrc=key[0], hwdst=_ZERO_MAC, pdst=key[0]),  # request
                    ether / arp(op=2, hwsrc=mac, psrc=key[0], hwdst=mac, pdst=key[0]),  # reply
                ]
            else:
                frames = [
                    sc.Ether(dst=_ALL_NODES_MAC, src=mac)
                    / sc.IPv6(src=key[0], dst=_ALL_NODES, hlim=255)
                    / sc.NA(R=0, S=0, O=1, tgt=key[0])
                    / sc.TargetMAC(lladdr=mac)
                ]
            try:
                self._built[key] = [bytes(f).ljust(_MIN_FRAME, b"\0") for f in frames]
            except Exception as e:  # scapy's errors for a malformed MAC vary
                raise ActionError(f"announce {ip}: bad MAC {mac!r}: {e}") from e
        return self._built[key]

    def _socket(self, ifname: str) -> Any:
        if ifname in self._sockets:
            return self._sockets[ifname]
        conf = self._scapy.conf
        try:
            try:
                sock = conf.L2socket(iface=ifname, type=0, promisc=False)  # protocol 0: send only
            except ValueError:  # unknown to scapy: maybe newer than its interface list
                conf.ifaces.reload()
                sock = conf.L2socket(iface=ifname, type=0, promisc=False)
            sock.outs.setblocking(False)
        except (OSError, ValueError) as e:
            raise ActionError(f"gratuitous ARP on {ifname}: {e}") from e
        self._sockets[ifname] = sock
        return sock

    def _drop(self, ifname: str) -> None:
        sock = self._sockets.pop(ifname, None)
        if sock is not None:
            sock.close()
