"""The large plain hit's file (`edge/hitfile.py`): the whole answer, its tail rewritten in place."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from akacdn.edge.hitfile import TAIL, HitFile


def read(h: HitFile) -> bytes:
    return os.pread(h.fd, h.size + 10, 0)


def test_the_file_is_head_tail_body_and_the_tail_keeps_its_width(tmp_path: Path) -> None:
    head, body = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", b"hello"
    h = HitFile(tmp_path, head, body)
    width = len(TAIL % (0, 0))
    assert h.size == len(head) + width + len(body)
    h.show(7, 2147483647)
    data = read(h)
    assert data.startswith(head) and data.endswith(b"\r\n\r\n" + body) and len(data) == h.size
    tail = data[len(head) : len(head) + width]
    assert tail.split(b"\r\n")[0].split(b":")[1].strip() == b"7"
    assert b"ttl=2147483647" in tail
    h.show(8, 41)
    assert b"Age: 8 " in read(h) and b"ttl=41 " in read(h) and len(read(h)) == h.size
    assert list(tmp_path.iterdir()) == [], "the file has no name"


def test_the_descriptor_is_closed_with_the_object(tmp_path: Path) -> None:
    h = HitFile(tmp_path, b"HTTP/1.1 200 OK\r\n", b"x")
    fd = h.fd
    del h
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)
