"""Smoke test of the akacdn Mininet lab (deploy/mininet/topo.py).

Run as root, from the project venv or system python::

    /work/main/.venv/bin/python deploy/mininet/smoke.py [--prefix mnx0] [--pingall]
        [--root-bridges] [--plain-stop | --mininet-stop] [--hold S] [-v]

Starts the topology, checks reachability (client -> every edge, every edge ->
origin, infra paths, and a parallel full mesh), reads an ARP entry on a client,
partitions two networks with an nftables rule on a router and removes it,
applies random loss with nftables (this kernel has no sch_netem), leaves two
stray processes in hosts (like future daemons), and always stops the net in
``finally``.  Then it compares root-namespace links, ``ip netns`` and processes
before/after.  Exit code 0 = every check passed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import topo as lab  # noqa: E402

FAILURES: list[str] = []
# root-namespace settings the lab must not touch (Mininet's fixLimits() would raise some)
ROOT_SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.disable_ipv6",
    "net.ipv6.conf.default.disable_ipv6",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.bridge.bridge-nf-call-arptables",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.ipv4.tcp_rmem",
    "net.ipv4.neigh.default.gc_thresh3",
    "kernel.pty.max",
)


def check(cond: bool, what: str) -> None:
    print(("  ok   " if cond else "  FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def ping(src, dst_ip: str, count: int = 1) -> bool:
    out = src.cmd(f"ping -n -c{count} -W1 {dst_ip}")
    return " 0% packet loss" in out


def loss_percent(src, dst_ip: str, count: int = 200) -> float:
    out = src.cmd(f"ping -n -q -c{count} -i 0.005 -W1 {dst_ip}")
    m = re.search(r"([\d.]+)% packet loss", out)
    return float(m.group(1)) if m else 100.0


def mesh(net, hosts) -> list[str]:
    """Every host pings every other host's primary address, in parallel per source."""
    info = net.topo.hostinfo
    failures = []
    for src in hosts:
        ips = " ".join(info[h.name].ip for h in hosts if h is not src)
        out = src.cmd(f"( for ip in {ips}; do (ping -n -c1 -W2 -q $ip >/dev/null || echo FAIL $ip) & done; wait )")
        failures += [f"{src.name} -> {line.split()[1]}" for line in out.splitlines() if line.startswith("FAIL")]
    return failures


def snapshot() -> dict:
    links = set(os.listdir("/sys/class/net"))
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    procs = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            cmd = lab._cmdline(int(p))
            if cmd:
                procs[int(p)] = cmd
    sysctls = {}
    for key in ROOT_SYSCTLS:
        try:
            with open("/proc/sys/" + key.replace(".", "/")) as f:
                sysctls[key] = f.read().strip()
        except OSError:
            sysctls[key] = None
    return {"links": links, "netns": set(netns.split("\n")) - {""}, "procs": procs, "sysctls": sysctls}


