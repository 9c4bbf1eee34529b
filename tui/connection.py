"""Which node the dashboard is attached to, who we are there, and failing over.

`murmur top` attaches to one node. When that node goes away, the connection tries
the other nodes it has heard of (the addresses in NodeInfo, plus any seeds given)
and keeps a one-line notice of what happened for the header.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

from murmur import MurmurError
from murmur.tui.api import ClientFactory, ClusterApi
from murmur.v1 import types_pb2

ATTACH_TIMEOUT_SECONDS = 3.0


class Connection:
    """The current client plus every address known to reach the cluster."""

    def __init__(self, address: str, factory: ClientFactory, *, seeds: Sequence[str] = ()) -> None:
        self._factory = factory
        self._known: list[str] = list(dict.fromkeys([address, *seeds]))
        self.client: ClusterApi = factory(address)
        self.node_name = ""
        """The name of the node attached to, as it answered WhoAmI."""
        self.identity: types_pb2.Identity | None = None
        self.attached = False
        self.notice = ""
        """What last happened to the connection, for the header; empty when nothing."""

    @property
    def address(self) -> str:
        return self.client.address

    @property
    def known_addresses(self) -> list[str]:
        return list(self._known)

    @property
    def role(self) -> types_pb2.Role.ValueType:
        return self.identity.role if self.identity else types_pb2.ROLE_UNSPECIFIED

    def learn(self, nodes: Iterable[types_pb2.NodeInfo]) -> None:
        """Remembers the addresses of nodes that can take over if ours goes away."""
        for node in nodes:
            usable = node.state in (types_pb2.NODE_STATE_ALIVE, types_pb2.NODE_STATE_DRAINING)
            if node.address and usable and node.address not in self._known:
                self._known.append(node.address)

    async def attach(self) -> None:
        """Asks the current node who we are. Raises `MurmurError` if it cannot answer."""
        answer = await self.client.whoami(timeout=ATTACH_TIMEOUT_SECONDS)
        self.node_name, self.identity, self.attached = answer.node, answer.identity, True

    async def answers(self) -> bool:
        """Whether the node we are attached to still answers at all."""
        try:
            await self.client.whoami(timeout=ATTACH_TIMEOUT_SECONDS)
        except MurmurError:
            return False
        return True

    async def failover(self, why: str) -> bool:
        """Moves to the first other known node that answers; False if none does.

        The current node is tried last, so a node that merely restarted is taken back.
        """
        self.attached = False
        previous = self.address
        lost = f"{self.node_name or 'node'} at {previous}"
        start = self._known.index(self.address) if self.address in self._known else -1
        ring = self._known[start + 1 :] + self._known[: start + 1]
        for address in ring:
            candidate = self._factory(address) if address != self.address else self.client
            try:
                answer = await candidate.whoami(timeout=ATTACH_TIMEOUT_SECONDS)
            except MurmurError:
                if candidate is not self.client:
                    with contextlib.suppress(MurmurError):
                        await candidate.close()
                continue
            if candidate is not self.client:
                with contextlib.suppress(MurmurError):
                    await self.client.close()
                self.client = candidate
            self.node_name, self.identity, self.attached = answer.node, answer.identity, True
            self.notice = (
                f"reconnected to {answer.node} at {address}; lost {lost} ({why})"
                if address != previous
                else f"reconnected to {answer.node} at {address} after: {why}"
            )
            return True
        self.notice = f"disconnected: {lost} unreachable ({why}); retrying"
        return False

    async def close(self) -> None:
        with contextlib.suppress(MurmurError):
            await self.client.close()
