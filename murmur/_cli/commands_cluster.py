"""``murmur status`` and ``murmur whoami``: what the cluster looks like, and who I am."""

from __future__ import annotations

import argparse
from typing import Any

from murmur._cli.connect import add_connection_flags, add_json_flag, run_with_client
from murmur._cli.output import NODE_HEADERS, node_rows, print_json, print_table
from proto.murmur.v1 import types_pb2


def register(commands: Any) -> None:
    status = commands.add_parser("status", help="cluster summary: nodes, leader, GPUs, queue")
    add_connection_flags(status)
    add_json_flag(status)
    status.set_defaults(handler=status_command)

    whoami = commands.add_parser("whoami", help="the identity the node sees for you")
    add_connection_flags(whoami)
    add_json_flag(whoami)
    whoami.set_defaults(handler=whoami_command)


def status_command(args: argparse.Namespace) -> int:
    status = run_with_client(args, lambda client: client.status())
    if args.json:
        print_json(status)
        return 0
    count = len(status.nodes)
    nodes = f"{count} node{'s' if count != 1 else ''}"
    if status.leader:
        voters = ", ".join(status.voters) or "none"
        print(f"cluster: {nodes}, leader {status.leader} (term {status.term}), voters: {voters}")
    else:
        voters = ", ".join(status.voters) or "none known"
        print(
            f"cluster: {nodes}, no leader (term {status.term}), voters: {voters}; "
            "nothing is scheduled until a majority of voters elect one"
        )
    simulated = " (simulated)" if status.gpus_simulated else ""
    print(f"gpus: {status.gpus_free}/{status.gpus_total} free{simulated}")
    queue = ", ".join(f"{count} {state}" for state, count in sorted(status.jobs_by_state.items()))
    print(f"jobs: {queue or 'none'}")
    print(f"answered by: {status.answered_by} (murmur {status.version})")
    print()
    print_table(NODE_HEADERS, node_rows(status.nodes))
    return 0


def whoami_command(args: argparse.Namespace) -> int:
    response = run_with_client(args, lambda client: client.whoami())
    if args.json:
        print_json(response)
        return 0
    identity = response.identity
    role = types_pb2.Role.Name(identity.role).removeprefix("ROLE_").lower()
    expires = identity.not_after.ToDatetime().strftime("%Y-%m-%d %H:%M UTC")
    print(f"{identity.name} ({role}), certificate {identity.serial} valid until {expires}")
    print(f"lab CA {identity.ca_fingerprint}; answered by node {response.node}")
    return 0
