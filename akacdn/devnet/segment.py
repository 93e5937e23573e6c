"""One L2 segment of network namespaces on this machine, for IP-takeover tests and the
failover benchmark: a Linux bridge in a namespace of its own and hosts on veth pairs.

Everything is named with the caller's prefix: namespaces `<prefix><host>` (the bridge's
`<prefix>br`), each host's interface `<prefix><host>0` (its bridge port
`<prefix><host>1`), addresses `<net>.<n>/24`. Nothing is created in the root namespace,
an existing namespace of the same name is refused (not ours), and `remove()` deletes
every namespace this made, their interfaces with them. Needs root.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def run(*cmd: str) -> str:
    """Run a command; its output, or RuntimeError with its stderr."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip()}")
    return p.stdout


class Segment:
    def __init__(self, prefix: str, net: str, hosts: dict[str, int]) -> None:
        """`net`: the /24 as "198.18.N"; `hosts`: name -> last octet of its address."""
        if any(len(f"{prefix}{h}1") > 15 for h in [*hosts, "br"]):
            raise ValueError(f"prefix {prefix!r}: interface names must fit in 15 characters")
        self.prefix, self.net, self.hosts = prefix, net, hosts
        self.made: list[str] = []

    def ns(self, host: str) -> str:
        return f"{self.prefix}{host}"

    def dev(self, host: str) -> str:
        return f"{self.prefix}{host}0"

    def ip(self, n: int) -> str:
        return f"{self.net}.{n}"

    def address(self, host: str) -> str:
        return self.ip(self.hosts[host])

    def sh(self, host: str, *cmd: str) -> str:
        return run("ip", "netns", "exec", self.ns(host), *cmd)

    def mac(self, host: str) -> str:
        return self.sh(host, "cat", f"/sys/class/net/{self.dev(host)}/address").strip()

    def build(self) -> None:
        names = ["br", *self.hosts]
        for name in names:
            if Path(f"/run/netns/{self.ns(name)}").exists():
                raise RuntimeError(f"network namespace {self.ns(name)} exists already (not ours): not touching it")
        for name in names:
            run("ip", "netns", "add", self.ns(name))
            self.made.append(self.ns(name))
            self.sh(name, "ip", "link", "set", "lo", "up")
        self.sh("br", "ip", "link", "add", "br0", "type", "bridge")
        self.sh("br", "ip", "link", "set", "br0", "up")
        for host, n in self.hosts.items():
            dev, port = self.dev(host), f"{self.prefix}{host}1"
            run("ip", "link", "add", dev, "netns", self.ns(host), "type", "veth",
                "peer", "name", port, "netns", self.ns("br"))  # fmt: skip
            self.sh("br", "ip", "link", "set", port, "master", "br0", "up")
            self.sh(host, "ip", "addr", "add", f"{self.ip(n)}/24", "dev", dev)
            self.sh(host, "ip", "link", "set", dev, "up")

    def remove(self) -> None:
        """Delete every namespace this made (also after a failed build)."""
        while self.made:
            subprocess.run(["ip", "netns", "del", self.made.pop()], capture_output=True, timeout=30)
