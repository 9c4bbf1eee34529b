"""Start real ``murmur node`` processes on loopback for integration tests.

Each node is a separate process (``python -m murmur node start``), never a
fork of the test process, which has initialised gRPC. Ports are picked free
by the OS. Every process is killed when the test ends, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from murmur.certs import CertificateAuthority, IdentityBundle, Role
from tests.support.accounts import HARNESS_NODE_ENV

READY_TIMEOUT_SECONDS = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    """One free port; to pick several at once use :func:`free_ports`."""
    return free_ports(host, 1)[0]


def free_ports(host: str = "127.0.0.1", count: int = 2) -> list[int]:
    """``count`` distinct free ports on ``host``: every socket stays bound until all
    ports are read, so the OS cannot hand out the same port twice."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


@dataclass
class NodeProcess:
    name: str
    data_dir: Path
    address: str
    join_address: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int = 0
    """Where this run's output starts in the log (a restart appends to it)."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment the node was started with (kept for restarts)."""
    extra_args: tuple[str, ...] = ()
    """Extra flags the node was started with (kept for restarts)."""
    wrapper: tuple[str, ...] = ()
    """What the command was prefixed with (kept for restarts)."""

    def log(self) -> str:
        """This run's output only."""
        with self.log_path.open("rb") as handle:
            handle.seek(self.log_offset)
            return handle.read().decode("utf-8", errors="replace")

    def log_records(self) -> list[dict[str, object]]:
        records = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
        return records

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if '"event": "node.ready"' in self.log():
                return
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"node {self.name} exited with {self.process.returncode}:\n{self.log()}"
                )
            time.sleep(0.05)
        raise TimeoutError(f"node {self.name} not ready after {timeout}s:\n{self.log()}")

    def terminate(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@dataclass
class Lab:
    """A lab CA and its admin identity in a temporary directory, plus its nodes."""

    root: Path
    ca: CertificateAuthority
    admin_identity: Path
    nodes: list[NodeProcess] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MURMUR_")}
        env["MURMUR_HOME"] = str(self.root / "home")
        return env

    @property
    def first_data_dir(self) -> Path:
        return self.root / "node-1"

    def issue_identity(self, name: str, role: Role, **kwargs: object) -> Path:
        path = self.root / f"{name}.identity.pem"
        self.ca.issue(name=name, role=role, validity_days=30, **kwargs).write(path)  # type: ignore[arg-type]
        return path

    def start_node(
        self,
        name: str,
        *,
        data_dir: Path | None = None,
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        ports: tuple[int, int] | None = None,
        wait: bool = True,
        env: dict[str, str] | None = None,
        wrapper: Sequence[str] = (),
    ) -> NodeProcess:
        """Starts ``murmur node start`` for ``name``; ``wrapper`` prefixes the command
        (``ip netns exec NS`` runs the node in a network namespace)."""
        data_dir = data_dir or self.root / name
        port, join_port = ports or free_ports(host, 2)
        log_path = self.root / f"{name}.log"
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        command = [
            *wrapper, sys.executable, "-m", "murmur", "node", "start",
            "--name", name, "--data-dir", str(data_dir),
            "--listen", f"{host}:{port}", "--join-listen", f"{host}:{join_port}",
            "--log-level", "debug",
            *extra_args,
        ]  # fmt: skip
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.env, **HARNESS_NODE_ENV, **(env or {})},
            )
        node = NodeProcess(
            name=name,
            data_dir=data_dir,
            address=f"{host}:{port}",
            join_address=f"{host}:{join_port}",
            process=process,
            log_path=log_path,
            log_offset=log_offset,
            env=dict(env or {}),
            extra_args=tuple(extra_args),
            wrapper=tuple(wrapper),
        )
        self.nodes.append(node)
        if wait:
            node.wait_ready()
        return node

    def murmur(
        self,
        *args: str,
        identity: Path | None = None,
        timeout: float = 60.0,
        wrapper: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        """Runs the CLI in a subprocess, as a user would."""
        env = self.env
        env["MURMUR_IDENTITY"] = str(identity or self.admin_identity)
        return subprocess.run(
            [*wrapper, sys.executable, "-m", "murmur", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def restart(self, node: NodeProcess) -> NodeProcess:
        """Starts a stopped (or killed) node again on the same data dir and ports,
        with the flags it started with less ``--join`` and ``--token``: it holds its
        identity now, and a node refuses them on a data dir that holds one."""
        host, port = node.address.rsplit(":", 1)
        join_port = int(node.join_address.rsplit(":", 1)[1])
        return self.start_node(
            node.name,
            data_dir=node.data_dir,
            host=host,
            ports=(int(port), join_port),
            extra_args=without_join_flags(node.extra_args),
            env=node.env,
            wrapper=node.wrapper,
        )

    def stop_all(self) -> None:
        for node in self.nodes:
            node.kill()


def without_join_flags(args: Sequence[str]) -> tuple[str, ...]:
    """``args`` less ``--join HOST:PORT`` and ``--token T`` (either spelling)."""
    kept: list[str] = []
    arguments = iter(args)
    for arg in arguments:
        if arg in {"--join", "--token"}:
            next(arguments, None)
        elif not arg.startswith(("--join=", "--token=")):
            kept.append(arg)
    return tuple(kept)


def create_lab(root: Path) -> Lab:
    ca = CertificateAuthority.create(root / "node-1" / "ca")
    admin = root / "admin.identity.pem"
    ca.issue(name="admin", role=Role.ADMIN, validity_days=30).write(admin)
    return Lab(root=root, ca=ca, admin_identity=admin)


def lab_fixture(root: Path) -> Iterator[Lab]:
    lab = create_lab(root)
    try:
        yield lab
    finally:
        lab.stop_all()


def read_bundle(path: Path) -> IdentityBundle:
    return IdentityBundle.read(path)
