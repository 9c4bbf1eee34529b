"""No single node holds the keys: real daemons on 127.0.0.x over mutual TLS.

The CA key goes to every voter; with the `ca init` node stopped, another voter
admits a new node (with a token created through yet another node) and a user is
issued through a node that holds no key. Every node listens for joins on the same
port, as servers do (the token names the port; the host is the operator's).
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from murmur.certs import CertificateAuthority, IdentityBundle, Role
from tests.support.cluster import eventually, host_of, provision_node, status_of
from tests.support.nodes import Lab, NodeProcess, free_ports

PASSPHRASE = "correct horse battery staple"
ENV = {
    "MURMUR_NODE_VOTER_STABILIZATION_SECONDS": "1",
    "MURMUR_NODE_CA_CUSTODY_INTERVAL_SECONDS": "0.5",
    "MURMUR_CA_PASSPHRASE": PASSPHRASE,
}


def shared_join_port(hosts: list[str]) -> int:
    """A port free on every host (each node's join listener takes it on its own)."""
    for _ in range(50):
        port = free_ports(hosts[0], 1)[0]
        with contextlib.ExitStack() as stack:
            try:
                for host in hosts:
                    sock = stack.enter_context(socket.socket())
                    sock.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free on every host")


def start(
    lab: Lab, index: int, join_port: int, *extra: str, data_dir: Path | None = None
) -> NodeProcess:
    host = host_of(index)
    name = f"node-{index}"
    return lab.start_node(
        name,
        data_dir=data_dir,
        host=host,
        ports=(free_ports(host, 1)[0], join_port),
        extra_args=list(extra),
        env=ENV,
        wait=False,
    )


def token_via(lab: Lab, node: NodeProcess) -> str:
    result = lab.murmur("token", "create", "--node", node.address)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def test_joins_and_users_work_with_the_ca_init_node_down(lab: Lab, tmp_path: Path) -> None:
    join_port = shared_join_port([host_of(i) for i in range(1, 6)])
    first = start(lab, 1, join_port, data_dir=lab.first_data_dir)
    others = [
        start(
            lab,
            i,
            join_port,
            "--seed",
            first.address,
            data_dir=provision_node(lab, f"node-{i}", host_of(i)),
        )
        for i in (2, 3)
    ]
    for node in (first, *others):
        node.wait_ready()
    # The passphrase given, the `ca init` node's key is encrypted at rest from its start.
    assert CertificateAuthority.key_is_encrypted(lab.first_data_dir / "ca")

    def held(node: NodeProcess) -> bool:
        return (node.data_dir / "ca" / "ca.key").exists()

    async def all_hold() -> bool:
        return all(held(node) for node in others)

    await eventually(all_hold, bool, within=60, what="every voter holds the CA key")
    for node in others:
        ca_dir = node.data_dir / "ca"
        assert CertificateAuthority.key_is_encrypted(ca_dir)
        ca = CertificateAuthority.load(ca_dir, passphrase=PASSPHRASE.encode())
        assert ca.fingerprint == lab.ca.fingerprint
    # Every holder's join listener is open once it says so in its status.

    first.kill()
    node_2, node_3 = others

    async def leader_without_first() -> str:
        status = await status_of(node_2, lab)
        return status.leader if status is not None else ""

    await eventually(
        leader_without_first, lambda leader: leader in {"node-2", "node-3"}, within=45,
        what="a leader among the remaining voters",
    )  # fmt: skip

    # A token made through node-2 admits node-4 through node-3's join listener.
    token = token_via(lab, node_2)
    node_4 = lab.start_node(
        "node-4",
        host=host_of(4),
        ports=(free_ports(host_of(4), 1)[0], join_port),
        extra_args=["--join", node_3.address, "--token", token],
        env=ENV,
    )
    bundle = IdentityBundle.read(node_4.data_dir / "identity.pem")
    assert bundle.identity.name == "node-4"
    assert bundle.ca_fingerprint == lab.ca.fingerprint

    # The same token through node-2's join listener: used once, cluster-wide.
    second = lab.start_node(
        "node-5",
        host=host_of(5),
        ports=(free_ports(host_of(5), 1)[0], join_port),
        extra_args=["--join", node_2.address, "--token", token],
        env=ENV,
        wait=False,
    )
    assert second.process.wait(timeout=60) == 1
    assert "already used by 'node-4'" in second.log()
    assert not (second.data_dir / "identity.pem").exists()

    # A user added through node-4 (no CA key: it relays to a holder) can call.
    out = tmp_path / "alice.identity.pem"
    added = lab.murmur(
        "user", "add", "alice", "--role", "member", "--out", str(out), "--node", node_4.address
    )
    assert added.returncode == 0, added.stderr
    assert IdentityBundle.read(out).identity.role is Role.MEMBER
    assert lab.murmur("whoami", "--node", node_2.address, identity=out).returncode == 0

    # `murmur user renew` reissues it in place: a new certificate, the same role.
    old_serial = IdentityBundle.read(out).identity.serial
    renewed = lab.murmur("user", "renew", "alice", "--out", str(out), "--node", node_3.address)
    assert renewed.returncode == 0, renewed.stderr
    again = IdentityBundle.read(out).identity
    assert again.serial != old_serial
    assert again.role is Role.MEMBER
    whoami = lab.murmur("whoami", "--node", node_4.address, identity=out)
    assert whoami.returncode == 0, whoami.stderr
    assert "alice" in whoami.stdout


async def test_a_node_needs_the_passphrase_of_its_encrypted_ca_key(lab: Lab) -> None:
    ca_dir = lab.first_data_dir / "ca"
    lab.ca.write(ca_dir, passphrase=PASSPHRASE.encode())
    node = lab.start_node(
        "node-1", data_dir=lab.first_data_dir, wait=False, env={"MURMUR_CA_PASSPHRASE": ""}
    )
    assert node.process.wait(timeout=30) == 1
    assert "encrypted: set MURMUR_CA_PASSPHRASE" in node.log()
    node = lab.start_node(
        "node-1", data_dir=lab.first_data_dir, env={"MURMUR_CA_PASSPHRASE": PASSPHRASE}
    )
    assert lab.murmur("token", "create", "--node", node.address).returncode == 0
