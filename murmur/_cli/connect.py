"""Connection flags shared by every command that talks to a node.

The client (grpc, cryptography, asyncio) is imported when a command connects, not
when the command line is parsed: ``murmur --help`` and a usage error stay quick.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from murmur import AsyncClient

T = TypeVar("T")


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--node",
        metavar="HOST:PORT",
        help="node to talk to (default: $MURMUR_NODE, ~/.murmur/client.toml, 127.0.0.1:7070); "
        "several, comma-separated, are tried in order, as are the nodes the cluster "
        "last reported, when it cannot be reached",
    )
    parser.add_argument(
        "--identity",
        metavar="FILE",
        help="identity bundle (default: $MURMUR_IDENTITY, ~/.murmur/identity.pem)",
    )


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print protobuf JSON (snake_case field names)"
    )


def run_with_client(
    args: argparse.Namespace,
    action: Callable[[AsyncClient], Awaitable[T]],
    *,
    failover: bool = True,
) -> T:
    """Connects as the flags say, runs ``action`` with the client, closes it.

    When the node cannot be reached, the client moves to another node of the cluster
    (one line on stderr says so): those the flags name after the first, then those the
    cluster reported last time (remembered in ``known-nodes.json`` in the Murmur home
    from every answer that lists the nodes). The client repeats on the new node only
    what is safe to repeat (see `AsyncClient`). ``failover=False`` keeps to the node
    named, for a command about that node's own disk.
    """
    import asyncio
    import dataclasses
    import gc

    from murmur import AsyncClient
    from murmur._config import (
        default_home,
        remember_addresses,
        remembered_addresses,
        resolve_connect_config,
    )

    def note_failover(unreachable: str, address: str) -> None:
        print(
            f"murmur: node {unreachable} cannot be reached; asking {address} instead",
            file=sys.stderr,
        )

    async def session() -> T:
        home = default_home()
        config = resolve_connect_config(
            node=args.node, identity=args.identity, home=home, checked_identities=True
        )
        if failover:
            remembered = remembered_addresses(home, config.tls)
            fallbacks = (*config.fallback_addresses, *remembered)
        else:
            fallbacks = ()
        config = dataclasses.replace(config, fallback_addresses=fallbacks)
        async with AsyncClient(config, on_failover=note_failover) as client:
            result = await action(client)
            if client.learned_addresses:
                remember_addresses(home, config.tls, client.learned_addresses)
            return result

    # Imports are over: collect again (`murmur._cli.main.QUICK_COMMANDS` paused it),
    # first setting aside what they loaded, which lives as long as the process.
    gc.freeze()
    gc.enable()
    return asyncio.run(session())
