"""Cross-worker miss locks: POSIX record locks belong to the process, so two keys of one
process that hash to one byte must not free each other's lock."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from akacdn.edge.misslock import Hold, MissLocks


def locked_elsewhere(path: Path, byte: int) -> bool:
    """Whether another process finds `byte` of the lock file locked."""
    code = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, int(sys.argv[2]))\n"
        "except OSError:\n    print('locked')\nelse:\n    print('free')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path), str(byte)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() == "locked"


def test_two_keys_on_one_byte_hold_it_until_both_let_go(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    locks = MissLocks(tmp_path, Counter("w", "", registry=registry), Counter("t", "", registry=registry))
    seen: dict[int, tuple[str, str]] = {}
    i = 0
    while True:  # two keys that share a byte (birthday: a few hundred tries)
        key = ("demo", f"/{i}")
        if (b := MissLocks.bucket(key)) in seen:
            first, second = seen[b], key
            break
        seen[b] = key
        i += 1

    async def run() -> None:
        released: list[str] = []
        one, two = Hold(lambda: released.append("one")), Hold(lambda: released.append("two"))
        await locks.acquire(first, one)
        await locks.acquire(second, two)  # ours already: taken at once
        assert locked_elsewhere(tmp_path / ".misslocks", b)
        two.release()
        assert locked_elsewhere(tmp_path / ".misslocks", b), "the first key's fetch still holds it"
        one.release()
        assert not locked_elsewhere(tmp_path / ".misslocks", b), "free once both let go"
        assert released == ["two", "one"]

    asyncio.run(run())
    locks.close()
