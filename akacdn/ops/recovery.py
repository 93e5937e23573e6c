"""Operator commands of recovery-oriented operation: `akacdn quarantine ...` (and the
status text of rolls, the mode and quarantines)."""

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


def ask(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """(status, JSON) from a center, or raises SystemExit with a clear line."""
    try:
        net = load_network(args.config)
    except ConfigError as e:
        raise SystemExit(_fail(f"config refused: {e}")) from None
    if method == "POST" and not net.operator_token:
        raise SystemExit(_fail(f"{args.config}: keys.operator_token is not set: the centers refuse operator orders"))
    try:
        return call(net, method, path, body, center=args.center)
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
