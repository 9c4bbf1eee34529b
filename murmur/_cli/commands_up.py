"""``murmur up``: a local demo cluster, all set up, in the foreground.

Everything lives under ``$MURMUR_HOME`` (default ``~/.murmur``): the CA and
node data dirs in ``cluster/``, the admin identity in ``identity.pem`` and the
default node address in ``client.toml``, so ``murmur status`` and
``murmur top`` in a second terminal work with no flags. Running ``murmur up``
again reuses what is there. Nodes run as separate processes (never forked
from a process that has initialised gRPC); Ctrl-C stops them all.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from murmur._cli.errors import CommandError
from murmur._cli.output import note
from murmur._cli.parsing import positive_int
from murmur._frozen import murmur_command

DEFAULT_SIMULATED_GPUS = "8xA100-80GB"
READY_TIMEOUT_SECONDS = 30.0
MAX_DEMO_NODES = 32


def register(commands: Any) -> None:
    up = commands.add_parser("up", help="start a local demo cluster (Ctrl-C stops it)")
    up.add_argument("--nodes", type=positive_int, default=1, help="number of nodes (default 1)")
    up.add_argument(
        "--simulate-gpus",
        metavar="SPEC",
        help=f"simulated GPUs per node (default: real GPUs, else {DEFAULT_SIMULATED_GPUS})",
    )
    up.add_argument("--port", type=positive_int, default=7070, help="API port of every node")
    up.add_argument(
        "--router-port", type=positive_int, default=8000,
        help="port of every node's OpenAI-compatible router (default 8000)",
    )  # fmt: skip
    up.set_defaults(handler=up_command)


def _node_address(index: int, port: int) -> str:
    return f"127.0.0.{index}:{port}"


def _choose_gpus(requested: str | None) -> str | None:
    """The simulated inventory to declare, or ``None`` to use the real GPUs."""
    from murmur.node.agent.gpus import GpuSource, open_gpu_probe, parse_simulated_spec

    if requested:
        parse_simulated_spec(requested)
        return requested
    probe = open_gpu_probe(simulate=None)
    try:
        inventory = probe.inventory()
    finally:
        probe.close()
    if inventory.source is GpuSource.NVML:
        return None
    note(f"no GPU found ({inventory.reason}); simulating {DEFAULT_SIMULATED_GPUS} per node")
    return DEFAULT_SIMULATED_GPUS


def _admin_name() -> str:
    """The Unix account's name when it makes a valid identity name, else ``admin``."""
    from murmur._cli.accounts import own_account_name
    from murmur.certs.roles import NAME_PATTERN

    name = own_account_name()
    return name if NAME_PATTERN.fullmatch(name) else "admin"


def _demo_job_flags() -> list[str]:
    """Every demo user's jobs run as whoever ran ``murmur up`` (the fallback
    account: demo users added with ``murmur user add`` have no Unix accounts);
    as root only because root started the demo, and said so on the terminal."""
    from murmur._cli.accounts import own_account_name, running_as_root

    flags = ["--job-fallback-account", own_account_name()]
    if running_as_root():
        flags.append("--allow-root-jobs")
    return flags


def _prepare_home(home: Path, port: int) -> Path:
    """Creates the CA and admin identity on first use; returns node-1's data dir."""
    from murmur.certs import CertificateAuthority, Role

    first = home / "cluster" / "node-1"
    identity = home / "identity.pem"
    if not CertificateAuthority.exists(first / "ca"):
        if identity.exists():
            raise CommandError(
                f"{identity} exists but belongs to no demo cluster here; move it away first"
            )
        ca = CertificateAuthority.create(first / "ca")
        ca.issue(name=_admin_name(), role=Role.ADMIN, validity_days=365).write(identity)
        note(f"created a lab CA in {first / 'ca'} and the admin identity {identity}")
    settings = home / "client.toml"
    settings.write_text(f'node = "{_node_address(1, port)}"\n', encoding="utf-8")
    return first


def _start_node(
    home: Path, index: int, port: int, router_port: int, gpus: str | None, join_token: str | None
) -> subprocess.Popen[bytes]:
    data_dir = home / "cluster" / f"node-{index}"
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    command = [
        *murmur_command(), "node", "start",
        "--name", f"node-{index}",
        "--data-dir", str(data_dir),
        "--listen", _node_address(index, port),
    ]  # fmt: skip
    command += _demo_job_flags()
    if gpus:
        command += ["--simulate-gpus", gpus]
    env = dict(os.environ)
    # Every node routes model requests to the services' replicas (docs/serving.md).
    env["MURMUR_NODE_ROUTER_LISTEN"] = _node_address(index, router_port)
    if join_token:
        # The token in the environment, not on the command line, where `ps` shows
        # it to every account on the machine.
        command += ["--join", _node_address(1, port)]
        env["MURMUR_NODE_TOKEN"] = join_token
    log = (data_dir / "node.log").open("ab")
    return subprocess.Popen(
        command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, env=env
    )


