"""The edge benchmark's machine side: its Debian packages and their versions. The rest
(installing without starting services, processes, CPU time of a process tree, machine
facts) is bench/dns's, imported from there."""

from __future__ import annotations

from bench.dns.system import CLK_TCK, Procs, _first_line, install_debs, machine_info, tree_cpu

DEBS = ("nginx", "varnish", "wrk")
# init scripts these packages bring and the daemons they start (kept stopped at install)
SERVICES = {"nginx": "nginx", "varnish": "varnishd"}
BINARIES = ("nginx", "varnishd", "wrk")

__all__ = ["CLK_TCK", "Procs", "install", "machine_info", "say", "tree_cpu", "versions"]


def say(msg: str) -> None:
    print(f"bench-edge: {msg}", flush=True)


def install() -> None:
    install_debs(DEBS, SERVICES, who="bench-edge")


def versions(python: str) -> dict[str, str]:
    return {
        "nginx": _first_line(["nginx", "-v"]),
        "varnish": _first_line(["varnishd", "-V"], r"varnish-(\S+)"),
        "wrk": _first_line(["wrk", "-v"], r"wrk (?:debian/)?([\d.]+\S*)"),
        "python": _first_line([python, "--version"]),
    }
