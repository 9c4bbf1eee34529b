"""``murmur status`` and ``murmur whoami``: what the cluster looks like, and who I am."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from murmur._cli.connect import add_connection_flags, add_json_flag, run_with_client
from murmur._cli.output import (
    NODE_HEADERS,
    node_rows,
    node_state_name,
    print_record,
    print_table,
    upgrade_lines,
)

if TYPE_CHECKING:
    from murmur.v1 import cluster_pb2, types_pb2


def register(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="cluster summary: nodes, leader, GPUs, queue",
        description="The cluster as the node asked sees it. The nodes' addresses are "
        "remembered, so that later commands can ask another node when that one cannot "
        "be reached.",
    )
    add_connection_flags(status)
    add_json_flag(status)
    status.set_defaults(handler=status_command)

    whoami = commands.add_parser("whoami", help="the identity the node sees for you")
    add_connection_flags(whoami)
    add_json_flag(whoami)
    whoami.set_defaults(handler=whoami_command)


def _is_up(state: int) -> bool:
    from murmur.v1 import types_pb2

    return state in (types_pb2.NODE_STATE_ALIVE, types_pb2.NODE_STATE_DRAINING)


def status_command(args: argparse.Namespace) -> int:
    status = run_with_client(args, lambda client: client.status())
    print_record(status, as_json=args.json, text=lambda: _print_status(status))
    return 0


def _print_status(status: cluster_pb2.ClusterStatus) -> None:
    from murmur.v1 import types_pb2

    count = len(status.nodes)
    nodes = f"{count} node{'s' if count != 1 else ''}"
    states = {node.name: node.state for node in status.nodes}
    unknown = types_pb2.NODE_STATE_UNSPECIFIED
    voters = ", ".join(_voter_text(name, states.get(name, unknown)) for name in status.voters)
    if status.leader:
        print(f"cluster: {nodes}, leader {status.leader} (term {status.term}), voters: {voters}")
    else:
        up = sum(1 for name in status.voters if _is_up(states.get(name, unknown)))
        majority = len(status.voters) // 2 + 1
        print(
            f"cluster: {nodes}, no leader (term {status.term}), voters: {voters or 'none known'}; "
            f"nothing is scheduled until {majority} of the {len(status.voters)} voters "
            f"({up} up) elect one"
        )
    print(f"gpus: {_gpu_text(status)}")
    queue = ", ".join(f"{count} {state}" for state, count in sorted(status.jobs_by_state.items()))
    print(f"jobs: {queue or 'none'}")
    print(f"answered by: {status.answered_by} (murmur {status.version})")
    for line in upgrade_lines(status.nodes, status.voters):
        print(line)
    print()
    print_table(NODE_HEADERS, node_rows(status.nodes))


def _voter_text(name: str, state: types_pb2.NodeState.ValueType) -> str:
    """A voter, with its state unless it is up: a dead voter still counts towards
    the majority an election needs."""
    return name if _is_up(state) else f"{name} ({node_state_name(state)})"


def _gpu_text(status: cluster_pb2.ClusterStatus) -> str:
    """``3/8 free``, saying where the counts come from when not all from the node
    that answered: other nodes' are as they last gossiped them, which trails
    ``murmur node show`` (it asks the node) by a few seconds at most."""
    notes = ["simulated"] if status.gpus_simulated else []
    if any(
        node.name != status.answered_by and _is_up(node.state) and node.gpus.devices
        for node in status.nodes
    ):
        notes.append(f"other nodes' counts as gossiped to {status.answered_by}: seconds old")
    suffix = f" ({'; '.join(notes)})" if notes else ""
    return f"{status.gpus_free}/{status.gpus_total} free{suffix}"


def whoami_command(args: argparse.Namespace) -> int:
    response = run_with_client(args, lambda client: client.whoami())
    print_record(response, as_json=args.json, text=lambda: _print_whoami(response))
    return 0


def _print_whoami(response: cluster_pb2.WhoAmIResponse) -> None:
    from murmur.v1 import types_pb2

    identity = response.identity
    role = types_pb2.Role.Name(identity.role).removeprefix("ROLE_").lower()
    expires = identity.not_after.ToDatetime().strftime("%Y-%m-%d %H:%M UTC")
    print(f"{identity.name} ({role}), certificate {identity.serial} valid until {expires}")
    print(f"lab CA {identity.ca_fingerprint}; answered by node {response.node}")
