"""The answer function as a daemon runs it: recovery-oriented operation around a zone's
pure answers (asyncio-free, per query on the slow path only; cached answers never get here).

- An exception in the zone's logic is a fault: the daemon rolls (`recovery.roll`), or,
  in the network's in-place mode, this query alone gets SERVFAIL (kind "bug").
- In the in-place mode a serial this daemon disabled gets SERVFAIL at once.
- Fault injection (labs, tests; an LLNS, `[faults] enabled`): queries for a serial's
  aNNN name crash, hang or answer a wrong address. Without it nothing is wrapped for it.
"""

from __future__ import annotations

from dnslib import QTYPE, RCODE, RR, A, DNSQuestion

from .. import serials
from ..recovery.inject import WRONG_ADDRESS, Injector
from ..runtime import Runtime
from .wire import Answer, AnswerFn, Client
from .zone import servfail


def serial_of(q: DNSQuestion) -> int:
    """The serial an aNNN.<subzone>.<base> question names (0: none)."""
    labels = q.qname.label
    return serials.serial_of_label(labels[0] if labels else b"")


def summarize(work: tuple[DNSQuestion, Client]) -> tuple[str, int]:
    q, client = work
    return f"{q.qname} {QTYPE.get(q.qtype)} from {client.address()}"[:300], serial_of(q)


def guarded(rt: Runtime, answer: AnswerFn) -> AnswerFn:
    """`answer` under the daemon's recovery (and fault injection, when enabled)."""
    rec = rt.recovery
    injector = Injector.build(rt.net) if rt.machine.role == "llns" else None
    if rec is None and injector is None:
        return answer
    if rec is not None:
        rec.summary = summarize
    ttl = rt.net.ttl.answer

    def run(q: DNSQuestion, client: Client) -> Answer:
        if rec is not None:
            rec.serving = (q, client)
            if rec.disabled and serial_of(q) in rec.disabled:
                return servfail("disabled")
        try:
            if injector is not None:
                serial = serial_of(q)
                if serial and injector.at_dns(serial) == "wrong":
                    rr = RR(q.qname, QTYPE.A, ttl=ttl, rdata=A(WRONG_ADDRESS))
                    return Answer(RCODE.NOERROR, True, [rr], [], [], "answer")
            return answer(q, client)
        except Exception as e:
            if rec is not None:
                rec.failed(e, (q, client))  # rolls; in the in-place mode returns: SERVFAIL for this one
            raise

    return run
