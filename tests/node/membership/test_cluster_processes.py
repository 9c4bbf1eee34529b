"""Real clusters: separate ``murmur node start`` processes on 127.0.0.x over mTLS.

Gossip runs with its production timings here (memberlist's LAN profile), so what
these tests wait for is what an operator would wait for.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess

import grpc
import pytest

import murmur
from murmur.certs import CertificateAuthority, Role
from murmur.node.membership.seeds import PEERS_META_KEY
from murmur.v1 import types_pb2
from tests.support.cluster import (
    client_for,
    eventually,
    host_of,
    node_states,
    start_cluster,
    views,
    wait_converged,
)
from tests.support.nodes import Lab, NodeProcess

SIMULATED = ["--simulate-gpus", "8xA100-80GB"]


def create_token(lab: Lab, node: NodeProcess) -> str:
    result = lab.murmur("token", "create", "--node", node.address)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def alive(*names: str) -> dict[str, str]:
    return dict.fromkeys(names, "alive")


async def test_five_nodes_joined_with_tokens_converge_and_any_node_shows_all(lab: Lab) -> None:
    first = lab.start_node(
        "node-1", data_dir=lab.first_data_dir, host=host_of(1), extra_args=SIMULATED
    )
    nodes = [first]
    for index in range(2, 6):
        token = create_token(lab, first)
        nodes.append(
            lab.start_node(
                f"node-{index}",
                host=host_of(index),
                extra_args=["--join", first.join_address, "--token", token, *SIMULATED],
            )
        )
    names = [node.name for node in nodes]
    await wait_converged(nodes, lab.admin_identity, alive(*names))

    # The CLI, attached to any node, lists every node with its GPUs.
    listing = lab.murmur("node", "list", "--node", nodes[3].address, "--json")
    assert listing.returncode == 0, listing.stderr
    listed = {n["name"]: n for n in json.loads(listing.stdout)["nodes"]}
    assert sorted(listed) == names
    for node in nodes:
        info = listed[node.name]
        assert info["address"] == node.address
        assert len(info["gpus"]["devices"]) == 8
        assert info["gpus"]["source"] == "GPU_SOURCE_SIMULATED"
        assert info["load"]["gpus_free"] == 8
    status = lab.murmur("status", "--node", nodes[2].address, "--json")
    assert status.returncode == 0, status.stderr
    summary = json.loads(status.stdout)
    assert summary["gpus_total"] == 40
    assert summary["gpus_simulated"] is True
    assert summary["answered_by"] == "node-3"
    # `node show` of another node asks that node itself: fresh readings with their
    # sample time, which gossip does not carry.
    shown = lab.murmur("node", "show", "node-2", "--node", nodes[0].address, "--json")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["name"] == "node-2"
    assert detail["load"]["measured_at"]
    assert "measured_at" not in listed["node-2"]["load"]
    table = lab.murmur("node", "list", "--node", nodes[4].address)
    assert table.returncode == 0, table.stderr
    for name in names:
        assert name in table.stdout


async def test_kill_9_is_seen_dead_by_all_and_a_restart_rejoins_with_a_higher_incarnation(
    lab: Lab,
) -> None:
    nodes = start_cluster(lab, 5)
    names = [node.name for node in nodes]
    await wait_converged(nodes, lab.admin_identity, alive(*names))
    victim = nodes[2]
    before = (await node_states(nodes[0], lab.admin_identity))[victim.name].incarnation

    victim.kill()
    survivors = [node for node in nodes if node is not victim]
    await wait_converged(survivors, lab.admin_identity, {victim.name: "dead"})

    restarted = lab.restart(victim)
    everyone = [*survivors, restarted]
    await wait_converged(everyone, lab.admin_identity, alive(*names))
    for node in everyone:
        seen = (await node_states(node, lab.admin_identity))[victim.name]
        assert seen.incarnation > before, f"{node.name} sees incarnation {seen.incarnation}"


async def test_a_node_stopped_with_sigterm_is_seen_as_left(lab: Lab) -> None:
    nodes = start_cluster(lab, 3)
    await wait_converged(nodes, lab.admin_identity, alive("node-1", "node-2", "node-3"))
    assert nodes[1].terminate() == 0
    await wait_converged([nodes[0], nodes[2]], lab.admin_identity, {"node-2": "left"})


async def test_a_node_of_another_ca_is_never_admitted(
    lab: Lab, tmp_path_factory: pytest.TempPathFactory
) -> None:
    nodes = start_cluster(lab, 3)
    await wait_converged(nodes, lab.admin_identity, alive("node-1", "node-2", "node-3"))

    other_root = tmp_path_factory.mktemp("other-lab")
    other_ca = CertificateAuthority.create(other_root / "ca")
    data_dir = other_root / "intruder"
    data_dir.mkdir(mode=0o700)
    other_ca.issue(
        name="intruder", role=Role.NODE, validity_days=30, node_addresses=[host_of(9)]
    ).write(data_dir / "identity.pem")
    other_admin = other_root / "admin.pem"
    other_ca.issue(name="admin", role=Role.ADMIN, validity_days=30).write(other_admin)
    intruder = lab.start_node(
        "intruder", data_dir=data_dir, host=host_of(9), extra_args=["--seed", nodes[0].address]
    )
    # Many probe and join rounds (the join is retried every second).
    for _ in range(8):
        seen = await views(nodes, lab.admin_identity)
        assert all("intruder" not in view for view in seen.values()), seen
        intruder_view = await node_states(intruder, other_admin)
        assert sorted(intruder_view) == ["intruder"]
        assert intruder.process.poll() is None
        await asyncio.sleep(0.6)
    # Its join is refused at the TLS handshake, round after round.
    await eventually(
        lambda: asyncio.sleep(0.2, intruder.log()),
        lambda log: "still joining" in log,
        within=15,
        what="the intruder to report that no seed answers",
    )


async def test_drain_through_any_node_holds_new_jobs_and_survives_a_restart(lab: Lab) -> None:
    nodes = start_cluster(lab, 3)
    await wait_converged(nodes, lab.admin_identity, alive("node-1", "node-2", "node-3"))
    target = nodes[1]

    member = lab.issue_identity("max", Role.MEMBER)
    async with client_for(nodes[0], member) as client:
        with pytest.raises(murmur.PermissionDenied):
            await client.drain_node(target.name)

    drained = lab.murmur("node", "drain", target.name, "--node", nodes[0].address, "--json")
    assert drained.returncode == 0, drained.stderr
    assert json.loads(drained.stdout)["state"] == "NODE_STATE_DRAINING"
    await wait_converged(nodes, lab.admin_identity, {target.name: "draining"})

    # A job submitted through the drained node runs on another one.
    async with client_for(target, lab.admin_identity) as client:
        elsewhere = await client.submit_job(_sleep_spec())
        placed = await eventually(
            lambda: client.get_job(elsewhere.id),
            lambda j: bool(j.runs),
            within=15,
            what="the job to be placed",
        )
        assert placed.runs[-1].node != target.name

    # With every node drained, a job waits, and says why.
    for other in (nodes[0], nodes[2]):
        result = lab.murmur("node", "drain", other.name, "--node", nodes[0].address)
        assert result.returncode == 0, result.stderr
    await wait_converged(nodes, lab.admin_identity, dict.fromkeys(names(nodes), "draining"))
    async with client_for(target, lab.admin_identity) as client:
        job = await client.submit_job(_sleep_spec())
        waiting = await eventually(
            lambda: client.get_job(job.id),
            lambda j: "draining" in j.reason,
            within=15,
            what="a reason naming the drain",
        )
        assert waiting.state == types_pb2.JOB_STATE_PENDING

    # Still drained after a restart: the flag is the node's own, kept in its store.
    target.terminate()
    target = lab.restart(target)
    nodes[1] = target
    await wait_converged(nodes, lab.admin_identity, {target.name: "draining"})

    undrained = lab.murmur("node", "drain", target.name, "--undo", "--node", nodes[2].address)
    assert undrained.returncode == 0, undrained.stderr
    async with client_for(target, lab.admin_identity) as client:
        started = await eventually(
            lambda: client.get_job(job.id),
            lambda j: j.state != types_pb2.JOB_STATE_PENDING,
            within=15,
            what="the held job to start after undrain",
        )
        assert started.runs[-1].node == target.name
    await wait_converged(nodes, lab.admin_identity, {target.name: "alive"})
    events = lab.murmur("audit", "--node", target.address, "--json")
    assert events.returncode == 0, events.stderr
    assert "SetDraining" in events.stdout


async def test_remove_forgets_a_dead_node_everywhere_and_refuses_a_live_one(lab: Lab) -> None:
    nodes = start_cluster(lab, 4)
    names = [node.name for node in nodes]
    await wait_converged(nodes, lab.admin_identity, alive(*names))

    refused = lab.murmur("node", "remove", "node-2", "--node", nodes[0].address)
    assert refused.returncode != 0
    assert "node-2" in refused.stderr
    assert "alive" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    unknown = lab.murmur("node", "remove", "nobody", "--node", nodes[0].address)
    assert unknown.returncode != 0
    assert "nobody" in unknown.stderr

    nodes[3].kill()
    survivors = nodes[:3]
    await wait_converged(survivors, lab.admin_identity, {"node-4": "dead"})
    removed = lab.murmur("node", "remove", "node-4", "--node", nodes[1].address)
    assert removed.returncode == 0, removed.stderr
    await wait_converged(survivors, lab.admin_identity, {"node-4": "left"})

    async with client_for(nodes[0], lab.admin_identity) as client:
        with pytest.raises(murmur.FailedPrecondition) as info:
            await client.remove_node("node-1")
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION


async def test_datasets_of_every_node_are_listed_from_any_node(lab: Lab) -> None:
    nodes = start_cluster(lab, 3)
    await wait_converged(nodes, lab.admin_identity, alive("node-1", "node-2", "node-3"))
    shards = nodes[1].data_dir / "datasets" / "shards"
    shards.mkdir(parents=True)
    (shards / "part-0").write_bytes(b"x" * 1000)
    (shards / "part-1").write_bytes(b"y" * 24)
    added = lab.murmur(
        "dataset", "add", str(shards), "--name", "shards", "--node", nodes[1].address
    )
    assert added.returncode == 0, added.stderr

    async def listed() -> list[dict[str, object]]:
        result = lab.murmur("dataset", "list", "--node", nodes[2].address, "--json")
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout).get("datasets", []))

    found = await eventually(listed, lambda d: bool(d), within=30, what="the dataset on node-3")
    assert [(d["name"], d["node"]) for d in found] == [("shards", "node-2")]
    assert found[0]["size_bytes"] == "1024"
    assert found[0]["file_count"] == "2"

    async def shown_on_node_1() -> subprocess.CompletedProcess[str]:
        return lab.murmur("dataset", "show", "shards", "--node", nodes[0].address, "--json")

    shown = await eventually(
        shown_on_node_1, lambda r: r.returncode == 0, within=30, what="the dataset on node-1"
    )
    assert json.loads(shown.stdout)["node"] == "node-2"

    # `dataset remove` through a node that does not hold it: relayed to the holder.
    copy = nodes[2].data_dir / "datasets" / "shards"
    copy.mkdir(parents=True)
    (copy / "part-0").write_bytes(b"z" * 10)
    added = lab.murmur("dataset", "add", str(copy), "--name", "shards", "--node", nodes[2].address)
    assert added.returncode == 0, added.stderr

    async def listed_on_node_1() -> list[dict[str, object]]:
        result = lab.murmur("dataset", "list", "--node", nodes[0].address, "--json")
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout).get("datasets", []))

    # Only once node-1 knows of both copies: before, it would take node-2's as the one.
    await eventually(listed_on_node_1, lambda d: len(d) == 2, within=30, what="both on node-1")

    async def remove_via_node_1(*more: str) -> subprocess.CompletedProcess[str]:
        return lab.murmur("dataset", "remove", "shards", *more, "--node", nodes[0].address)

    ambiguous = await remove_via_node_1()
    assert ambiguous.returncode == 1
    assert ambiguous.stderr.strip().splitlines() == [
        "murmur: error: dataset 'shards' is on nodes node-2, node-3: say which with --from"
    ]
    relayed = await remove_via_node_1("--from", "node-2", "--json")
    assert relayed.returncode == 0, relayed.stderr
    assert json.loads(relayed.stdout)["node"] == "node-2"
    assert (shards / "part-0").read_bytes() == b"x" * 1000  # the files stay
    remaining = await eventually(listed, lambda d: len(d) == 1, within=30, what="one copy left")
    assert remaining[0]["node"] == "node-3"

    # Now one node holds it: no --from needed, relayed from node-1 to node-3.
    await eventually(listed_on_node_1, lambda d: len(d) == 1, within=30, what="one on node-1")
    last = await remove_via_node_1("--json")
    assert last.returncode == 0, last.stderr
    assert json.loads(last.stdout)["node"] == "node-3"
    assert (copy / "part-0").read_bytes() == b"z" * 10
    await eventually(listed, lambda d: d == [], within=30, what="no copy left")


async def test_a_node_restarts_through_remembered_peers_when_its_seed_is_down(lab: Lab) -> None:
    nodes = start_cluster(lab, 3)
    await wait_converged(nodes, lab.admin_identity, alive("node-1", "node-2", "node-3"))
    # Node-3 writes its peers down a second after the membership settles; only then
    # can it find node-2 without its seed.
    await eventually(
        lambda: asyncio.to_thread(remembered_peers, nodes[2]),
        lambda peers: nodes[1].address in peers,
        within=20,
        what="node-3 to remember node-2 in its store",
    )
    nodes[2].terminate()
    nodes[0].terminate()  # node-3's only configured seed
    restarted = lab.restart(nodes[2])
    await wait_converged(
        [nodes[1], restarted], lab.admin_identity, {"node-2": "alive", "node-3": "alive"}
    )


def remembered_peers(node: NodeProcess) -> list[str]:
    """The peers ``node``'s SeedBook last wrote to its store (read-only; the store is
    in WAL mode, so a reader sees every committed write)."""
    path = node.data_dir / "murmur.db"
    if not path.exists():
        return []
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        row = connection.execute(
            "SELECT value FROM meta WHERE key = ?", (PEERS_META_KEY,)
        ).fetchone()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        connection.close()
    return [str(address) for address in json.loads(row[0])] if row else []


def names(nodes: list[NodeProcess]) -> list[str]:
    return [node.name for node in nodes]


def _sleep_spec() -> types_pb2.JobSpec:
    return types_pb2.JobSpec(
        name="held", runtime=types_pb2.JOB_RUNTIME_PROCESS, command=["sleep", "0.2"]
    )
