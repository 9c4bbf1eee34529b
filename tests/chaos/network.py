"""Namespaced hosts (tests/support/netns.py) that can be split in two groups.

A second bridge in the hub namespace holds the minority's ports during a
partition: the minority's hosts still reach each other, the majority and the
hub (where the harness runs) reach neither of them, as with a switch split in
two. Healing moves the ports back to the first bridge.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterable

from tests.support.netns import Hosts


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class SplittableHosts(Hosts):
    """:class:`Hosts` plus :meth:`split` and :meth:`rejoin`. ``prefix`` names the
    namespaces of a set made by another process (the harness re-executes itself
    inside the hub)."""

    def __init__(self, count: int, prefix: str | None = None) -> None:
        super().__init__(count)
        if prefix is not None:
            self.prefix = prefix
            self.hub = f"{prefix}-hub"

    def create(self) -> None:
        super().create()
        _ip("-n", self.hub, "link", "add", "br1", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br1", "up")

    def split(self, minority: Iterable[int]) -> None:
        """Hosts ``minority`` keep each other and lose everyone else."""
        for index in minority:
            _ip("-n", self.hub, "link", "set", self._port(index), "master", "br1")

    def rejoin(self) -> None:
        """Every host on the one bridge again."""
        for index in range(1, self.count + 1):
            _ip("-n", self.hub, "link", "set", self._port(index), "master", "br0", "up")


def rerun_in_hub(module: str, argv: list[str], hosts: int) -> int:
    """Runs ``python -m module *argv --inside-hub PREFIX`` inside the hub namespace of
    ``hosts`` fresh split-able hosts, forwarding SIGINT and SIGTERM to it, and removes
    the hosts afterwards; returns its exit status. The chaos runner and the soak test
    run their cluster this way, so that partitions can cut real network links."""
    net = SplittableHosts(hosts)
    net.destroy()  # leftovers of a killed run with the same pid
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: object) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGINT)

    try:
        net.create()
        child = subprocess.Popen(
            [*net.hub_wrapper, sys.executable, "-m", module, *argv, "--inside-hub", net.prefix],
        )
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        return child.wait()
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        net.destroy()
