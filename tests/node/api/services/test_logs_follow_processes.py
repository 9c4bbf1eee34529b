"""``job logs -f`` right after ``job submit``: the stream waits for the run to start
on its node and brings every line, rather than ending at once, empty.

Bug fixed: the leader had placed the run on node-2 but node-2 had not started it
yet; node-2 followed a run it did not hold (not active), took it for ended, and
closed the stream with no line.
"""

from __future__ import annotations

from murmur.v1 import types_pb2
from tests.node.control.consensus.test_consensus_processes import wait_agreed
from tests.support.cluster import client_for, host_of, provision_node
from tests.support.nodes import Lab

LINES = 30


async def test_following_a_just_submitted_job_brings_all_its_output(lab: Lab) -> None:
    first = lab.start_node("node-1", data_dir=lab.first_data_dir, host=host_of(1))
    # node-1 is drained: the job runs on node-2, the node the client reaches.
    second = lab.start_node(
        "node-2",
        data_dir=provision_node(lab, "node-2", host_of(2)),
        host=host_of(2),
        extra_args=["--seed", first.address],
    )
    await wait_agreed([first, second], lab, voters=1)
    assert lab.murmur("node", "drain", "node-1", "--node", first.address).returncode == 0
    script = f"i=0; while [ $i -lt {LINES} ]; do echo line $i; i=$((i+1)); sleep 0.02; done"
    async with client_for(second, lab.admin_identity) as client:
        job = await client.submit_job(
            types_pb2.JobSpec(
                name="lines",
                command=["sh", "-c", script],
                runtime=types_pb2.JOB_RUNTIME_PROCESS,
            ),
            timeout=10,
        )
        lines = [
            line.text
            async for line in client.stream_logs(job.id, follow=True, timeout=60)
            if line.stream == types_pb2.LOG_STREAM_STDOUT
        ]
        ended = await client.get_job(job.id, timeout=10)

    assert ended.runs[-1].node == "node-2"
    assert lines == [f"line {i}" for i in range(LINES)]
