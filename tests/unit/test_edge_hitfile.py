"""The large plain hit's file (`edge/hitfile.py`): the whole answer, its body on a page,
its tail rewritten in place."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from akacdn.edge.hitfile import HEAD_FIRST_MAX, PAGE, TAIL, HitFile


def answer(h: HitFile) -> bytes:
    return os.pread(h.fd, h.size - h.start + 10, h.start)


def test_the_file_is_head_tail_body_with_the_body_on_a_page_and_the_tail_keeps_its_width(tmp_path: Path) -> None:
    head, body = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", b"hello"
    h = HitFile(tmp_path, head, body)
    width = len(TAIL % (0, 0))
    assert h.size - h.start == len(head) + width + len(body)
    assert h.body_at % PAGE == 0 and h.body_at == h.start + len(head) + width
    assert os.pread(h.fd, len(body), h.body_at) == body
    h.show(7, 2147483647)
    data = answer(h)
    assert data.startswith(head) and data.endswith(b"\r\n\r\n" + body) and len(data) == h.size - h.start
    tail = data[len(head) : len(head) + width]
    assert tail.split(b"\r\n")[0].split(b":")[1].strip() == b"7"
    assert b"ttl=2147483647" in tail
    h.show(8, 41)
    assert b"Age: 8 " in answer(h) and b"ttl=41 " in answer(h) and len(answer(h)) == h.size - h.start
    assert list(tmp_path.iterdir()) == [], "the file has no name"


def test_bodies_up_to_the_limit_go_head_first_larger_ones_whole(tmp_path: Path) -> None:
    head = b"HTTP/1.1 200 OK\r\n"
    assert HitFile(tmp_path, head, bytes(HEAD_FIRST_MAX)).head_first
    assert not HitFile(tmp_path, head, bytes(HEAD_FIRST_MAX + 1)).head_first


def test_the_descriptor_is_closed_with_the_object(tmp_path: Path) -> None:
    h = HitFile(tmp_path, b"HTTP/1.1 200 OK\r\n", b"x")
    fd = h.fd
    del h
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)
