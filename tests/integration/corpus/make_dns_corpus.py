"""Write the DNS fuzz corpus: real queries, built with dnspython, one per file.

    python tests/integration/corpus/make_dns_corpus.py          # (re)write corpus/dns/*.bin
    python tests/integration/corpus/make_dns_corpus.py --check  # exit 1 if the files differ

The files are golden: the live fuzz test (tests/integration/test_dns_fuzz.py) mutates
them, so they are committed and only change when a seed is added here. Every query is
deterministic (fixed IDs, no clock), so --check holds on any machine.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.update

BASE = "akacdn.test"
OUT = Path(__file__).parent / "dns"

ECS4 = dns.edns.ECSOption("192.0.2.0", 24)
ECS4_32 = dns.edns.ECSOption("198.51.100.7", 32)
ECS4_0 = dns.edns.ECSOption("0.0.0.0", 0)
ECS6 = dns.edns.ECSOption("2001:db8:1234::", 56)
ECS_SCOPE = dns.edns.ECSOption("192.0.2.0", 24, 16)  # scope != 0 in a query: FORMERR (RFC 7871 7.1.1)
NSID = dns.edns.GenericOption(dns.edns.OptionType.NSID, b"")
COOKIE = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, bytes(range(1, 9)))
PADDING = dns.edns.GenericOption(dns.edns.OptionType.PADDING, bytes(32))
UNKNOWN = dns.edns.GenericOption(65001, b"\x01\x02\x03")
UNKNOWN_EMPTY = dns.edns.GenericOption(20292, b"")


def q(
    name: str,
    rdtype: str = "A",
    rdclass: str = "IN",
    *,
    edns: int = -1,
    payload: int = 1232,
    options: tuple[dns.edns.Option, ...] = (),
    flags: int = dns.flags.RD,
    ednsflags: int = 0,
    opcode: int = dns.opcode.QUERY,
) -> dns.message.Message:
    m = dns.message.make_query(name, rdtype, rdclass)
    m.flags = dns.flags.Flag(flags)
    m.set_opcode(opcode)
    if edns >= 0:
        m.use_edns(edns, ednsflags, payload, options=list(options))
    return m


def two_questions() -> dns.message.Message:
    m = q(f"a123.g.{BASE}")
    m.find_rrset(m.question, dns.name.from_text(f"n0g.{BASE}"), dns.rdataclass.IN, dns.rdatatype.A, create=True)
    return m


def no_question() -> dns.message.Message:
    m = dns.message.Message()
    m.flags = dns.flags.RD
    m.use_edns(0, 0, 1232, options=[COOKIE])  # a cookie-only query (RFC 7873 5.4)
    return m


def response() -> dns.message.Message:
    r = dns.message.make_response(q(f"a123.g.{BASE}"))
    r.answer.append(dns.rrset.from_text(f"a123.g.{BASE}.", 20, "IN", "A", "192.0.2.11"))
    return r


def notify() -> dns.message.Message:
    m = q(BASE, "SOA", flags=dns.flags.AA, opcode=dns.opcode.NOTIFY)
    m.answer.append(
        dns.rrset.from_text(f"{BASE}.", 1800, "IN", "SOA", f"za.{BASE}. hostmaster.{BASE}. 7 3600 600 604800 300")
    )
    return m


def update() -> dns.message.Message:
    u = dns.update.UpdateMessage(BASE)
    u.add("evil", 300, "A", "203.0.113.66")
    return u


def with_answer_section() -> dns.message.Message:
    m = q(f"a123.g.{BASE}")
    m.answer.append(dns.rrset.from_text(f"a123.g.{BASE}.", 20, "IN", "A", "203.0.113.1"))
    return m


def tsig_signed(m: dns.message.Message, qid: int) -> bytes:
    """A query with a TSIG record (fixed time and MAC, so the file is stable; our servers have no keys)."""
    m.id = qid
    wire = bytearray(m.to_wire())
    rdata = (
        dns.name.from_text("hmac-sha256").to_wire()
        + struct.pack("!HIH", 0, 1_700_000_000, 300)  # 48-bit time signed, fudge
        + struct.pack("!H", 32)
        + bytes(range(32))  # MAC
        + struct.pack("!HHH", m.id, 0, 0)  # original id, error, other len
    )
    rr = dns.name.from_text(f"key.{BASE}").to_wire() + struct.pack("!HHIH", 250, 255, 0, len(rdata)) + rdata
    wire[10:12] = struct.pack("!H", struct.unpack("!H", wire[10:12])[0] + 1)
    return bytes(wire) + rr


LONG = ".".join(c * 63 for c in "wxy") + ".z" * 20 + f".g.{BASE}"  # 251 bytes: close to the 255 limit
LABEL63 = "l" * 63 + f".g.{BASE}"
E0 = {"edns": 0}

SEEDS: dict[str, Callable[[], dns.message.Message | bytes]] = {
    # the LLNS answers: map names
    "llns-a123-a": lambda: q(f"a123.g.{BASE}"),
    "llns-a123-a-edns": lambda: q(f"a123.g.{BASE}", **E0),
    "llns-a123-aaaa": lambda: q(f"a123.g.{BASE}", "AAAA"),
    "llns-a123-any": lambda: q(f"a123.g.{BASE}", "ANY", edns=0, payload=4096),
    "llns-a123-txt-norec": lambda: q(f"a123.g.{BASE}", "TXT", flags=0),
    "llns-a123-upper": lambda: q(f"A123.G.{BASE.upper()}", **E0),
    "llns-a999-nx": lambda: q(f"a999.g.{BASE}"),
    "llns-a0123-nx": lambda: q(f"a0123.g.{BASE}"),
    "llns-deep-nx": lambda: q(f"x.a123.g.{BASE}", **E0),
    "llns-g-soa": lambda: q(f"g.{BASE}", "SOA"),
    "llns-g-ns": lambda: q(f"g.{BASE}", "NS", **E0),
    "llns-g-whoami": lambda: q(f"whoami.g.{BASE}"),
    # the TLNS answers: apex, NS names, referrals, QNAME minimisation
    "tlns-apex-soa": lambda: q(BASE, "SOA"),
    "tlns-apex-ns": lambda: q(BASE, "NS", **E0),
    "tlns-apex-a-nodata": lambda: q(BASE, "A"),
    "tlns-apex-dnskey-do": lambda: q(BASE, "DNSKEY", edns=0, ednsflags=dns.flags.DO),
    "tlns-apex-any": lambda: q(BASE, "ANY"),
    "tlns-apex-axfr": lambda: q(BASE, "AXFR"),
    "tlns-za-a": lambda: q(f"za.{BASE}"),
    "tlns-zh-aaaa": lambda: q(f"zh.{BASE}", "AAAA", **E0),
    "tlns-n0g-a": lambda: q(f"n0g.{BASE}", **E0),
    "tlns-n7g-a-ecs": lambda: q(f"n7g.{BASE}", edns=0, options=(ECS4,)),
    "tlns-whoami-a": lambda: q(f"whoami.{BASE}"),
    "tlns-whoami-aaaa": lambda: q(f"whoami.{BASE}", "AAAA", **E0),
    "tlns-qmin-underscore": lambda: q(f"_.g.{BASE}", **E0),
    "tlns-qmin-g-ns": lambda: q(f"g.{BASE}", "NS", flags=0),
    "tlns-g-ds": lambda: q(f"g.{BASE}", "DS", edns=0, ednsflags=dns.flags.DO),
    "tlns-nope-nx": lambda: q(f"nope.{BASE}"),
    # EDNS: client subnet, NSID, cookies, padding, unknown options, versions, buffers
    "ecs-v4-24": lambda: q(f"a123.g.{BASE}", edns=0, options=(ECS4,)),
    "ecs-v4-32": lambda: q(f"a123.g.{BASE}", edns=0, options=(ECS4_32,)),
    "ecs-v4-0": lambda: q(f"a123.g.{BASE}", edns=0, options=(ECS4_0,)),
    "ecs-v6-56": lambda: q(f"a123.g.{BASE}", "AAAA", edns=0, options=(ECS6,)),
    "ecs-scope-nonzero": lambda: q(f"a123.g.{BASE}", edns=0, options=(ECS_SCOPE,)),
    "ecs-nsid-cookie": lambda: q(f"a123.g.{BASE}", edns=0, options=(ECS4, NSID, COOKIE)),
    "nsid": lambda: q(BASE, "SOA", edns=0, options=(NSID,)),
    "padding-unknown-options": lambda: q(f"a123.g.{BASE}", edns=0, options=(UNKNOWN, PADDING, UNKNOWN_EMPTY)),
    "edns-version-1": lambda: q(BASE, "SOA", edns=1),
    "edns-payload-0": lambda: q(f"a123.g.{BASE}", edns=0, payload=0),
    "edns-payload-512-long": lambda: q(LONG, edns=0, payload=512),
    "edns-unknown-flags": lambda: q(f"a123.g.{BASE}", edns=0, ednsflags=0x7FFF),
    # flags and opcodes
    "flags-cd-ad": lambda: q(f"a123.g.{BASE}", flags=dns.flags.RD | dns.flags.CD | dns.flags.AD, **E0),
    "flags-tc-z": lambda: q(f"a123.g.{BASE}", flags=dns.flags.TC | 0x0040),
    "flags-aa-ra-rcode": lambda: q(BASE, "NS", flags=dns.flags.AA | dns.flags.RA | 3),
    "opcode-iquery": lambda: q(BASE, "SOA", opcode=dns.opcode.IQUERY),
    "opcode-status": lambda: q(BASE, "SOA", opcode=dns.opcode.STATUS, **E0),
    "opcode-3": lambda: q(BASE, "SOA", opcode=3),
    "opcode-15": lambda: q(BASE, "SOA", opcode=15),
    "notify-with-soa": notify,
    "update": update,
    "response-qr": response,
    # shapes: questions, sections, TSIG, long names
    "two-questions": two_questions,
    "no-question-cookie": no_question,
    "query-with-answer-section": with_answer_section,
    "tsig-unknown-key": lambda: tsig_signed(q(BASE, "SOA"), 0x7517),
    "long-name-251": lambda: q(LONG),
    "label-63": lambda: q(LABEL63, **E0),
    # CHAOS and other classes
    "chaos-hostname-bind": lambda: q("hostname.bind", "TXT", "CH"),
    "chaos-id-server-nsid": lambda: q("id.server", "TXT", "CH", edns=0, options=(NSID,)),
    "chaos-version-bind": lambda: q("version.bind", "TXT", "CH", flags=0),
    "chaos-authors-bind": lambda: q("authors.bind", "TXT", "CH"),
    "class-hs": lambda: q(BASE, "SOA", "HS"),
    "class-any": lambda: q(f"a123.g.{BASE}", "A", "ANY"),
    # outside our zones
    "out-example-com": lambda: q("www.example.com", **E0),
    "out-root-ns": lambda: q(".", "NS", edns=0, ednsflags=dns.flags.DO),
    "out-test-soa": lambda: q("test", "SOA"),
    "out-lookalike": lambda: q(f"x{BASE}"),
    "out-reverse-ptr": lambda: q("1.0.0.127.in-addr.arpa", "PTR", **E0),
}


def build() -> dict[str, bytes]:
    out = {}
    for i, (name, make) in enumerate(SEEDS.items()):
        got = make()
        if isinstance(got, dns.message.Message):
            got.id = 0x1000 + i
            got = got.to_wire()
        out[f"{i:02d}-{name}.bin"] = got
    return out


def main(argv: list[str]) -> int:
    files = build()
    if "--check" in argv:
        have = {p.name: p.read_bytes() for p in OUT.glob("*.bin")}
        if have != files:
            print(f"{OUT} differs from {__file__}: run it to rewrite", file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(exist_ok=True)
    for p in OUT.glob("*.bin"):
        p.unlink()
    for name, data in files.items():
        (OUT / name).write_bytes(data)
    print(f"wrote {len(files)} queries to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
