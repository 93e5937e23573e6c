"""`akacdn <daemon|tool> ...`: one entry point for every daemon and tool."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .config import ConfigError, Network, load_network

DAEMONS: dict[str, tuple[str, str]] = {
    "tlns": ("top-level nameserver: the base domain and referrals to LLNSes", "akacdn.dns.daemons:nameserver_main"),
    "llns": ("low-level nameserver: edge addresses for aNNN serial names", "akacdn.dns.daemons:nameserver_main"),
    "edge": ("edge cache: HTTP for configured customers, origin on a miss", "akacdn.edge.server:main"),
    "mapper": ("mapping center: heartbeats in, signed maps out", "akacdn.mapping.center:main"),
    "relay": ("messaging relay: forwards each message to its topic's subscribers", "akacdn.messaging.relay:main"),
    "agent": ("region agent: heartbeats with region peers, IP takeover of dead ones", "akacdn.region.agent:main"),
}


def _fail(msg: str) -> int:
    print(f"akacdn: {msg}", file=sys.stderr)
    return 2


def _load(path: str) -> Network | int:
    try:
        return load_network(path)
    except ConfigError as e:
        return _fail(f"config refused: {e}")


def _import(ref: str) -> Callable[..., Awaitable[None]]:
    import importlib

    mod, _, attr = ref.partition(":")
    return getattr(importlib.import_module(mod), attr)  # type: ignore[no-any-return]


def run_daemon(role: str, args: argparse.Namespace) -> int:
    net = _load(args.config)
    if isinstance(net, int):
        return net
    try:
        machine = net.machine(args.machine)
    except KeyError:
        return _fail(f"{args.config}: no machine {args.machine!r}")
    if role == "agent" and not machine.host_address:
        return _fail(f"machine {machine.id!r} has no host_address: it takes no part in IP takeover")
    if role == "agent" and machine.role not in ("edge", "llns"):
        return _fail(f"machine {machine.id!r} is a {machine.role}: IP takeover is for edge and LLNS machines")
    if machine.role != role and role != "agent":
        return _fail(f"machine {machine.id!r} has role {machine.role!r}, not {role!r}")
    if args.check_config:
        print(f"{net.path}: ok ({len(net.machines)} machines, {len(net.customers)} customers)")
        return 0
    from .recovery.roll import Recovery, gate
    from .runtime import Runtime, run

    main = _import(DAEMONS[role][1])
    rt = Runtime(net, machine, role)
    recovery = Recovery(rt)
    # the start gate first (long-sleep, if this daemon keeps rolling), before any worker forks
    run(lambda: gate(rt, recovery), fast_loop=role != "agent", reload=lambda: None, log=rt.log)
    if not recovery.awake:
        recovery.stopped()  # stopped while asleep: an operator's stop, not a roll
        return 0
    workers = net.dns.workers if role in ("tlns", "llns") else net.edge.workers if role == "edge" else 1
    links: list[object] = []
    if workers > 1:
        from .workers import fork_workers

        worker_main = _import(DAEMONS[role][1].rsplit(":", 1)[0] + ":worker_main")

        def worker(index: int, link: object) -> int:
            wrt = Runtime(net, machine, f"{role}-worker{index}")
            Recovery(wrt).policy.log.running = False  # its rolls are the parent's: only faults and records here
            # reloads come from the parent; only the parent talks to systemd
            os.environ.pop("NOTIFY_SOCKET", None)
            return _supervised(wrt, lambda: worker_main(wrt, link), True, lambda: None)

        links = fork_workers(workers - 1, worker)

    def daemon() -> Awaitable[None]:
        return main(rt, links) if links else main(rt)

    # pyroute2 0.9 fails on uvloop: the region agent runs on the stock loop, the rest on uvloop
    return _supervised(rt, daemon, role != "agent", rt.reload)


def _supervised(rt: Any, main: Callable[[], Awaitable[None]], fast_loop: bool, reload: Callable[[], object]) -> int:
    """Run a daemon's main with its recovery watch; a crash that escapes it is a roll (crash
    record, exit 70), a clean stop is not."""
    from .runtime import run

    async def watched() -> None:
        watch = asyncio.create_task(rt.recovery.watch())
        try:
            await main()
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)

    try:
        code = run(watched, fast_loop=fast_loop, reload=reload, log=rt.log)
    except Exception as e:  # the daemon crashed outside any request: roll
        rt.recovery.roll(e)
        raise
    if code == 0:
        rt.recovery.stopped()
    return code


def run_devnet(args: argparse.Namespace) -> int:
    from .devnet.network import default_layout
    from .devnet.supervisor import Devnet, hints

    lay = default_layout(args.net)
    if args.dns_port:
        lay = type(lay)(lay.net, args.dns_port, lay.http_port)
    if args.http_port:
        lay = type(lay)(lay.net, lay.dns_port, args.http_port)
    dn = Devnet(Path(args.dir).resolve(), lay)
    stop = []

    def on_sigterm(*_: object) -> None:
        if dn.procs and not stop and not started:
            raise KeyboardInterrupt  # still starting: stop at once
        stop.append(1)

    started = []
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        print(f"starting devnet in {dn.dir} (DNS port {lay.dns_port}, HTTP port {lay.http_port}) ...", flush=True)
        dn.start(timeout=args.timeout)
        started.append(1)
        print(hints(dn), flush=True)
        seen = 0
        while not stop:
            # restart like systemd would (Restart=always), so the network heals by itself
            dn.restart_exited()
            for _, name, code in dn.restarts[seen:]:
                print(f"devnet: {name} exited with {code}; restarted", flush=True)
            seen = len(dn.restarts)
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError) as e:
        print(f"devnet failed to start: {e}", file=sys.stderr)
        return 1
    finally:
        print("stopping devnet ...", flush=True)
        dn.stop()
    return 0


def run_origin(args: argparse.Namespace) -> int:
    from .devnet.origin import serve
    from .runtime import run

    host, _, port = args.listen.rpartition(":")
    return run(lambda: serve(host, int(port)))


def run_responder(args: argparse.Namespace) -> int:
    from .devnet.responder import main as responder

    return responder([*(a for listen in args.listen for a in ("--listen", listen)), "--control", args.control])


def run_purge(args: argparse.Namespace) -> int:
    """Ask one edge to purge (it applies the purge and publishes it to every edge)."""
    import json
    import urllib.error
    import urllib.request

    net = _load(args.config)
    if isinstance(net, int):
        return net
    edges = net.by_role("edge")
    try:
        edge = net.machine(args.edge) if args.edge else edges[0]
    except (KeyError, IndexError):
        return _fail(f"no edge {args.edge or ''!r} in {args.config}")
    kind, values = (
        ("url", args.url) if args.url else ("customer", args.customer) if args.customer else ("serial", args.serial)
    )
    req = urllib.request.Request(
        f"http://{edge.address}:{net.ports.management}/purge",
        data=json.dumps({"kind": kind, "values": values}).encode(),
        headers={"Authorization": f"Bearer {net.purge_token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (an address from the config)
            print(r.read().decode())
            return 0
    except urllib.error.HTTPError as e:
        return _fail(f"purge refused by {edge.id}: {e.code} {e.read().decode().strip()}")
    except OSError as e:
        return _fail(f"cannot reach {edge.id} at {edge.address}: {e}")


def _ask(
    net: Network, args: argparse.Namespace, method: str, path: str, body: dict[str, str] | None = None
) -> tuple[int, Any] | int:
    """(HTTP status, JSON) from a mapping center (`--center`, or the first that answers),
    or an exit code after saying why none could be asked."""
    from .ops.client import NoCenter, call

    try:
        return call(net, method, path, body, center=args.center)
    except NoCenter as e:
        return _fail(f"no mapping center answered: {e}")
    except KeyError:
        return _fail(f"no mapping center {args.center!r} in {args.config}")


def _show(args: argparse.Namespace, path: str, params: list[str], render: Callable[[Any], str]) -> int:
    """GET a mapping center's view and print it (as text, or the JSON with --json)."""
    import json

    net = _load(args.config)
    if isinstance(net, int):
        return net
    got = _ask(net, args, "GET", path + ("?" + "&".join(params) if params else ""))
    if isinstance(got, int):
        return got
    code, doc = got
    if code != 200:
        return _fail(f"{path} refused: {code} {doc}")
    print(json.dumps(doc, indent=2) if args.json else render(doc))
    return 0


