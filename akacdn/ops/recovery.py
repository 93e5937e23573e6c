"""Operator commands of recovery-oriented operation: `akacdn quarantine ...`, `akacdn
release ...` (and the status text of rolls, the mode, quarantines and the release)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..config import ConfigError, load_network
from .client import NoCenter, call


def _fail(msg: str) -> int:
    print(f"akacdn: {msg}", file=sys.stderr)
    return 2


def ask(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None, raw: bytes = b""
) -> tuple[int, Any]:
    """(status, JSON) from a center, or raises SystemExit with a clear line."""
    try:
        net = load_network(args.config)
    except ConfigError as e:
        raise SystemExit(_fail(f"config refused: {e}")) from None
    if method == "POST" and not net.operator_token:
        raise SystemExit(_fail(f"{args.config}: keys.operator_token is not set: the centers refuse operator orders"))
    try:
        return call(net, method, path, body, center=args.center, raw=raw)
    except NoCenter as e:
        raise SystemExit(_fail(f"no mapping center answered: {e}")) from None
    except KeyError:
        raise SystemExit(_fail(f"no mapping center {args.center!r} in {args.config}")) from None


def run_quarantine(args: argparse.Namespace) -> int:
    """List, add, extend or lift quarantines (any center takes it; the leader carries it out)."""
    if args.action == "list":
        code, doc = ask(args, "GET", "/v1/status")
        if code != 200:
            return _fail(f"status refused: {code} {doc}")
        print(json.dumps(doc.get("quarantines", []), indent=2) if args.json else render_quarantines(doc))
        return 0
    if args.serial is None:
        return _fail(f"quarantine {args.action}: say which serial")
    body = {"action": args.action, "serial": args.serial, "seconds": args.seconds, "reason": args.reason}
    code, doc = ask(args, "POST", "/v1/operator/quarantine", body)
    if code != 200:
        return _fail(f"refused: {(doc or {}).get('error', code) if isinstance(doc, dict) else code}")
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"serial {args.serial}: {args.action} done by {doc['by']} (term {doc['term']})")
        print(render_quarantines(doc))
    return 0


def _when(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def render_quarantines(doc: dict[str, Any]) -> str:
    qs = doc.get("quarantines", [])
    lines = ["quarantines:" + ("" if qs else " none")]
    for q in qs:
        lines.append(f"  serial {q['serial']}: only on {', '.join(q['servers'])} until {_when(q['until'])} "
                     f"({q['by']}: {q['reason']})")  # fmt: skip
    return "\n".join(lines)


def render_recovery(doc: dict[str, Any]) -> str:
    """The mode, quarantines, machines asleep and the newest rolls (for `akacdn status`)."""
    mode = doc.get("mode", "roll")
    lines = [f"recovery mode: {mode}" + (f" (ALARM: {doc.get('mode_reason')})" if mode == "in_place" else "")]
    lines.append(render_quarantines(doc))
    for m, until in sorted(doc.get("asleep", {}).items()):
        lines.append(f"  {m}: long-sleep until {_when(until)}")
    rolls = [r for r in doc.get("rolls", []) if r["kind"] == "rolled"][-5:]
    if rolls:
        lines.append("latest rolls:")
        for r in rolls:
            what = f" serial {r['serial']}" if r.get("serial") else ""
            lines.append(
                f"  {_when(r['at'])} {r['machine']}/{r['component']}{what}: {r.get('error', 'no crash record')}"
            )
    return "\n".join(lines)


def add_parsers(sub: Any) -> None:
    add_release_parser(sub)
    d = sub.add_parser(
        "quarantine",
        help="see, add, extend or lift quarantines (a serial constrained to a few servers per region)",
        description="A serial whose requests crash servers is quarantined automatically by the leading mapping "
        "center: the low-level map constrains it to a few edges per region. Operators see, add, extend and "
        "lift quarantines here (needs keys.operator_token for changes; any center takes it).",
    )
    d.add_argument("action", choices=["list", "add", "extend", "lift"])
    d.add_argument("serial", nargs="?", type=int, help="the customer's serial")
    d.add_argument(
        "--seconds", type=float, default=0.0, help="add, extend: for how long (default [recovery] quarantine_hold)"
    )
    d.add_argument("--reason", default="", help="add: why (shown by akacdn status)")
    d.add_argument("--config", required=True, help="network TOML file (has the operator token)")
    d.add_argument("--center", default="", help="ask this mapping center (default: the first that answers)")
    d.add_argument("--json", action="store_true", help="the answer as JSON")
    d.set_defaults(func=run_quarantine)


def run_release(args: argparse.Namespace) -> int:
    """Submit a signed bundle to the leader and, with --wait, follow its phases; or show
    the release in progress and the history."""
    if args.action == "submit":
        return _submit(args)
    code, doc = ask(args, "GET", "/v1/release")
    if code != 200:
        return _fail(f"refused: {code} {doc}")
    if args.json:
        print(json.dumps(doc if args.action == "history" else doc.get("release"), indent=2))
    elif args.action == "history":
        for h in doc.get("history", []):
            why = f" ({h['reason']})" if h["reason"] else ""
            print(f"{h['bundle']} {h['type']} {h['version'] or '-'}: {h['state']}{why}")
            print("\n".join(f"  {line}" for line in h["timeline"]))
    else:
        print(render_release(doc))
    return 0


def _submit(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ..recovery.bundle import make

    if not args.key or not args.signer:
        return _fail("release submit: --key and --signer are needed (a release signer's private key and id)")
    try:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(open(args.key).read().strip()))
        content = open(args.file, "rb").read() if args.file else b""
    except (OSError, ValueError) as e:
        return _fail(f"release submit: {e}")
    if args.type != "software" and not content:
        return _fail(f"release submit: a {args.type} release needs --file")
    data = make(key, args.signer, args.type, content, args.version)
    code, doc = ask(args, "POST", "/v1/operator/release", raw=data)
    if code != 200:
        return _fail(f"release refused: {(doc or {}).get('error', code) if isinstance(doc, dict) else code}")
    print(f"release {doc['id']} ({doc['type']} {doc['version'] or ''}) accepted by {doc['by']} (term {doc['term']})")
    if not args.wait:
        print(render_release(doc))
        return 0
    return _follow(args, doc["id"])


def _follow(args: argparse.Namespace, bid: str) -> int:
    """Print each timeline line as it changes until the release is done or aborted."""
    shown: list[str] = []
    while True:
        code, doc = ask(args, "GET", "/v1/release")
        rel = doc.get("release") if code == 200 else None
        if rel is not None and rel["bundle"] == bid:
            for line in rel["timeline"]:
                if line not in shown and "not started" not in line:
                    print(f"  {line}", flush=True)
                    shown.append(line)
            if rel["state"] in ("done", "aborted"):
                print(render_release(doc))
                return 0 if rel["state"] == "done" else 1
        time.sleep(1.0)


def render_release(doc: dict[str, Any]) -> str:
    rel = doc.get("release")
    if not rel:
        return "release: none yet"
    head = f"release {rel['bundle']} ({rel['type']} {rel['version'] or '-'}): {rel['state']}"
    if rel["state"] == "running":
        head += f", phase {rel['phase']}"
    if rel["reason"]:
        head += f"; {rel['reason']}"
    lines = [head, *(f"  {line}" for line in rel["timeline"])]
    on = sum(1 for b in rel["running"].values() if b == rel["bundle"])
    lines.append(f"  machines running it: {on} of {len(rel['running'])} heard")
    return "\n".join(lines)


def add_release_parser(sub: Any) -> None:
    d = sub.add_parser(
        "release",
        help="zoned releases: submit a signed bundle (one machine, one region, world), see progress and history",
        description="Submit a signed release bundle (customer configuration, system configuration, or a software "
        "version) to the leading mapping center, which rolls it out in phases (one machine; one region without "
        "that machine; the world) with the paper's minimum phase durations (times [release] time_scale), health "
        "checks between phases and automatic abort and rollback. `status` shows the release in progress, "
        "`history` the finished ones with their timelines.",
    )
    d.add_argument("action", choices=["submit", "status", "history"])
    d.add_argument("--type", choices=["customer", "system", "software"], default="customer")
    d.add_argument("--file", default="", help="submit: the customers file, or the system TOML ([ttl], [dns], [edge])")
    d.add_argument("--version", default="", help="submit: a label, or the software version")
    d.add_argument("--key", default="", help="submit: the release signer's Ed25519 private key file (hex)")
    d.add_argument("--signer", default="", help="submit: the signer's id in keys.release_signers")
    d.add_argument("--wait", action="store_true", help="submit: follow the phases until done or aborted (exit 1)")
    d.add_argument("--config", required=True, help="network TOML file (has the operator token)")
    d.add_argument("--center", default="", help="ask this mapping center (default: the first that answers)")
    d.add_argument("--json", action="store_true", help="the answer as JSON")
    d.set_defaults(func=run_release)
