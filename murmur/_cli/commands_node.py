"""``murmur node ...``: run the daemon, and look at nodes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from murmur._cli.connect import add_connection_flags, add_json_flag, run_with_client
from murmur._cli.output import NODE_HEADERS, node_rows, note, print_json, print_table
from murmur._cli.parsing import parse_key_value


def register(commands: Any) -> None:
    node = commands.add_parser("node", help="run a node, list and inspect nodes")
    actions = node.add_subparsers(dest="node_command", metavar="ACTION")
    actions.required = True

    start = actions.add_parser("start", help="run the node daemon in the foreground")
    start.add_argument("--name", help="node name (default: the host name)")
    start.add_argument(
        "--data-dir", type=Path, help="store, identity and CA (default ~/.murmur/node)"
    )
    start.add_argument(
        "--listen", metavar="HOST:PORT", help="mTLS API address (default 127.0.0.1:7070)"
    )
    start.add_argument("--join-listen", metavar="HOST:PORT", help="join listener (default: port+1)")
    start.add_argument("--advertise", metavar="HOST:PORT", help="address others should dial")
    start.add_argument("--join", metavar="HOST:PORT", help="an existing node, to join its cluster")
    start.add_argument(
        "--token",
        help="join token from `murmur token create` (visible in `ps`: prefer $MURMUR_NODE_TOKEN)",
    )
    start.add_argument(
        "--simulate-gpus", metavar="SPEC", help="declare simulated GPUs, e.g. 8xA100-80GB"
    )
    start.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    start.add_argument("--label", action="append", type=parse_key_value, metavar="K=V", default=[])
    start.add_argument("--data-root", action="append", type=Path, metavar="DIR", default=[])
    start.add_argument(
        "--seed",
        action="append",
        metavar="HOST:PORT",
        default=[],
        help="another node to join gossip through (repeatable; the node that signed this "
        "node's certificate and peers from earlier runs are used anyway)",
    )
    start.add_argument(
        "--job-account",
        action="append",
        type=parse_key_value,
        metavar="USER=ACCOUNT",
        default=[],
        help="run USER's jobs as Unix ACCOUNT (repeatable; default: the account named USER)",
    )
    start.add_argument(
        "--job-fallback-account",
        metavar="ACCOUNT",
        help="run the jobs of users without an account here as ACCOUNT (default: refuse them)",
    )
    start.add_argument(
        "--allow-root-jobs",
        action="store_true",
        default=None,
        help="let jobs run as root (a user mapped to root); off unless given",
    )
    start.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    start.set_defaults(handler=start_command)

    listing = actions.add_parser("list", help="every node, its state, GPUs and load")
    add_connection_flags(listing)
    add_json_flag(listing)
    listing.set_defaults(handler=list_command)

    show = actions.add_parser("show", help="one node in detail")
    show.add_argument("name")
    add_connection_flags(show)
    add_json_flag(show)
    show.set_defaults(handler=show_command)

    drain = actions.add_parser(
        "drain", help="stop placing new jobs on a node; running jobs finish (admin)"
    )
    drain.add_argument("name")
    drain.add_argument("--undo", action="store_true", help="take new jobs again")
    add_connection_flags(drain)
    add_json_flag(drain)
    drain.set_defaults(handler=drain_command)

    remove = actions.add_parser(
        "remove", help="forget a dead node cluster-wide (admin; stop its daemon first)"
    )
    remove.add_argument("name")
    add_connection_flags(remove)
    remove.set_defaults(handler=remove_command)


def start_command(args: argparse.Namespace) -> int:
    from murmur.node.config import load_node_config
    from murmur.node.daemon import run_node

    flags = {
        "name": args.name,
        "data_dir": args.data_dir,
        "listen": args.listen,
        "join_listen": args.join_listen,
        "advertise": args.advertise,
        "join": args.join,
        "token": args.token,
        "simulate_gpus": args.simulate_gpus,
        "labels": dict(args.label) or None,
        "data_roots": [str(p) for p in args.data_root] or None,
        "log_level": args.log_level,
        "seeds": args.seed or None,
        "job_accounts": dict(args.job_account) or None,
        "job_fallback_account": args.job_fallback_account,
        "allow_root_jobs": args.allow_root_jobs,
    }
    config = load_node_config(config_file=args.config, flags=flags)
    if config.simulate_gpus:
        from murmur.node.agent.gpus import parse_simulated_spec

        parse_simulated_spec(config.simulate_gpus)  # fail on a bad spec before anything else
    return run_node(config)


def list_command(args: argparse.Namespace) -> int:
    from murmur.v1 import cluster_pb2

    nodes = run_with_client(args, lambda client: client.list_nodes())
    if args.json:
        print_json(cluster_pb2.ListNodesResponse(nodes=nodes))
    else:
        print_table(NODE_HEADERS, node_rows(nodes))
    return 0


def show_command(args: argparse.Namespace) -> int:
    node = run_with_client(args, lambda client: client.get_node(args.name))
    if args.json:
        print_json(node)
        return 0
    print_table(NODE_HEADERS, node_rows([node]))
    print()
    gpus = node.gpus
    for device in gpus.devices:
        flag = " (simulated)" if device.simulated else ""
        memory = device.memory_total_bytes / 2**30
        print(f"gpu {device.index}: {device.model} {memory:.0f}GiB {device.uuid}{flag}")
    if not gpus.devices:
        print(f"gpus: none ({gpus.reason})")
    for key, value in sorted(node.labels.items()):
        print(f"label {key}={value}")
    print(f"runtimes: {', '.join(node.runtimes)}")
    if node.runtime_notes:
        print(f"runtime notes: {node.runtime_notes}")
    return 0


def drain_command(args: argparse.Namespace) -> int:
    node = run_with_client(args, lambda client: client.drain_node(args.name, undrain=args.undo))
    if args.json:
        print_json(node)
    else:
        print_table(NODE_HEADERS, node_rows([node]))
    return 0


def remove_command(args: argparse.Namespace) -> int:
    removed = run_with_client(args, lambda client: client.remove_node(args.name))
    note(f"murmur: removed node {removed.name}; nodes list it as left until they forget it")
    return 0
