"""Multi-node clusters of real ``murmur node`` processes, for integration tests.

Nodes run on their own loopback address each (127.0.0.2, 127.0.0.3, ...), as
they would on separate servers. :func:`provision_node` gives a node its
certificate straight from the lab CA (what ``--join`` with a token would have
obtained), so a test of gossip does not spend seconds on joins it does not test;
tests of the join itself use tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import grpc
import grpc.aio

from murmur import AsyncClient, MurmurError, resolve_connect_config
from murmur.certs import NODE_TLS_NAME, IdentityBundle, Role
from murmur.v1 import cluster_pb2, types_pb2
from tests.support.nodes import Lab, NodeProcess

T = TypeVar("T")

CONVERGE_TIMEOUT_SECONDS = 45.0


def host_of(index: int) -> str:
    """The loopback address of the ``index``-th node (1-based)."""
    return f"127.0.0.{index + 1}"


def provision_node(lab: Lab, name: str, host: str) -> Path:
    """A data dir holding a node certificate for ``name`` at ``host``."""
    data_dir = lab.root / name
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    bundle = lab.ca.issue(name=name, role=Role.NODE, validity_days=30, node_addresses=[host])
    bundle.write(data_dir / "identity.pem")
    return data_dir


def start_cluster(
    lab: Lab,
    count: int,
    *,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    env_of: Callable[[int], dict[str, str]] = lambda index: {},
) -> list[NodeProcess]:
    """``count`` nodes named node-1..node-N; node-1 holds the CA, the others seed
    through it. ``env_of(i)``: more settings of node i (1-based). Returns once every
    process is ready (not yet converged)."""
    first = lab.start_node(
        "node-1",
        data_dir=lab.first_data_dir,
        host=host_of(1),
        extra_args=extra_args,
        env={**(env or {}), **env_of(1)},
        wait=False,
    )
    nodes = [first]
    for index in range(2, count + 1):
        name = f"node-{index}"
        data_dir = provision_node(lab, name, host_of(index))
        nodes.append(
            lab.start_node(
                name,
                data_dir=data_dir,
                host=host_of(index),
                extra_args=["--seed", first.address, *extra_args],
                env={**(env or {}), **env_of(index)},
                wait=False,
            )
        )
    for node in nodes:
        node.wait_ready()
    return nodes


def mtls_channel(node: NodeProcess, bundle: IdentityBundle) -> grpc.aio.Channel:
    """A bare gRPC channel to ``node`` as ``bundle``'s holder: for calls the client
    library does not make (NodeService as a node, a user trying one)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=bundle.ca_certificate_pem,
        private_key=bundle.key_pem,
        certificate_chain=bundle.certificate_pem,
    )
    return grpc.aio.secure_channel(
        node.address, credentials, options=[("grpc.ssl_target_name_override", NODE_TLS_NAME)]
    )


def client_for(node: NodeProcess, identity: Path) -> AsyncClient:
    return AsyncClient(resolve_connect_config(node=node.address, identity=identity))


async def status_of(node: NodeProcess, lab: Lab) -> cluster_pb2.ClusterStatus | None:
    """``murmur status`` as ``node`` answers it; ``None`` when it does not answer."""
    try:
        async with client_for(node, lab.admin_identity) as client:
            return await client.status(timeout=3)
    except MurmurError:
        return None


async def node_states(node: NodeProcess, identity: Path) -> dict[str, types_pb2.NodeInfo]:
    """What ``node`` says of every node, by name."""
    async with client_for(node, identity) as client:
        return {info.name: info for info in await client.list_nodes(timeout=5)}


def state_name(info: types_pb2.NodeInfo) -> str:
    return types_pb2.NodeState.Name(info.state).removeprefix("NODE_STATE_").lower()


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    within: float = CONVERGE_TIMEOUT_SECONDS,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Polls ``probe`` until ``accept`` holds; fails with the last value seen."""
    deadline = time.monotonic() + within
    last: T | None = None
    while True:
        last = await probe()
        if accept(last):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached in {within:.0f} s; last seen: {last!r}")
        await asyncio.sleep(interval)


async def views(nodes: Sequence[NodeProcess], identity: Path) -> dict[str, dict[str, str]]:
    """Each live node's view: observer name → {node name → state}."""
    result: dict[str, dict[str, str]] = {}
    for node in nodes:
        infos = await node_states(node, identity)
        result[node.name] = {name: state_name(info) for name, info in infos.items()}
    return result


async def wait_converged(
    nodes: Sequence[NodeProcess],
    identity: Path,
    expected: dict[str, str],
    *,
    within: float = CONVERGE_TIMEOUT_SECONDS,
) -> dict[str, dict[str, str]]:
    """Waits until every node in ``nodes`` sees exactly the states in ``expected``
    for the nodes it names (others it may or may not list)."""

    def agreed(seen: dict[str, dict[str, str]]) -> bool:
        return all(
            all(view.get(name) == state for name, state in expected.items())
            for view in seen.values()
        )

    return await eventually(
        lambda: views(nodes, identity), agreed, within=within, what=f"every node sees {expected}"
    )
