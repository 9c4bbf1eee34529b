"""The cluster driver: five real ``murmur node`` processes, and the faults done to them.

Nodes run on loopback addresses (127.0.0.2...), or, where network namespaces
can be made, each on a namespaced host of its own (:mod:`tests.chaos.network`),
which is what makes a real partition possible; the harness then runs inside the
hub namespace, from which it reaches every host that is not cut off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import murmur
from murmur import AsyncClient, resolve_connect_config
from tests.chaos.network import SplittableHosts
from tests.support.cluster import host_of, provision_node
from tests.support.nodes import Lab, NodeProcess

NETNS_PORT = 7070
STATUS_TIMEOUT_SECONDS = 2.0


class ChaosCluster:
    """Nodes ``node-1`` .. ``node-N`` of one lab, their clients, and the faults."""

    def __init__(
        self,
        lab: Lab,
        *,
        size: int,
        env: dict[str, str],
        extra_args: Sequence[str],
        net: SplittableHosts | None,
    ) -> None:
        self.lab = lab
        self.size = size
        self.env = env
        self.extra_args = tuple(extra_args)
        self.net = net
        self.names = [f"node-{index}" for index in range(1, size + 1)]
        self.nodes: dict[str, NodeProcess] = {}
        self.killed: set[str] = set()
        self.cut_off: set[str] = set()
        self._clients: dict[str, AsyncClient] = {}

    # -- lifecycle --------------------------------------------------------------

    def host(self, name: str) -> str:
        index = self.index(name)
        return self.net.address(index) if self.net is not None else host_of(index)

    def index(self, name: str) -> int:
        return int(name.removeprefix("node-"))

    def data_dir(self, name: str) -> Path:
        return self.lab.first_data_dir if name == "node-1" else self.lab.root / name

    def start(self) -> None:
        """Starts every node (node-1 holds the CA, the others seed through it) and
        waits until each is ready. Blocking: call it from a thread."""
        for name in self.names:
            index = self.index(name)
            host = self.host(name)
            if index == 1:
                data_dir = self.lab.first_data_dir
                seeds: list[str] = []
            else:
                data_dir = provision_node(self.lab, name, host)
                seeds = ["--seed", self.nodes["node-1"].address]
            self.nodes[name] = self.lab.start_node(
                name,
                data_dir=data_dir,
                host=host,
                ports=(NETNS_PORT, NETNS_PORT + 1) if self.net is not None else None,
                extra_args=[*seeds, *self.extra_args],
                env=self.env,
                wrapper=self.net.wrapper(index) if self.net is not None else (),
                wait=False,
            )
        for node in self.nodes.values():
            node.wait_ready()

    def kill(self, name: str) -> None:
        """kill -9 of the daemon (its runs' supervisors live on, as on a real host)."""
        self.nodes[name].kill()
        self.killed.add(name)

    def restart(self, name: str) -> None:
        """Starts a killed node again on its data dir; blocking (waits until ready)."""
        self.nodes[name] = self.lab.restart(self.nodes[name])
        self.killed.discard(name)

    def partition(self, minority: Iterable[str]) -> None:
        assert self.net is not None, "partitions need network namespaces"
        names = list(minority)
        self.net.split(self.index(name) for name in names)
        self.cut_off.update(names)

    def heal(self) -> None:
        if self.net is not None and self.cut_off:
            self.net.rejoin()
        self.cut_off.clear()

    def stop_all(self) -> None:
        self.lab.stop_all()
        self.killed.update(self.names)

    def reachable(self) -> list[str]:
        """Nodes the harness can talk to now: running and not cut off."""
        return [n for n in self.names if n not in self.killed and n not in self.cut_off]

    def log_paths(self) -> dict[str, Path]:
        return {name: self.lab.root / f"{name}.log" for name in self.names}

    # -- clients ----------------------------------------------------------------

    def client(self, name: str) -> AsyncClient:
        """One client per node for the session (its channel reconnects by itself)."""
        if name not in self._clients:
            config = resolve_connect_config(
                node=self.nodes[name].address, identity=self.lab.admin_identity
            )
            self._clients[name] = AsyncClient(config)
        return self._clients[name]

    async def close_clients(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

    async def status(self, name: str) -> murmur.ClusterStatus | None:
        try:
            return await self.client(name).status(timeout=STATUS_TIMEOUT_SECONDS)
        except murmur.MurmurError:
            return None

    async def agreed_leader(self, names: Sequence[str]) -> tuple[str, int] | None:
        """(leader, term) when every node of ``names`` answers and names the same one."""
        seen = await asyncio.gather(*(self.status(name) for name in names))
        claims = {(s.leader, s.term) for s in seen if s is not None}
        if any(s is None for s in seen) or len(claims) != 1:
            return None
        leader, term = claims.pop()
        return (leader, term) if leader else None

    async def wait_agreed(
        self, names: Sequence[str] | None = None, *, within: float = 60.0, not_leader: str = ""
    ) -> tuple[str, int] | None:
        """Waits until ``names`` (default: every reachable node) agree on a leader
        (other than ``not_leader``); None when they did not within ``within`` s."""
        deadline = time.monotonic() + within
        while True:
            agreed = await self.agreed_leader(list(names or self.reachable()))
            if agreed is not None and agreed[0] != not_leader:
                return agreed
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.2)

    async def voters(self, name: str) -> list[str]:
        status = await self.status(name)
        return [] if status is None else list(status.voters)
