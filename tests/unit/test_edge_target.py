"""Equivalent request targets make one cache key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from akacdn.edge.target import normalize_target


@pytest.mark.parametrize(
    ("target", "normal"),
    [
        ("/img/logo.png", "/img/logo.png"),
        ("/%7Euser/a%2fb", "/~user/a%2Fb"),
        ("/a/./b/../c", "/a/c"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/a/b/..", "/a/"),
        ("/a/.", "/a/"),
        ("/x?b=2&a=1", "/x?b=2&a=1"),
        ("/x?q=%7e%2b", "/x?q=~%2B"),
        ("/x?", "/x?"),
        ("/%zz", "/%zz"),
        ("", "/"),
    ],
)
def test_normal_forms(target: str, normal: str) -> None:
    assert normalize_target(target) == normal


@given(st.text(alphabet="/.%7eAb2?=&fF", max_size=40))
def test_normalizing_is_idempotent_and_stays_under_the_root(target: str) -> None:
    once = normalize_target(target)
    assert normalize_target(once) == once
    assert once.startswith("/") and "/../" not in once.partition("?")[0] + "/"
