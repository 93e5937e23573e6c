"""EDNS Client Subnet (RFC 7871), pure: parse the query's option, build the reply's.

`parse_ecs(data)` returns the client subnet or raises `EcsError` (the query gets
FORMERR): unknown family, source prefix too long for the family, non-zero scope in a
query, an address longer than the prefix needs, or bits set beyond the prefix.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

ECS_CODE = 8
NSID_CODE = 3
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class EcsError(ValueError):
    pass


class ClientSubnet(NamedTuple):
    family: int  # 1 IPv4, 2 IPv6
    source: int  # source prefix length
    address: bytes  # as sent: ceil(source / 8) bytes

    def network(self) -> IPNetwork:
        size = 4 if self.family == 1 else 16
        raw = self.address + bytes(size - len(self.address))
        ip = ipaddress.ip_address(raw)
        return ipaddress.ip_network(f"{ip}/{self.source}")


def parse_ecs(data: bytes) -> ClientSubnet:
    if len(data) < 4:
        raise EcsError("option too short")
    family, source, scope = struct.unpack("!HBB", data[:4])
    address = data[4:]
    if family not in (1, 2):
        raise EcsError(f"unknown family {family}")
    if source > (32 if family == 1 else 128):
        raise EcsError(f"source prefix {source} too long")
    if scope != 0:
        raise EcsError("scope prefix must be 0 in a query")
    if len(address) != (source + 7) // 8:
        raise EcsError("address length does not match the source prefix")
    if source % 8 and address[-1] & (0xFF >> (source % 8)):
        raise EcsError("address bits set beyond the source prefix")
    return ClientSubnet(family, source, address)


def ecs_reply(subnet: ClientSubnet, scope: int) -> bytes:
    """The option data to echo: family, source and address as sent, our scope."""
    return struct.pack("!HBB", subnet.family, subnet.source, scope) + subnet.address
