"""Connection flags shared by every command that talks to a node.

The client (grpc, cryptography, asyncio) is imported when a command connects, not
when the command line is parsed: ``murmur --help`` and a usage error stay quick.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from murmur import AsyncClient

T = TypeVar("T")


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--node",
        metavar="HOST:PORT",
        help="node to talk to (default: $MURMUR_NODE, ~/.murmur/client.toml, 127.0.0.1:7070)",
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


def run_with_client(args: argparse.Namespace, action: Callable[[AsyncClient], Awaitable[T]]) -> T:
    """Connects as the flags say, runs ``action`` with the client, closes it."""
    import asyncio

    from murmur import AsyncClient, resolve_connect_config

    async def session() -> T:
        config = resolve_connect_config(node=args.node, identity=args.identity)
        async with AsyncClient(config) as client:
            return await action(client)

    return asyncio.run(session())
