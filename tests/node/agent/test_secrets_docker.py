"""A job's secrets reach its container's environment, after its env, under Murmur's
own variables (the docker runtime builds the container's env from the run's
``LaunchSpec.env``, into which the secrets were merged)."""

from __future__ import annotations

from murmur import AsyncClient, resolve_connect_config
from murmur.v1 import types_pb2
from tests.node.agent.test_jobs_process import ENDED, log_text, wait_for
from tests.support.docker_engine import DockerEngine
from tests.support.nodes import Lab


async def test_a_container_gets_the_jobs_secrets(lab: Lab, docker_engine: DockerEngine) -> None:
    node = lab.start_node(
        "node-1",
        data_dir=lab.first_data_dir,
        env={"DOCKER_HOST": docker_engine.host, "MURMUR_NODE_JOB_NETWORK_MODE": "none"},
    )
    config = resolve_connect_config(node=node.address, identity=lab.admin_identity)
    async with AsyncClient(config) as client:
        job = await client.submit_job(
            types_pb2.JobSpec(
                image=docker_engine.image,
                command=["sh", "-c", 'echo "env=$SEED secret=$API_KEY job=$MURMUR_JOB_ID"'],
                env={"SEED": "7"},
                secrets={"API_KEY": "container-secret-31"},
            )
        )
        assert list(job.spec.secret_names) == ["API_KEY"]
        done = await wait_for(client, job.id, ENDED)
        assert done.state == types_pb2.JOB_STATE_SUCCEEDED, done.reason
        lines = await log_text(client, job.id)
    assert f"env=7 secret=container-secret-31 job={job.id}" in lines
