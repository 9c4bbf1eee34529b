"""Separate network hosts on one machine: Linux network namespaces joined by a bridge.

Each host is a namespace with one veth interface (``eth0``, 10.251.0.N/24); the
other end of every veth sits in a hub namespace, on a bridge that also carries
the hub's own address (10.251.0.254), from which tests run the CLI. Nothing is
created in the machine's own namespace, and only these private addresses are
used. Cutting a host off sets its port on the hub down: its packets go nowhere,
as with a pulled cable, and it has no way to tell a dead peer from a cut link.

Needs root and iproute2 (``ip``). :func:`netns_unavailable` says why not, or
returns ``None``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

SUBNET = "10.251.0"
HUB_ADDRESS = f"{SUBNET}.254"


def netns_unavailable() -> str | None:
    """Why this machine cannot make network namespaces, or ``None`` if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed (scripts/install-test-deps.sh installs it)"
    probe = f"mrm-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Hosts:
    """Hosts 1..count in their own namespaces, plus the hub."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.prefix = f"mrm{os.getpid()}"
        self.hub = f"{self.prefix}-hub"

    def namespace(self, index: int) -> str:
        return f"{self.prefix}-{index}"

    def address(self, index: int) -> str:
        return f"{SUBNET}.{index}"

    def wrapper(self, index: int) -> list[str]:
        """Prefix a command with this to run it on host ``index``."""
        return ["ip", "netns", "exec", self.namespace(index)]

    @property
    def hub_wrapper(self) -> list[str]:
        return ["ip", "netns", "exec", self.hub]

    def create(self) -> None:
        _ip("netns", "add", self.hub)
        _ip("-n", self.hub, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "addr", "add", f"{HUB_ADDRESS}/24", "dev", "br0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for index in range(1, self.count + 1):
            namespace = self.namespace(index)
            _ip("netns", "add", namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip(
                "-n", namespace, "link", "add", "eth0", "type", "veth",
                "peer", "name", self._port(index), "netns", self.hub,
            )  # fmt: skip
            _ip("-n", namespace, "addr", "add", f"{self.address(index)}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", self.hub, "link", "set", self._port(index), "master", "br0", "up")

    def cut(self, index: int) -> None:
        """Disconnect host ``index`` from every other host (and from the hub)."""
        _ip("-n", self.hub, "link", "set", self._port(index), "down")

    def heal(self, index: int) -> None:
        _ip("-n", self.hub, "link", "set", self._port(index), "up")

    def destroy(self) -> None:
        for namespace in [*(self.namespace(i) for i in range(1, self.count + 1)), self.hub]:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)

    def _port(self, index: int) -> str:
        return f"port{index}"


@contextmanager
def hosts(count: int) -> Iterator[Hosts]:
    """``count`` namespaced hosts, removed afterwards whatever happens."""
    made = Hosts(count)
    made.destroy()  # leftovers of a killed earlier run with the same pid
    try:
        made.create()
        yield made
    finally:
        made.destroy()
