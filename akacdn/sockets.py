"""Listening sockets for the daemons' service addresses.

With IP takeover (`host_address` set) a daemon also listens on its region peers'
addresses, which are not on any local interface until its agent takes one over:
IP_FREEBIND lets it bind them beforehand, so it answers the moment an address arrives.
"""

from __future__ import annotations

import errno
import socket

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # Linux; not exported by Python 3.11


class ListenError(OSError):
    """A service address could not be bound: the daemon cannot do its job (exit, say why)."""


def bound(
    host: str,
    port: int,
    kind: socket.SocketKind,
    *,
    reuse_port: bool = False,
    freebind: bool = False,
    rcvbuf: int = 0,
    sndbuf: int = 0,
    backlog: int = 1024,
) -> socket.socket:
    """A non-blocking socket bound to host:port (listening, for TCP); closed on failure.
    A listening socket's buffer sizes are inherited by the connections it accepts."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if freebind:  # (the IPv4 option also serves IPv6 sockets)
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(backlog)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
        hint = ""
        if e.errno == errno.EADDRNOTAVAIL:
            hint = " (not an address of this machine; with IP takeover give the machine a host_address)"
        elif e.errno == errno.EADDRINUSE:
            hint = " (another process listens there)"
        raise ListenError(e.errno, f"cannot listen on {host} port {port} ({proto}): {e.strerror}{hint}") from None
    return sock