def run_status(args: argparse.Namespace) -> int:
    """The network as the leading mapping center sees it (any center answers, forwarding)."""
    from .ops.status import render

    return _show(args, "/v1/status", ["local=1"] if args.local else [], render)


def run_mapping(args: argparse.Namespace) -> int:
    """Measured mapping as the leading mapping center sees it: regions' load, routes, moves."""
    from urllib.parse import quote

    from .ops.mapping import render

    params = ["local=1"] if args.local else []
    params += [f"network={quote(args.network)}"] if args.network else []
    return _show(args, "/v1/mapping", params, render)


def run_order(args: argparse.Namespace, suspend: bool) -> int:
    """Suspend or resume a machine or a region (any center takes it; the leader carries it out)."""
    import json

    net = _load(args.config)
    if isinstance(net, int):
        return net
    if not net.operator_token:
        return _fail(f"{args.config}: keys.operator_token is not set: the centers refuse operator orders")
    body = {"kind": args.kind, "id": args.id, "reason": getattr(args, "reason", "") or ""}
    got = _ask(net, args, "POST", f"/v1/operator/{'suspend' if suspend else 'resume'}", body)
    if isinstance(got, int):
        return got
    code, doc = got
    if code != 200:
        return _fail(f"refused: {(doc or {}).get('error', code) if isinstance(doc, dict) else code}")
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        what = "suspended" if suspend else "resumed"
        print(f"{args.kind} {args.id} {what} by {doc['by']} (term {doc['term']})" if doc["done"] else
              f"{args.kind} {args.id}: nothing to change")  # fmt: skip
    return 0


