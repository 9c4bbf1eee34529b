"""``murmur top``: the live dashboard (Textual), attached to any node.

Textual is imported only when the command runs, so other commands do not pay for it.
"""

from __future__ import annotations

import argparse
from typing import Any

from murmur._cli.connect import add_connection_flags


def register(commands: Any) -> None:
    top = commands.add_parser(
        "top", help="live dashboard of the cluster: nodes, GPUs, jobs, logs, datasets"
    )
    add_connection_flags(top)
    top.add_argument(
        "--also",
        metavar="HOST:PORT",
        action="append",
        default=[],
        help="another node to fail over to if the first goes away (repeatable); "
        "nodes the cluster reports are added on their own",
    )
    top.set_defaults(handler=top_command)


def top_command(args: argparse.Namespace) -> int:
    import dataclasses

    from murmur import AsyncClient, resolve_connect_config
    from murmur._config import validate_node_address
    from murmur.tui import Connection, MurmurTop

    config = resolve_connect_config(node=args.node, identity=args.identity)
    seeds = [validate_node_address(address) for address in args.also]

    def client_for(address: str) -> AsyncClient:
        return AsyncClient(dataclasses.replace(config, address=address))

    MurmurTop(Connection(config.address, client_for, seeds=seeds)).run()
    return 0
