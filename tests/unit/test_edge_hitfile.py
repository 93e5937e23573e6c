"""The large plain hit's file (`edge/hitfile.py`): the body alone, unnamed, closed with its object."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from akacdn.edge.hitfile import HitFile


def test_the_file_holds_exactly_the_body_and_has_no_name(tmp_path: Path) -> None:
    body = bytes(range(256)) * 300
    h = HitFile(tmp_path, body)
    assert h.size == len(body)
    assert os.pread(h.fd, h.size + 10, 0) == body
    assert list(tmp_path.iterdir()) == [], "the file has no name"


def test_the_descriptor_is_closed_with_the_object(tmp_path: Path) -> None:
    h = HitFile(tmp_path, b"x")
    fd = h.fd
    del h
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)