def run_keygen(args: argparse.Namespace) -> int:
    """A mapping center's Ed25519 key: the private key to a file, the public key printed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    path = Path(args.out)
    if path.exists() and not args.force:
        return _fail(f"{path} exists (use --force to replace it)")
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex() + "\n")
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    print(f'public_key = "{public}"  # for this mapping center\'s [[machines]] entry')
    return 0


def run_check(args: argparse.Namespace) -> int:
    net = _load(args.config)
    if isinstance(net, int):
        return net
    print(f"{net.path}: ok ({len(net.machines)} machines, {len(net.customers)} customers)")
    return 0


def run_akamaize(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from .edge.akamaize import Akamaizer

    net = _load(args.config)
    if isinstance(net, int):
        return net
    customer = next((c for c in net.customers if c.name == args.customer), None)
    if customer is None:
        known = ", ".join(c.name for c in net.customers) or "none"
        return _fail(f"no customer {args.customer!r} in {net.path} (customers: {known})")
    if not customer.hostnames:
        return _fail(f"customer {customer.name!r} has no hostnames: no URL of its pages could move to the edge")
    if args.page_url:
        try:
            parts = urlsplit(args.page_url)
            host = (parts.hostname or "").rstrip(".")
        except ValueError:
            parts, host = None, ""
        if parts is None or parts.scheme not in ("http", "https") or host not in customer.hostnames:
            return _fail(
                f"--page-url {args.page_url!r} is not an http(s) URL on one of {customer.name!r}'s hostnames "
                f"({', '.join(customer.hostnames)})"
            )
    subzone = "g" if "g" in net.map_subzones else net.map_subzones[0]
    # bytes in, bytes out: undecodable bytes survive (surrogateescape), so the rest of
    # the page is copied byte for byte whatever its ASCII-compatible charset
    page = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
    result = Akamaizer(customer, net.base_domain, subzone=subzone).page(page, args.page_url)
    sys.stdout.buffer.write(result.html.encode("utf-8", "surrogateescape"))
    sys.stdout.buffer.flush()
    if args.verbose:
        for r in result.rewrites:
            said = r.edge_url if r.edge_url is not None else f"kept: {r.reason}"
            print(f"{r.url} -> {said}", file=sys.stderr)
        print(f"akamaize: {len(result.changed)} of {len(result.rewrites)} URLs moved to the edge", file=sys.stderr)
    return 0


def _octet(text: str) -> int:
    """An address octet, 0-255."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n <= 255:
        raise argparse.ArgumentTypeError(f"{text!r} is not an address octet (0-255)")
    return n


