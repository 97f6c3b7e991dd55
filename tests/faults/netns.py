"""A small network of Linux network namespaces for the multi-host test: one namespace per host,
each joined by a veth pair to a bridge in the test's own namespace (which also gets an address
on it, so the test reaches every host). A host's cable can be pulled (its bridge-side veth set
down) and its outgoing bandwidth limited (tbf), as on real machines.

Needs root and `ip netns`; `probe()` says why not where they are missing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field


def run(*cmd: str) -> None:
    done = subprocess.run(list(cmd), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


def probe() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    name = f"ssprobe{secrets.token_hex(3)}"
    try:
        run("ip", "netns", "add", name)
    except RuntimeError as exc:
        return f"ip netns add is not allowed here: {exc}"
    run("ip", "netns", "del", name)
    return None


@dataclass
class Lab:
    """Hosts named by role on 10.213.<net>.0/24 (.1, .2, ... in order; the test is .254)."""

    roles: list[str]
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    net: int = field(default_factory=lambda: 100 + secrets.randbelow(150))
    made: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"ssb{self.tag}"

    def ns(self, role: str) -> str:
        return f"ss{self.tag}-{role}"

    def addr(self, role: str) -> str:
        return f"10.213.{self.net}.{self.roles.index(role) + 1}"

    def cable(self, role: str) -> str:
        """The bridge-side end of the host's veth pair."""
        return f"ss{self.tag}v{self.roles.index(role)}"

    def wrapper(self, role: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(role)]

    def create(self) -> Lab:
        run("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append("bridge")
        run("ip", "addr", "add", f"10.213.{self.net}.254/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for role in self.roles:
            ns = self.ns(role)
            run("ip", "netns", "add", ns)
            self.made.append(ns)
            run("ip", "link", "add", self.cable(role), "type", "veth", "peer", "name", "eth0", "netns", ns)
            run("ip", "link", "set", self.cable(role), "master", self.bridge, "up")
            run("ip", "-n", ns, "addr", "add", f"{self.addr(role)}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        return self

    def cut(self, role: str) -> None:
        run("ip", "link", "set", self.cable(role), "down")

    def restore(self, role: str) -> None:
        run("ip", "link", "set", self.cable(role), "up")

    def limit(self, role: str, rate: str) -> None:
        """Limits what the host sends (e.g. "16mbit")."""
        run(
            "ip",
            "netns",
            "exec",
            self.ns(role),
            "tc",
            "qdisc",
            "replace",
            "dev",
            "eth0",
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            "64kbit",
            "latency",
            "2s",
        )

    def destroy(self) -> None:
        """Removes everything made (namespaces take their veth pairs with them)."""
        for item in reversed(self.made):
            if item == "bridge":
                subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
            else:
                subprocess.run(["ip", "netns", "del", item], capture_output=True)
        self.made.clear()
