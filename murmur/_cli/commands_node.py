"""``murmur node ...``: run the daemon, look at nodes, back a node up and restore it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from murmur._cli import node_install
from murmur._cli.connect import add_connection_flags, add_json_flag, run_with_client
from murmur._cli.errors import CommandError
from murmur._cli.output import (
    NODE_HEADERS,
    node_rows,
    note,
    print_json,
    print_table,
    protocol_of,
)
from murmur._cli.parsing import parse_key_value

if TYPE_CHECKING:
    from murmur.storage.backup import BackupManifest


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
    start.add_argument(
        "--router-listen", metavar="HOST:PORT",
        help="serve the OpenAI-compatible router here: HTTPS with the node's certificate, "
        "or plain HTTP on a loopback address (docs/serving.md)",
    )  # fmt: skip
    start.add_argument(
        "--router-require-keys", action="store_true", default=None,
        help="the router refuses requests without an API key (`murmur apikey create`); "
        "off unless given on a loopback router",
    )  # fmt: skip
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

    backup = actions.add_parser(
        "backup",
        help="copy this machine's node (store, identity, CA) to one file, while it runs",
    )
    backup.add_argument("--out", type=Path, required=True, metavar="FILE", help="the backup file")
    backup.add_argument("--data-dir", type=Path, help="the node's data dir (as for node start)")
    backup.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    backup.set_defaults(handler=backup_command)

    restore = actions.add_parser(
        "restore",
        help="put a node back from a backup into a data dir no daemon uses",
    )
    restore.add_argument("file", type=Path, metavar="FILE", help="a file from `node backup`")
    restore.add_argument("--data-dir", type=Path, help="where to restore (as for node start)")
    restore.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    restore.add_argument(
        "--force",
        action="store_true",
        help="restore into a data dir that is not empty: its store, identity and CA are "
        "replaced (runs/, work/, datasets/ are left as they are)",
    )
    restore.add_argument(
        "--raft",
        choices=["rejoin", "keep"],
        help="rejoin: drop the backup's Raft state; the node catches up from its "
        "cluster's leader before it votes again (the default, but for a backup of its "
        "cluster's only voter, which asks). keep: put it back as it was, for a node "
        "that is still its cluster's only voter",
    )
    restore.set_defaults(handler=restore_command)

    node_install.register(actions)


def start_command(args: argparse.Namespace) -> int:
    from murmur.node.config import load_node_config
    from murmur.node.daemon import run_node

    flags = {
        "name": args.name,
        "data_dir": args.data_dir,
        "listen": args.listen,
        "join_listen": args.join_listen,
        "router_listen": args.router_listen,
        "router_require_keys": args.router_require_keys,
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
    print(f"version: murmur {node.version or '?'}, control protocol {protocol_of(node)}")
    if node.upgrade_needed:
        print(
            f"must be upgraded: it stopped applying the control log at {node.upgrade_needed} "
            "(its jobs run on)"
        )
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


def _data_dir_of(args: argparse.Namespace) -> Path:
    """The data dir ``node start`` would use with these flags (config, env, default)."""
    from murmur.node.config import load_node_config

    config = load_node_config(config_file=args.config, flags={"data_dir": args.data_dir})
    return config.data_dir


IDENTITY_FILE = "identity.pem"
CA_DIR = "ca"


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 2**10:.0f} KiB"


def backup_command(args: argparse.Namespace) -> int:
    import asyncio

    from murmur import __version__
    from murmur.certs import IdentityBundle
    from murmur.storage import StoreError
    from murmur.storage.backup import backup_data_dir

    data_dir = _data_dir_of(args)
    identity_path = data_dir / IDENTITY_FILE
    if not identity_path.exists():
        raise CommandError(f"no node in {data_dir}: {identity_path} does not exist")
    node = IdentityBundle.read(identity_path).identity.name
    try:
        manifest = asyncio.run(
            backup_data_dir(
                data_dir,
                args.out,
                node=node,
                murmur_version=__version__,
                include=(IDENTITY_FILE, CA_DIR),
            )
        )
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    raft = manifest.raft
    role = (
        f"a voter of {len(raft.voters)} (term {raft.term}, log index {raft.last_index})"
        if manifest.was_voter
        else "not a voter"
    )
    ca = " and CA" if any(f.path.startswith(f"{CA_DIR}/") for f in manifest.files) else ""
    note(
        f"murmur: backed up node {node} to {args.out} ({_size(args.out.stat().st_size)}): "
        f"its store (schema {manifest.schema_version}), identity{ca}; it was {role}"
    )
    note("murmur: the file holds the node's private key: keep it as safe as the server")
    return 0


IGNORED_IN_NEW_DATA_DIR = frozenset({"lost+found"})
"""Entries a fresh filesystem brings: a data dir holding only these counts as empty."""


def restore_command(args: argparse.Namespace) -> int:
    import os
    import shutil

    from murmur.node.data_dir_lock import LOCK_FILE, lock_data_dir
    from murmur.node.errors import StartupError

    data_dir = _data_dir_of(args).absolute()
    os.umask(0o077)
    created = not data_dir.exists()
    data_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
    staging = data_dir / f".restore-{os.getpid()}"
    try:
        try:
            lock = lock_data_dir(data_dir)
        except StartupError as exc:
            raise CommandError(f"cannot restore: {exc}") from None
        with lock:
            ignored = {LOCK_FILE, *IGNORED_IN_NEW_DATA_DIR}
            present = sorted(e.name for e in data_dir.iterdir() if e.name not in ignored)
            if present and not args.force:
                raise CommandError(
                    f"data dir {data_dir} is not empty ({', '.join(present[:6])}): restore "
                    "into a new one, or pass --force to replace its store, identity and CA"
                )
            manifest, raft_dropped = _restore_holding_lock(args, staging, data_dir)
    except BaseException:
        if created:  # nothing of ours, nor anything else, is left in it
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    note(
        f"murmur: restored node {manifest.node} into {data_dir} from its backup of "
        f"{manifest.created_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    if raft_dropped:
        note(
            "murmur: its Raft state was dropped: once started, it catches up from its "
            "cluster's leader, and votes only after that"
        )
    else:
        note("murmur: its Raft state is the backup's: the cluster's jobs are as they were then")
    note(f"next: murmur node start --data-dir {data_dir} (as before, without --join/--token)")
    return 0


def _restore_holding_lock(
    args: argparse.Namespace, staging: Path, data_dir: Path
) -> tuple[BackupManifest, bool]:
    """Checks the backup whole (into ``staging``), prepares its store and moves
    everything into ``data_dir``; returns the manifest and whether the Raft state was
    dropped. Nothing in ``data_dir`` but ``staging`` changes unless all is well."""
    import asyncio

    from murmur.node.control.queue.audit_trail import INCARNATION_KEY
    from murmur.storage import StoreError
    from murmur.storage.backup import (
        STORE_NAME,
        extract_backup,
        install_backup,
        prepare_restored_store,
    )

    try:
        manifest = extract_backup(args.file, staging)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    raft = args.raft
    if raft is None and manifest.was_lone_voter:
        raise CommandError(
            f"node {manifest.node} was its cluster's only voter when this backup was made: "
            "if it still is (a one-server lab), restore with --raft keep (the cluster's "
            f"jobs come back as they were at {manifest.created_at:%Y-%m-%d %H:%M} UTC); "
            "if other servers vote now, restore with --raft rejoin"
        )
    keep = raft == "keep"
    if keep and manifest.was_voter and not manifest.was_lone_voter:
        note(
            f"murmur: warning: {manifest.node} was one of {len(manifest.raft.voters)} voters: "
            "with --raft keep, start it only if none of the others will run again"
        )
    try:
        asyncio.run(
            prepare_restored_store(
                staging / STORE_NAME,
                forget_raft=not keep,
                # The audit outbox ships under a new name: calls this node took after
                # the backup were shipped under the old one with the same numbers.
                reset_meta={INCARNATION_KEY: ""},
            )
        )
        install_backup(staging, data_dir, manifest)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    return manifest, not keep
