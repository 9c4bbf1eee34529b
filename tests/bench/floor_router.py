"""The floor for the router: murmur's ``ModelRouter`` alone in its own process, over a
fixed routing table of one replica, on uvloop like a node.

No daemon around it (no gossip, no Raft, no table built from the cluster's view), so
the router benchmark can tell the router's own cost from the daemon's.
``python -m tests.bench.floor_router LISTEN_HOST:PORT``: prints ``ready`` once it
listens; then each line on its stdin, ``REPLICA_HOST:PORT MODEL``, makes that replica
the only one, and it prints ``routing``. (The benchmark starts it before its own gRPC
channels exist, which a fork must not copy, and names the replica once it is placed.)
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from murmur.node.router.proxy import ModelRouter, RouterServer
from murmur.node.router.routes import RoutingTable
from murmur.v1 import types_pb2


def one_replica(address: str, model: str) -> RoutingTable:
    host, port = address.rsplit(":", 1)
    info = types_pb2.NodeInfo(name="floor", address=f"{host}:1", state=types_pb2.NODE_STATE_ALIVE)
    info.endpoints.add(service="floor", job_id="floor", port=int(port), ready=True, models=[model])
    return RoutingTable([info], "floor")


async def serve(listen: str) -> None:
    table = RoutingTable([], "floor")
    host, port = listen.rsplit(":", 1)
    server = RouterServer(ModelRouter(lambda: table), host, int(port))
    await server.start()
    commands = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(commands), sys.stdin
    )
    print("ready", flush=True)
    try:
        while line := await commands.readline():
            replica, model = line.decode().split()
            table = one_replica(replica, model)
            print("routing", flush=True)
    finally:
        await server.close()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1]))
