"""A center's roll watch: notices from daemons in, refused when forged or malformed
(and counted), quarantines persisted and adopted from the leader."""

from __future__ import annotations

import msgspec
from prometheus_client import generate_latest

from akacdn.config import Network
from akacdn.mapping.election import Status
from akacdn.mapping.messages import CenterStatus, RollNotice
from akacdn.mapping.rollwatch import RollWatch
from akacdn.messaging.receiver import Delivery
from akacdn.recovery.crash import CrashRecord
from akacdn.runtime import Runtime


def _note(sender: str, note: RollNotice | bytes) -> Delivery:
    body = note if isinstance(note, bytes) else msgspec.msgpack.encode(note)
    return Delivery(sender, "roll", 1, 1, 0.0, body, 1, False)


def _crash(machine: str, serial: int) -> RollNotice:
    rec = CrashRecord(1.0, machine, "edge", "InjectedFault: boom", "GET /death", serial)
    return RollNotice(machine, "edge", "rolled", 1.0, 1, crash=rec)


def _rt(net: Network) -> Runtime:
    return Runtime(net, net.machine("mc1"), "mapper")


def test_forged_and_malformed_notices_are_refused_and_counted(net: Network) -> None:
    rt = _rt(net)
    watch = RollWatch(rt)
    assert watch.on_roll(_note("r1-e2", _crash("r1-e1", 123))) is None  # one machine speaking for another
    assert watch.on_roll(_note("nobody", _crash("nobody", 123))) is None
    assert watch.on_roll(_note("r1-e1", b"\xc1not msgpack")) is None
    text = generate_latest(rt.registry).decode()
    assert 'akacdn_roll_notices_refused_total{reason="sender_mismatch"} 2.0' in text
    assert 'akacdn_roll_notices_refused_total{reason="malformed"} 1.0' in text
    assert not watch.recent and not watch.core.quarantines


def test_crashes_quarantine_a_serial_persisted_and_a_follower_adopts_it(net: Network) -> None:
    leader = RollWatch(_rt(net))
    for m in ("r1-e1", "r1-e2"):
        assert leader.on_roll(_note(m, _crash(m, 123))) is not None
    leader.decide(term=4)
    (q,) = leader.quarantines()
    assert q.serial == 123 and len(q.servers) == 3
    again = RollWatch(_rt(net))  # a restart reads the persisted set
    assert [x.serial for x in again.core.listed()] == [123] and again.core.version == leader.core.version
    follower_net = msgspec.structs.replace(net, state_dir=net.state_dir + "-mc2")
    follower = RollWatch(Runtime(follower_net, follower_net.machine("mc2"), "mapper"))
    cs = CenterStatus(Status("mc1", 4, "mc1", 4, 1.0), **leader.status_extra())
    follower.adopt(cs)
    assert [x.serial for x in follower.core.listed()] == [123]
    older = CenterStatus(Status("mc1", 2, "mc1", 2, 1.0), quarantines_version=(2, 9), quarantines=[])
    follower.adopt(older)  # an older leader's set is not taken
    assert [x.serial for x in follower.core.listed()] == [123]
