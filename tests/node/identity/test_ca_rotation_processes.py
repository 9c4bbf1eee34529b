"""A CA rotation with its overlap window, on real daemons over mutual TLS.

Three voters hold the CA key. ``murmur ca rotate start`` through a node: every node
trusts old and new, renews its certificate from the new CA and presents it with
the cross certificate, every holder swaps the old key for the new one, and a user
with an old bundle keeps working; a user renewed meanwhile gets the new CA, and a
node joins with a token of the new CA. ``murmur ca rotate finish``: the old bundle
is refused by every node, the renewed one is not, the cluster still agrees, and a
node restarted afterwards comes back with what it trusts now.
"""

from __future__ import annotations

from pathlib import Path

from murmur.certs import CertificateAuthority, IdentityBundle, Role
from tests.node.identity.test_trust_processes import ENV, PASSPHRASE, shared_join_port, start
from tests.support.cluster import eventually, host_of, provision_node, status_of
from tests.support.nodes import Lab, NodeProcess, free_ports


def signing_ca(node: NodeProcess) -> str:
    """The CA whose key the node holds; empty while it holds none (between dropping
    the old key and fetching the new one)."""
    if not CertificateAuthority.exists(node.data_dir / "ca"):
        return ""
    return CertificateAuthority.load(
        node.data_dir / "ca", passphrase=PASSPHRASE.encode()
    ).fingerprint


def identity_of(node: NodeProcess) -> IdentityBundle:
    return IdentityBundle.read(node.data_dir / "identity.pem")


def calls_ok(lab: Lab, identity: Path, nodes: list[NodeProcess]) -> list[bool]:
    return [
        lab.murmur("status", "--node", node.address, identity=identity).returncode == 0
        for node in nodes
    ]


async def test_a_ca_rotation_keeps_the_cluster_working_and_ends_the_old_ca(
    lab: Lab, tmp_path: Path
) -> None:
    join_port = shared_join_port([host_of(i) for i in range(1, 5)])
    first = start(lab, 1, join_port, data_dir=lab.first_data_dir)
    others = [
        start(
            lab, i, join_port, "--seed", first.address,
            data_dir=provision_node(lab, f"node-{i}", host_of(i)),
        )
        for i in (2, 3)
    ]  # fmt: skip
    nodes = [first, *others]
    for node in nodes:
        node.wait_ready()

    async def all_hold() -> bool:
        return all((node.data_dir / "ca" / "ca.key").exists() for node in others)

    await eventually(all_hold, bool, within=60, what="every voter holds the CA key")
    old_ca = lab.ca.fingerprint
    stale_user = lab.issue_identity("stale", Role.MEMBER)

    started = lab.murmur("ca", "rotate", "start", "--node", others[0].address)
    assert started.returncode == 0, started.stderr
    assert "signs from now on" in started.stderr
    again = lab.murmur("ca", "rotate", "start", "--node", first.address)
    assert again.returncode != 0
    assert "under way" in again.stderr

    async def rotated() -> list[tuple[str, str]]:
        return [(identity_of(node).ca_fingerprint, signing_ca(node)) for node in nodes]

    seen = await eventually(
        rotated,
        lambda pairs: len({fp for pair in pairs for fp in pair}) == 1 and pairs[0][0] != old_ca,
        within=60,
        what="every node renewed from, and every holder holds, the new CA",
    )
    new_ca = seen[0][0]
    for node in nodes:
        bundle = identity_of(node)
        assert bundle.ca_fingerprints == [new_ca, old_ca]  # both trusted; new signs
        assert bundle.intermediate_pem  # the cross certificate, for old-CA peers
        assert not (node.data_dir / "ca" / "next").exists()

    # Each node's new certificate reaches the others by gossip, which may come a
    # moment after the files on disk (seen under load): status says so once it has.
    async def ca_status() -> str:
        status = lab.murmur("ca", "status", "--node", first.address)
        assert status.returncode == 0, status.stderr
        return status.stderr

    await eventually(
        ca_status,
        lambda text: "every live node holds a certificate of the new CA" in text,
        within=30,
        what="ca status seeing every node's new certificate",
    )

    # The overlap: an old bundle still works everywhere.
    assert calls_ok(lab, stale_user, nodes) == [True] * 3
    # Users renewed meanwhile get the new CA (trusting both).
    renewed = lab.murmur("user", "renew", "alice", "--role", "member",
                         "--out", str(tmp_path / "alice.pem"), "--node", first.address)  # fmt: skip
    assert renewed.returncode == 0, renewed.stderr
    alice = IdentityBundle.read(tmp_path / "alice.pem")
    assert alice.ca_fingerprint == new_ca
    admin_renewed = lab.murmur(
        "user", "renew", "admin", "--out", str(lab.admin_identity),
        "--node", others[1].address,
    )  # fmt: skip
    assert admin_renewed.returncode == 0, admin_renewed.stderr
    # A token made now pins the new CA, and a node joins with it.
    token = lab.murmur("token", "create", "--node", others[1].address)
    assert token.returncode == 0, token.stderr
    joiner = lab.start_node(
        "node-4",
        host=host_of(4),
        ports=(free_ports(host_of(4), 1)[0], join_port),
        extra_args=["--join", first.address, "--token", token.stdout.strip()],
        env=ENV,
    )
    assert identity_of(joiner).ca_fingerprint == new_ca
    nodes.append(joiner)

    async def ready_to_finish() -> str:
        shown = lab.murmur("ca", "status", "--node", others[1].address)
        return shown.stdout + shown.stderr

    await eventually(ready_to_finish, lambda text: "node-4" in text and "waiting" not in text,
                     within=30, what="`ca status` sees every node on the new CA")  # fmt: skip
    finished = lab.murmur("ca", "rotate", "finish", "--node", others[1].address)
    assert finished.returncode == 0, finished.stderr
    assert f"retired lab CA {old_ca}" in finished.stderr

    async def old_refused() -> list[bool]:
        return calls_ok(lab, stale_user, nodes)

    await eventually(old_refused, lambda oks: not any(oks), within=30,
                     what="every node refuses the old CA's certificates")  # fmt: skip
    assert calls_ok(lab, tmp_path / "alice.pem", nodes) == [True] * 4
    for node in nodes:
        assert identity_of(node).ca_fingerprints == [new_ca]
        assert not identity_of(node).intermediate_pem

    # The nodes still talk to each other: one leader, every node alive.
    async def agreed() -> list[str]:
        found = []
        for node in nodes:
            answer = await status_of(node, lab)
            found.append(answer.leader if answer is not None else "")
        return found

    await eventually(agreed, lambda leaders: len(set(leaders)) == 1 and leaders[0] != "",
                     within=30, what="one leader, seen by every node")  # fmt: skip
    # A node restarted after the rotation trusts only the new CA, and is back.
    others[0].terminate()
    restarted = lab.restart(others[0])
    restarted.wait_ready()
    assert calls_ok(lab, lab.admin_identity, [restarted]) == [True]
    assert calls_ok(lab, stale_user, [restarted]) == [False]