def _center_view(d: argparse.ArgumentParser) -> None:
    """The arguments of a command that shows a mapping center's view."""
    d.add_argument("--config", required=True, help="network TOML file")
    d.add_argument("--center", default="", help="ask this mapping center (default: the first that answers)")
    d.add_argument("--local", action="store_true", help="that center's own view, not the leader's")
    d.add_argument("--json", action="store_true", help="the JSON document, for scripts")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="akacdn",
        description="akacdn: an open CDN after Akamai's published architecture. "
        "Each daemon runs as `akacdn <role> --config network.toml --machine ID`.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="<command>")
    for role, (doc, _) in DAEMONS.items():
        d = sub.add_parser(role, help=doc, description=f"Run the {doc}.")
        d.add_argument("--config", required=True, help="network TOML file (it names the customers file)")
        d.add_argument("--machine", required=True, help="this machine's id in the network file")
        d.add_argument("--check-config", action="store_true", help="validate the config and exit")
        d.set_defaults(func=lambda a, role=role: run_daemon(role, a))
    d = sub.add_parser(
        "devnet",
        help="run the whole network on this machine (loopback addresses)",
        description="Start 1 mapping center, 2 relays, 2 TLNS, 3 regions of 1 LLNS + 3 edges and a demo "
        "origin, each its own process on 127.<net>.x.y; print the dig/curl lines to try; Ctrl-C stops all.",
    )
    d.add_argument("--dir", default="run/devnet", help="where config, state and logs go (default run/devnet)")
    d.add_argument("--net", type=_octet, default=0, help="second octet of the 127.x.y.z addresses (default 0)")
    d.add_argument("--dns-port", type=int, default=0, help="DNS port (default 53 as root, else 5353)")
    d.add_argument("--http-port", type=int, default=0, help="HTTP port (default 80 as root, else 8080)")
    d.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for readiness")
    d.set_defaults(func=run_devnet)
    d = sub.add_parser("origin", help="run the demo origin web site", description="Serve the demo site.")
    d.add_argument("--listen", required=True, help="ADDRESS:PORT")
    d.set_defaults(func=run_origin)
    d = sub.add_parser(
        "responder",
        help="a probe responder for labs: answers DNS probes after a delay per asking network",
        description="Answer every DNS query with an empty reply after a delay chosen by the query's source (the "
        "longest prefix of the control file's table): emulated RTT for measured mapping, where there is no netem.",
    )
    d.add_argument("--listen", action="append", required=True, metavar="ADDR:PORT", help="where to answer (repeatable)")
    d.add_argument("--control", required=True, metavar="FILE", help='{"default": s, "prefixes": {"10.1.0.0/24": s}}')
    d.set_defaults(func=run_responder)
    d = sub.add_parser(
        "purge",
        help="purge cached objects on every edge (by URL, customer or serial)",
        description="Send a purge to one edge's management API; it applies it and publishes it to every edge.",
    )
    d.add_argument("--config", required=True, help="network TOML file (has the purge token)")
    what = d.add_mutually_exclusive_group(required=True)
    what.add_argument("--url", nargs="+", help="absolute URLs, e.g. http://www.demo.example/img/logo.png")
    what.add_argument("--customer", nargs="+", help="customer names: everything of theirs")
    what.add_argument("--serial", nargs="+", help="serial numbers: everything of those customers")
    d.add_argument("--edge", default="", help="the edge machine to ask (default: the first edge)")
    d.set_defaults(func=run_purge)
    d = sub.add_parser(
        "status",
        help="the network as the mapping centers see it: leader, centers, regions, machines, maps, suspensions",
        description="Ask a mapping center (the first that answers; it forwards to the leader) for the state of the "
        "network: the leader and its term, every center's connectivity, regions, every machine (live, down, "
        "unhealthy, suspended, damped, with the reason), the map version and age at every nameserver.",
    )
    _center_view(d)
    d.set_defaults(func=run_status)
    d = sub.add_parser(
        "mapping",
        help="measured mapping: each region's load, each client network's route, the last moves",
        description="Ask a mapping center (it forwards to the leader) where each client network is mapped: its "
        "ranked regions (and weights while a move ramps), each region's load and capacity, the moves of the last "
        "allocation cycle and why; with --network, that network's measured RTT and loss per region.",
    )
    _center_view(d)
    d.add_argument("--network", default="", help="one client network (its prefix), with its measured paths")
    d.set_defaults(func=run_mapping)
    for verb, doc in (("suspend", "take a machine or a whole region out of every map (it keeps running)"),
                      ("resume", "put a suspended machine or region back into the maps")):  # fmt: skip
        desc = f"{doc[0].upper()}{doc[1:]}. Needs keys.operator_token; any mapping center takes it and the leader "
        desc += "carries it out; it survives a change of leader."
        d = sub.add_parser(verb, help=doc, description=desc)
        d.add_argument("kind", choices=["machine", "region"])
        d.add_argument("id", help="the machine's or region's id in the network file")
        if verb == "suspend":
            d.add_argument("--reason", required=True, help="why (shown by akacdn status)")
        d.add_argument("--config", required=True, help="network TOML file (has the operator token)")
        d.add_argument("--center", default="", help="ask this mapping center (default: the first that answers)")
        d.add_argument("--json", action="store_true", help="the center's answer as JSON")
        d.set_defaults(func=lambda a, verb=verb: run_order(a, verb == "suspend"))
    from .ops.recovery import add_parsers

    add_parsers(sub)
    d = sub.add_parser(
        "akamaize",
        help="rewrite a customer's HTML page so its static objects load from the edge",
        description="Read an HTML page on stdin, write it to stdout with the embedded static objects "
        "(img, script, stylesheet, media, srcset, CSS url()) on the customer's hostnames rewritten to edge "
        "URLs (ARL or CNAME form, per the customer's config). Dynamic paths (the customer's `dynamic` globs) "
        "stay on the origin; every other byte is copied unchanged.",
    )
    d.add_argument("--config", required=True, help="network TOML file (it names the customers file)")
    d.add_argument("--customer", required=True, help="the customer's name in the customers file")
    d.add_argument("--page-url", default="", help="where the page is served (default http://<first hostname>/)")
    d.add_argument("-v", "--verbose", action="store_true", help="list each URL and what became of it on stderr")
    d.set_defaults(func=run_akamaize)
    d = sub.add_parser(
        "keygen",
        help="make a mapping center's Ed25519 key pair",
        description="Write a mapping center's private key (hex, mode 0600) and print its public_key line.",
    )
    d.add_argument("--out", required=True, help="where the private key goes, e.g. /etc/akacdn/keys/mc1.key")
    d.add_argument("--force", action="store_true", help="replace an existing key file")
    d.set_defaults(func=run_keygen)
    d = sub.add_parser("check-config", help="validate a network file and its customers file")
    d.add_argument("config")
    d.set_defaults(func=run_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `akacdn status | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
