"""Part 1: restart-to-serving per daemon.

Spawned by hand: the daemon's process is SIGKILLed (`Devnet.kill`: the supervisor does
not restart it), then started again at once (`start_machine`); the time runs from the
spawn until the daemon serves (`net.serving_probe`: a DNS answer, a 200 for the demo
page, a 200 on /readyz). For the mapping center /healthz (alive) is timed too: its
readiness includes a warm-up of `[timing] dead_after`, listening to heartbeats before
it builds a map.

Supervised: the process is SIGKILLed and left to the devnet's supervisor (which looks
for exited processes every 0.1 s, like systemd's Restart=always); the time runs from
the kill.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from akacdn.devnet.supervisor import Devnet

from . import net

# the daemon of each kind that is killed: the standby mapping center, so the maps stay put
VICTIMS = {"tlns": "tlns1", "llns": "r1-llns", "edge": "r1-e1", "relay": "relay1", "mapper": "mc2"}
SUPERVISED = ("llns", "edge")
TIMEOUT = 30.0


def _settle(dn: Devnet, machine: str, probe: Callable[[], bool]) -> None:
    """Before a trial: the machine serves and is ready, then a random pause (so kills
    fall at any phase of its timers)."""
    net.wait(f"{machine} to serve", probe, TIMEOUT)
    net.wait(f"{machine} to be ready", lambda: net.management(dn, machine, "/readyz") == 200, TIMEOUT)
    time.sleep(random.uniform(0.3, 0.8))


def spawned(dn: Devnet, machine: str) -> dict[str, float]:
    """One trial: SIGKILL, spawn at once; seconds from the spawn until serving (and, for a
    mapping center, until alive)."""
    probe = net.serving_probe(dn, machine)
    _settle(dn, machine, probe)
    dn.kill(machine)
    t0 = time.monotonic()
    dn.start_machine(machine)
    row: dict[str, float] = {}
    if dn.net.machine(machine).role == "mapper":
        row["alive"] = net.until(lambda: net.management(dn, machine, "/healthz", 0.5) == 200, t0, TIMEOUT)
    row["seconds"] = net.until(probe, t0, TIMEOUT)
    return row


def supervised(dn: Devnet, machine: str) -> dict[str, float]:
    """One trial: SIGKILL, the supervisor restarts it; seconds from the kill until serving."""
    probe = net.serving_probe(dn, machine)
    _settle(dn, machine, probe)
    t0 = time.monotonic()
    dn.crash(machine)
    return {"seconds": net.until(probe, t0, TIMEOUT)}


def run(dn: Devnet, trials: int, say: Callable[[str], None]) -> dict[str, list[dict[str, float]]]:
    """Every kind's trials: {"tlns": [...], ..., "llns (supervised)": [...]}."""
    out: dict[str, list[dict[str, float]]] = {}
    for kind, machine in VICTIMS.items():
        rows = out[kind] = []
        for _ in range(trials):
            rows.append(spawned(dn, machine))
        say(f"{kind} ({machine}) restart-to-serving: " + " ".join(f"{r['seconds']:.3f}" for r in rows))
    for kind in SUPERVISED:
        machine = VICTIMS[kind]
        rows = out[f"{kind} (supervised)"] = []
        for _ in range(trials):
            rows.append(supervised(dn, machine))
        say(f"{kind} ({machine}) crash-to-serving, supervised: " + " ".join(f"{r['seconds']:.3f}" for r in rows))
    return out