async def _wait_ready(address: str, identity: Path, process: subprocess.Popen[bytes]) -> Any:
    import asyncio

    from murmur import AsyncClient, MurmurError, resolve_connect_config

    config = resolve_connect_config(node=address, identity=identity)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            return None
        try:
            async with AsyncClient(config) as client:
                return await client.status(timeout=2.0)
        except MurmurError:
            if time.monotonic() > deadline:
                raise CommandError(f"node at {address} did not become ready") from None
            await asyncio.sleep(0.2)


async def _wait_converged(address: str, identity: Path, names: set[str]) -> bool:
    """Whether the node at ``address`` came to see every node of ``names`` alive in
    time (gossip usually takes well under a second)."""
    import asyncio

    from murmur import AsyncClient, MurmurError, resolve_connect_config
    from murmur.v1 import types_pb2

    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    async with AsyncClient(resolve_connect_config(node=address, identity=identity)) as client:
        while time.monotonic() < deadline:
            try:
                nodes = await client.list_nodes(timeout=2.0)
            except MurmurError:
                nodes = []
            alive = {n.name for n in nodes if n.state == types_pb2.NODE_STATE_ALIVE}
            if names <= alive:
                return True
            await asyncio.sleep(0.2)
    return False


async def _create_token(address: str, identity: Path) -> str:
    from murmur import AsyncClient, resolve_connect_config

    async with AsyncClient(resolve_connect_config(node=address, identity=identity)) as client:
        response = await client.create_join_token(ttl_seconds=600)
    return str(response.token)


def _last_log_line(home: Path, index: int) -> str:
    """Why a node stopped: its one-line error (``murmur node: ...`` or ``murmur:
    error: ...``), else its log's last line (what came after the error, a
    traceback's end, says less)."""
    log = home / "cluster" / f"node-{index}" / "node.log"
    lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    for line in reversed(lines):
        for prefix in _ERROR_PREFIXES:
            if line.startswith(prefix):
                return line.removeprefix(prefix)
    return lines[-1] if lines else "(no output)"


_ERROR_PREFIXES = ("murmur node: ", "murmur: error: ")


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def up_command(args: argparse.Namespace) -> int:
    import asyncio

    from murmur._config import default_home

    if args.nodes > MAX_DEMO_NODES:
        raise CommandError(f"--nodes must be at most {MAX_DEMO_NODES} for a local demo")
    home = default_home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the nodes too, like Ctrl-C
    from murmur._cli.accounts import running_as_root

    gpus = _choose_gpus(args.simulate_gpus)
    _prepare_home(home, args.port)
    if running_as_root():
        note(
            "murmur: running as root, so the demo's jobs run as root (--allow-root-jobs); "
            "a real node refuses root jobs unless its admin turns that on"
        )
    identity = home / "identity.pem"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(1, args.nodes + 1):
            token = None
            needs_join = (
                index > 1 and not (home / "cluster" / f"node-{index}" / "identity.pem").exists()
            )
            if needs_join:
                token = asyncio.run(_create_token(_node_address(1, args.port), identity))
            process = _start_node(home, index, args.port, args.router_port, gpus, token)
            processes.append(process)
            status = asyncio.run(_wait_ready(_node_address(index, args.port), identity, process))
            if status is None:
                raise CommandError(f"node-{index} exited at start: {_last_log_line(home, index)}")
            note(f"node-{index} ready at {_node_address(index, args.port)}")
        names = {f"node-{index}" for index in range(1, args.nodes + 1)}
        if not asyncio.run(_wait_converged(_node_address(1, args.port), identity, names)):
            note(f"murmur: node-1 does not see all {args.nodes} nodes yet; see their node.log")
        note("")
        note(f"murmur: a {args.nodes}-node cluster is up (data in {home / 'cluster'}).")
        note("In another terminal:  murmur status   |   murmur node list   |   murmur job list")
        note(
            "Models served by `murmur service create`: "
            f"http://{_node_address(1, args.router_port)}/v1 (OpenAI API, on every node)"
        )
        note("Ctrl-C stops the cluster.")
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        dead = next(i for i, p in enumerate(processes, 1) if p.poll() is not None)
        raise CommandError(f"node-{dead} stopped: {_last_log_line(home, dead)}")
    except KeyboardInterrupt:
        note("stopping...")
        return 0
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            _stop(processes)
