"""Gangs end to end on a real 3-node cluster (simulated GPUs): a 2-node x 4-GPU job
starts on two nodes with torchrun's variables, its ranks really meet at the
rendezvous they were given, and a cancel ends both; a rank that fails ends the
other and the job as one (issue 13)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from murmur.v1 import types_pb2
from tests.node.control.consensus.test_cluster_jobs_processes import ended
from tests.node.control.consensus.test_consensus_processes import FAST_VOTERS, wait_agreed
from tests.support.cluster import client_for, eventually, start_cluster
from tests.support.nodes import Lab, NodeProcess

FOUR_GPUS = ["--simulate-gpus", "4xA100-80GB"]
SETTINGS = {**FAST_VOTERS, "MURMUR_NODE_STOP_GRACE_SECONDS": "2"}

RANK = """\
import json, os, signal, socket, sys, time
from pathlib import Path
results, fail_rank = Path(sys.argv[1]), sys.argv[2]
names = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "NNODES",
         "LOCAL_WORLD_SIZE", "MURMUR_RUN_ID", "CUDA_VISIBLE_DEVICES")
env = {name: os.environ.get(name) for name in names}
rank = env["NODE_RANK"]
out = results / f"rank-{rank}.json"
def note(**more):
    out.write_text(json.dumps({**env, "cwd": os.getcwd(), **more}))
def stopped(*_):
    note(met=met, stopped=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, stopped)
met = False
# The rendezvous, as torchrun's c10d store does it: rank 0 listens where the
# others were told to find it, and every other rank connects there.
address = (env["MASTER_ADDR"], int(env["MASTER_PORT"]))
if rank == "0":
    server = socket.create_server(address, reuse_port=True)
    server.settimeout(60)
    peer, _ = server.accept()
    met = peer.recv(16) == b"rank 1"
else:
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(address, timeout=5).sendall(b"rank 1")
            met = True
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
note(met=met, stopped=False)
if rank == fail_rank:
    sys.exit(3)
time.sleep(600)
"""
"""One rank: records its environment and where it ran, meets the other rank at the
rendezvous, then fails (if it is ``fail_rank``) or runs until stopped."""


def gang_job(script: Path, results: Path, *, fail_rank: str = "none") -> types_pb2.JobSpec:
    return types_pb2.JobSpec(
        name="gang",
        runtime=types_pb2.JOB_RUNTIME_PROCESS,
        command=[sys.executable, "-S", str(script), str(results), fail_rank],
        gpus=types_pb2.GpuRequest(count=4),
        nodes=2,
    )


def ranks_of(results: Path) -> dict[str, dict[str, object]]:
    found = {}
    for path in results.glob("rank-*.json"):
        try:
            found[path.stem] = json.loads(path.read_text())
        except ValueError:  # being written
            continue
    return found


async def gang_cluster(lab: Lab, tmp_path: Path) -> tuple[list[NodeProcess], Path, Path]:
    """Three agreed nodes of 4 GPUs each; the rank program; where ranks record."""
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    results = tmp_path / "results"
    results.mkdir()
    nodes = start_cluster(lab, 3, extra_args=FOUR_GPUS, env=SETTINGS)
    await wait_agreed(nodes, lab, voters=3, within=30)
    return nodes, script, results


async def test_a_two_node_gang_meets_at_its_rendezvous_and_is_cancelled_as_one(
    lab: Lab, tmp_path: Path
) -> None:
    nodes, script, results = await gang_cluster(lab, tmp_path)
    async with client_for(nodes[1], lab.admin_identity) as client:
        job_id = (await client.submit_job(gang_job(script, results), timeout=10)).id
        running = await eventually(
            lambda: client.get_job(job_id, timeout=10),
            lambda job: job.state == types_pb2.JOB_STATE_RUNNING,
            within=30,
            what="the gang running",
        )
        ranks = {run.node_rank: run for run in running.runs}
        assert sorted(ranks) == [0, 1]
        assert ranks[0].node != ranks[1].node
        assert ranks[0].id == ranks[1].id  # one run, shared by its ranks
        assert all(len(run.gpu_indices) == 4 for run in ranks.values())
        seen = await eventually(
            lambda: _ranks(results),
            lambda found: len(found) == 2,
            within=30,
            what="both ranks to meet",
        )
        master = next(node for node in nodes if node.name == ranks[0].node)
        master_host = master.address.rpartition(":")[0]
        for rank, env in seen.items():
            index = rank.removeprefix("rank-")
            assert env["met"] is True, env
            assert env["MASTER_ADDR"] == master_host
            assert env["MASTER_PORT"] == seen["rank-0"]["MASTER_PORT"]
            assert env["NNODES"] == "2"
            assert env["LOCAL_WORLD_SIZE"] == "4"
            assert env["WORLD_SIZE"] == "8"
            assert env["MURMUR_RUN_ID"] == ranks[0].id
            assert env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
            # Its scratch dir is <data dir>/work/<run id>, the data dir named after its node.
            assert Path(str(env["cwd"])).parents[1].name == ranks[int(index)].node

        await client.cancel_job(job_id, timeout=10)
        done = await eventually(
            lambda: client.get_job(job_id, timeout=10),
            ended,
            within=30,
            what="the cancelled gang to end",
        )
        assert done.state == types_pb2.JOB_STATE_CANCELLED, done
        stopped = ranks_of(results)
        assert all(env["stopped"] is True for env in stopped.values()), stopped


async def test_a_failing_rank_ends_the_other_and_the_job_as_one(lab: Lab, tmp_path: Path) -> None:
    nodes, script, results = await gang_cluster(lab, tmp_path)
    async with client_for(nodes[2], lab.admin_identity) as client:
        job_id = (await client.submit_job(gang_job(script, results, fail_rank="1"), timeout=10)).id
        done = await eventually(
            lambda: client.get_job(job_id, timeout=10),
            ended,
            within=45,
            what="the gang to fail",
        )
        assert done.state == types_pb2.JOB_STATE_FAILED, done
        assert done.exit_code == 3
        assert "rank 1" in done.reason
        assert "exited with code 3" in done.reason
        history = [event.message for event in done.history]
        assert any("stopping the other ranks" in message for message in history), history
        rank_0 = ranks_of(results)["rank-0"]
        assert rank_0["stopped"] is True, rank_0  # stopped, not left running
        ended_ranks = [run for run in done.runs if run.state == types_pb2.JOB_STATE_FAILED]
        assert sorted(run.node_rank for run in ended_ranks) == [0, 1]


async def _ranks(results: Path) -> dict[str, dict[str, object]]:
    return ranks_of(results)
