"""Batched UDP for the nameservers: recvmmsg/sendmmsg through libc (asyncio shell).

Why: per query, Python's recvfrom+sendto cost two system calls plus an address string
conversion each way. Here one recvmmsg takes up to `BATCH` queries, the answers are
written into a parallel set of send buffers addressed to the very sockaddr the query
came from (no conversion), and one sendmmsg sends them all. The common case (a
pre-built answer in `AnswerCache.entries`) never leaves this loop; everything else goes
to `slow(data, source, bucket)`, which returns the whole reply or None (drop).

`UdpBatch.available()` is False where libc has no recvmmsg (then the server falls back
to a recvfrom loop).
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Callable
from ctypes import POINTER, Structure, addressof, c_int, c_size_t, c_uint, c_uint32, c_void_p

BATCH = 64
BUF = 4096  # a query larger than this is truncated by the kernel: it then fails to parse
NAME = 28  # room for a sockaddr_in6
MSG_DONTWAIT = 0x40


class _Iovec(Structure):
    _fields_ = [("iov_base", c_void_p), ("iov_len", c_size_t)]


class _Msghdr(Structure):
    _fields_ = [
        ("msg_name", c_void_p),
        ("msg_namelen", c_uint32),
        ("msg_iov", POINTER(_Iovec)),
        ("msg_iovlen", c_size_t),
        ("msg_control", c_void_p),
        ("msg_controllen", c_size_t),
        ("msg_flags", c_int),
    ]


class _Mmsghdr(Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", c_uint)]


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.recvmmsg.argtypes = [c_int, POINTER(_Mmsghdr), c_uint, c_int, c_void_p]
        libc.recvmmsg.restype = c_int
        libc.sendmmsg.argtypes = [c_int, POINTER(_Mmsghdr), c_uint, c_int]
        libc.sendmmsg.restype = c_int
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()
_U32 = struct.Struct("I")
_U64 = struct.Struct("Q")
_SIZE = ctypes.sizeof(_Mmsghdr)
_LEN_AT = _Mmsghdr.msg_len.offset
_IOV = ctypes.sizeof(_Iovec)


class UdpBatch:
    """Receive, answer and send DNS queries in batches on one non-blocking socket."""

    @staticmethod
    def available() -> bool:
        return _LIBC is not None

    def __init__(self, sock: socket.socket) -> None:
        assert _LIBC is not None
        self.fd = sock.fileno()
        self.v6 = sock.family == socket.AF_INET6
        # where the /24 (/56) bucket sits inside the sockaddr, and how to read the address
        self.bucket_at = (8, 15) if self.v6 else (4, 7)
        self.addr_at = (8, 24) if self.v6 else (4, 8)
        namelen = 28 if self.v6 else 16
        self._rbuf = ctypes.create_string_buffer(BATCH * BUF)
        self._sbuf = ctypes.create_string_buffer(BATCH * BUF)
        self._names = ctypes.create_string_buffer(BATCH * NAME)
        self._riov = (_Iovec * BATCH)()
        self._siov = (_Iovec * BATCH)()
        self._rmsgs = (_Mmsghdr * BATCH)()
        self._smsgs = (_Mmsghdr * BATCH)()
        rb, sb, nb = addressof(self._rbuf), addressof(self._sbuf), addressof(self._names)
        self._name_base = nb
        for i in range(BATCH):
            self._riov[i].iov_base, self._riov[i].iov_len = rb + i * BUF, BUF
            self._siov[i].iov_base = sb + i * BUF
            for msgs, iov in ((self._rmsgs, self._riov), (self._smsgs, self._siov)):
                h = msgs[i].msg_hdr
                h.msg_name, h.msg_namelen = nb + i * NAME, namelen
                h.msg_iov, h.msg_iovlen = ctypes.pointer(iov[i]), 1
        self._rm = memoryview(self._rmsgs).cast("B")  # type: ignore[arg-type]
        self._sm = memoryview(self._smsgs).cast("B")  # type: ignore[arg-type]
        self._siovm = memoryview(self._siov).cast("B")  # type: ignore[arg-type]
        self._rview = memoryview(self._rbuf).cast("B")  # type: ignore[arg-type]
        self._sview = memoryview(self._sbuf).cast("B")  # type: ignore[arg-type]
        self._nview = memoryview(self._names).cast("B")  # type: ignore[arg-type]
        self.errors = 0

    def source(self, i: int) -> str:
        """The i-th query's source address as text (slow path only)."""
        a, b = self.addr_at
        raw = self._nview[i * NAME + a : i * NAME + b].tobytes()
        return socket.inet_ntop(socket.AF_INET6 if self.v6 else socket.AF_INET, raw)

    def serve(
        self,
        entries: dict[bytes, bytes | dict[bytes, bytes]],
        slow: Callable[[bytes, str, bytes], bytes | None],
        direct: bool,
    ) -> tuple[int, int]:
        """Drain one batch. `direct`: cached answers go out without calling `slow`
        (no rate limiting). Returns (queries received, answered from the cache)."""
        assert _LIBC is not None
        n = _LIBC.recvmmsg(self.fd, self._rmsgs, BATCH, MSG_DONTWAIT, None)
        if n <= 0:
            return 0, 0
        pack = _U64.pack_into
        j = hits = 0
        try:
            j, hits = self._answer(n, entries, slow, direct)
        finally:
            if j:
                sent = _LIBC.sendmmsg(self.fd, self._smsgs, j, 0)
                if sent < j:
                    self.errors += j - max(sent, 0)
            if j != n:  # some slot was re-addressed (or an error struck): restore them all
                for k in range(n):
                    pack(self._sm, k * _SIZE, self._name_base + k * NAME)
        return n, hits

    def _answer(
        self,
        n: int,
        entries: dict[bytes, bytes | dict[bytes, bytes]],
        slow: Callable[[bytes, str, bytes], bytes | None],
        direct: bool,
    ) -> tuple[int, int]:
        """Fill send slots for n received queries; (slots filled, cache hits)."""
        rm, rview, sview, nview, siovm, sm = self._rm, self._rview, self._sview, self._nview, self._siovm, self._sm
        b0, b1 = self.bucket_at
        unpack, pack = _U32.unpack_from, _U64.pack_into
        j = hits = 0
        for i in range(n):
            off = i * BUF
            ln = unpack(rm, i * _SIZE + _LEN_AT)[0]
            key = rview[off + 2 : off + ln].tobytes()
            v = entries.get(key)
            if v is not None and v.__class__ is not bytes:
                v = v.get(nview[i * NAME + b0 : i * NAME + b1].tobytes())  # type: ignore[union-attr]
            out_off = j * BUF
            if v is not None and direct:
                hits += 1
                size = len(v) + 2  # type: ignore[arg-type]
                sview[out_off : out_off + 2] = rview[off : off + 2]
                sview[out_off + 2 : out_off + size] = v  # type: ignore[index]
            else:
                bucket = nview[i * NAME + b0 : i * NAME + b1].tobytes()
                try:
                    reply = slow(rview[off : off + ln].tobytes(), self.source(i), bucket)
                except Exception:  # never lose the rest of the batch to one query
                    self.errors += 1
                    reply = None
                if reply is None:
                    continue
                size = len(reply)
                sview[out_off : out_off + size] = reply
            pack(siovm, j * _IOV + 8, size)
            if j != i:  # a query before this one got no reply: address this slot by hand
                pack(sm, j * _SIZE, self._name_base + i * NAME)
            j += 1
        return j, hits