def interesting(cmd: str, prefix: str) -> bool:
    return any(k in cmd for k in ("mininet:", "mnexec", prefix, "sleep 60"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefix", default="mnx0")
    ap.add_argument("--regions", type=int, default=2)
    ap.add_argument("--client-nets", type=int, default=2)
    ap.add_argument("--pingall", action="store_true", help="also run Mininet's pingAll()")
    ap.add_argument("--root-bridges", action="store_true", help="bridges in the root netns (plain LinuxBridge)")
    ap.add_argument("--plain-stop", action="store_true", help="use only net.stop() and report what it leaves behind")
    ap.add_argument("--mininet-stop", action="store_true", help="stop_lab(fast=False): net.stop() + kill strays")
    ap.add_argument("--hold", type=float, default=0, help="sleep N s before stopping")
    ap.add_argument("-v", action="store_true", help="Mininet info logging")
    a = ap.parse_args()

    before = snapshot()
    t0 = time.monotonic()
    net = lab.build_lab(
        prefix=a.prefix,
        root_bridges=a.root_bridges,
        loglevel="info" if a.v else "warning",
        regions=a.regions,
        client_nets=a.client_nets,
    )
    t_start = time.monotonic() - t0
    plan = net.topo
    print(
        f"lab {a.prefix}: {len(net.hosts)} hosts ({len(plan.hosts_by_role('router'))} routers), "
        f"{len(net.switches)} bridges, {len(net.links)} links; start {t_start:.2f}s",
        flush=True,
    )
    inodes = {lab._netns_inode(n.pid) for n in lab.lab_nodes(net) if n.inNamespace}
    during = snapshot()
    t_stop = None
    try:
        H = net.get
        regions = sorted({h.region for h in plan.hostinfo.values() if h.role == "edge"})
        clients = [h for h in plan.hosts_by_role("client") if h.endswith("h1")]
        edges = plan.hosts_by_role("edge")
        origin_ip = plan.hostinfo["origin"].ip

        print("* root namespace untouched while running" if not a.root_bridges else "* root-namespace bridges")
        new_links = sorted(during["links"] - before["links"])
        if a.root_bridges:
            check(
                all(n.startswith(a.prefix) for n in new_links),
                f"new root links all carry the prefix ({len(new_links)}: {new_links[:4]}...)",
            )
        else:
            ours = {i.name for n in lab.lab_nodes(net) for i in n.intfList()} | {s.name for s in net.switches}
            mine = [n for n in new_links if n in ours]
            check(
                not mine,
                f"no lab interface in the root netns (ours there: {mine}; "
                f"{len(new_links) - len(mine)} new root links of others)",
            )
        check(during["netns"] == before["netns"], "ip netns list unchanged (Mininet uses unnamed netns)")
        changed = {k: (before["sysctls"][k], v) for k, v in during["sysctls"].items() if v != before["sysctls"][k]}
        check(not changed, f"root-netns sysctls unchanged while running {changed or ''}")

        print("* targeted pings")
        for c in clients:
            for e in edges:
                check(ping(H(c), plan.hostinfo[e].ip), f"{c} -> {e} ({plan.hostinfo[e].ip})")
        for e in edges:
            check(ping(H(e), origin_ip), f"{e} -> origin ({origin_ip})")
        for src, dst in (
            ("resolver", "tlns1"),
            ("mc1", "relay1"),
            ("r1e1", "mc2"),
            (f"r{regions[-1]}e1", "relay2"),
            ("c1h1", "resolver"),
        ):
            check(ping(H(src), plan.hostinfo[dst].ip), f"{src} -> {dst}")

        print("* full mesh (every host -> every other host, routers included)")
        t = time.monotonic()
        fails = mesh(net, net.hosts)
        n = len(net.hosts)
        check(not fails, f"{n * (n - 1)} pings in {time.monotonic() - t:.1f}s, failures: {fails[:5]}")
        if a.pingall:
            t = time.monotonic()
            lossp = net.pingAll(timeout=1)
            check(lossp == 0, f"Mininet pingAll: {lossp}% loss in {time.monotonic() - t:.1f}s")

        print("* ARP cache on a client")
        c1, gw = H("c1h1"), H("c1gw")
        neigh = c1.cmd("ip neigh show").strip()
        print("    c1h1$ ip neigh show\n" + "\n".join("      " + line for line in neigh.splitlines()))
        gw_mac = gw.MAC(intf="c1gw-eth0")
        check(
            re.search(rf"198\.19\.1\.1 dev c1h1-eth0 lladdr {gw_mac} \w+", neigh) is not None,
            f"c1h1 has ARP entry 198.19.1.1 -> {gw_mac} (c1gw-eth0)",
        )

        print("* nftables partition on r1gw: drop client net 1 <-> region 1")
        r1gw = H("r1gw")
        e1_ip = plan.hostinfo["r1e1"].ip
        rules = (
            "nft add table inet mnxlab && "
            "nft add chain inet mnxlab labfwd '{ type filter hook forward priority 0; policy accept; }' && "
            "nft add rule inet mnxlab labfwd ip saddr 198.19.1.0/24 ip daddr 198.18.1.0/24 drop && "
            "nft add rule inet mnxlab labfwd ip saddr 198.18.1.0/24 ip daddr 198.19.1.0/24 drop; echo rc=$?"
        )
        check("rc=0" in r1gw.cmd(rules), "nft rules added in r1gw's netns")
        print(
            "    r1gw$ nft list ruleset\n"
            + "\n".join("      " + line for line in r1gw.cmd("nft list ruleset").strip().splitlines())
        )
        check(not ping(c1, e1_ip), "c1h1 -> r1e1 blocked")
        check(ping(H("c2h1"), e1_ip), "c2h1 -> r1e1 still works")
        check(ping(c1, plan.hostinfo["r2e1"].ip), "c1h1 -> r2e1 still works")
        check(
            lab._netns_inode(os.getpid())
            and "mnxlab" not in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout,
            "root netns nftables untouched",
        )
        r1gw.cmd("nft delete table inet mnxlab")
        check(r1gw.cmd("nft list ruleset").strip() == "", "rule removed")
        check(ping(c1, e1_ip), "c1h1 -> r1e1 works again")

        print("* nftables random loss on origw (no netem on this kernel)")
        origw = H("origw")
        origw.cmd(
            "nft add table inet mnxloss; "
            "nft add chain inet mnxloss labfwd '{ type filter hook forward priority 0; policy accept; }'; "
            "nft add rule inet mnxloss labfwd ip daddr 198.18.200.0/24 numgen random mod 100 '<' 20 drop"
        )
        lp = loss_percent(H("r1e1"), origin_ip)
        check(8 <= lp <= 35, f"~20% loss towards origin: measured {lp}% of 200 pings")
        origw.cmd("nft delete table inet mnxloss")
        check(loss_percent(H("r1e1"), origin_ip, 50) == 0.0, "loss rule removed: 0% loss")

        print("* stray processes (like future daemons)")
        stray1 = H("r1e2").popen(["sleep", "600"])  # mnexec -da: detached, own session
        H("r2e2").cmd("sleep 601 &")
        time.sleep(0.2)
        check(stray1.poll() is None, f"popen'd sleep 600 runs in r1e2 (pid {stray1.pid})")
        if a.hold:
            time.sleep(a.hold)
    finally:
        t1 = time.monotonic()
        if a.plain_stop:
            net.stop()
        else:
            lab.stop_lab(net, fast=not a.mininet_stop)
        t_stop = time.monotonic() - t1
        how = "net.stop()" if a.plain_stop else f"stop_lab(fast={not a.mininet_stop})"
        print(f"* stopped in {t_stop:.2f}s ({how})", flush=True)

    # ------------------------------------------------------------------ leftovers
    time.sleep(0.3)
    leftover_pids = lab.processes_in_netns({i for i in inodes if i})
    after = snapshot()
    new_links = sorted(after["links"] - before["links"])
    new_procs = {p: c for p, c in after["procs"].items() if p not in before["procs"] and interesting(c, a.prefix)}
    print(f"    new root links after stop: {new_links}")
    print(f"    ip netns after stop: {sorted(after['netns'])}")
    print(f"    new mininet-ish processes after stop: {new_procs}")
    print(f"    processes still in the lab's namespaces: { {p: lab._cmdline(p) for p in leftover_pids} }")
    state_left = os.path.exists(lab.state_path(a.prefix))
    if a.plain_stop:
        print(
            f"    (plain net.stop() leaves {len(leftover_pids)} process(es); state file "
            f"left: {state_left}; cleaning precisely now)"
        )
        lab._kill_pids(leftover_pids)
        if state_left:
            os.unlink(lab.state_path(a.prefix))
        leftover_pids = lab.processes_in_netns({i for i in inodes if i})
        new_links = [n for n in os.listdir("/sys/class/net") if n.startswith(a.prefix)]
        state_left = False
    check(not [n for n in new_links if n.startswith(a.prefix)], "no lab link left in root netns")
    check(not leftover_pids, "no process left in the lab's namespaces")
    check(not state_left, "state file removed")
    changed = {k: (before["sysctls"][k], v) for k, v in after["sysctls"].items() if v != before["sysctls"][k]}
    check(not changed, f"root-netns sysctls unchanged after stop {changed or ''}")
    print(f"TIMING start={t_start:.2f}s stop={t_stop:.2f}s total={t_start + t_stop:.2f}s")
    print("SMOKE " + ("PASSED" if not FAILURES else f"FAILED: {FAILURES}"))
    return 0 if not FAILURES else 1


if __name__ == "__main__":
    sys.exit(main())
