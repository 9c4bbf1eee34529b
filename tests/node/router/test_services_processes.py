"""Services end to end on a real 3-node cluster, every node with its router: a
2-replica service of a small OpenAI-compatible server (tests/support/openai_server.py)
gets no traffic while its model loads, becomes ready, is listed by every node's
/v1/models and answers chat completions, streamed and not, through every router; an
adapter is addressed as model:adapter; a replica that crashes restarts and is ready
again; the replicas run on different nodes; an update with a changed command replaces
them one at a time, a replica ready and every request answered throughout; scaling
down and deleting stop replicas, and their models leave the routers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

import aiohttp

import murmur
from murmur.v1 import apikeys_pb2, types_pb2
from tests.node.control.consensus.test_consensus_processes import FAST_VOTERS, wait_agreed
from tests.support import openai_server
from tests.support.cluster import client_for, eventually, host_of, start_cluster
from tests.support.nodes import Lab, free_port

SETTINGS = {
    **FAST_VOTERS,
    "MURMUR_NODE_STOP_GRACE_SECONDS": "1",
    "MURMUR_NODE_RETRY_BACKOFF_SECONDS": "0.5",
    "MURMUR_NODE_ROUTER_USAGE_FLUSH_SECONDS": "0.5",
}
MODEL = "toy-llm"


def service_spec(record: Path, gate: Path, replicas: int = 2) -> types_pb2.ServiceSpec:
    command = [
        sys.executable, "-S", openai_server.__file__, "--model", MODEL, "--adapter", "sql",
        "--ready-when", str(gate), "--record", str(record),
    ]  # fmt: skip
    spec = types_pb2.ServiceSpec(
        name="toy",
        template=types_pb2.JobSpec(runtime=types_pb2.JOB_RUNTIME_PROCESS, command=command),
        replicas=replicas,
        model=MODEL,
        aliases=["toy"],
        adapters={"sql": "/adapters/sql"},
    )
    spec.readiness.period.FromMilliseconds(300)
    return spec


async def ready_count(client: murmur.AsyncClient) -> types_pb2.Service:
    return await client.get_service("toy", timeout=10)


async def chat(
    session: aiohttp.ClientSession, router: str, model: str, *, stream: bool = False
) -> tuple[int, str]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    async with session.post(f"http://{router}/v1/chat/completions", json=body) as answer:
        return answer.status, await answer.text()


async def models_at(session: aiohttp.ClientSession, router: str) -> list[str]:
    async with session.get(f"http://{router}/v1/models") as answer:
        return [entry["id"] for entry in (await answer.json())["data"]]


async def test_a_service_is_served_through_every_nodes_router(lab: Lab, tmp_path: Path) -> None:
    routers = {index: f"{host_of(index)}:{free_port(host_of(index))}" for index in (1, 2, 3)}
    nodes = start_cluster(
        lab, 3, env=SETTINGS, env_of=lambda index: {"MURMUR_NODE_ROUTER_LISTEN": routers[index]}
    )
    await wait_agreed(nodes, lab, voters=3, within=30)
    record = tmp_path / "requests.jsonl"
    record.touch(mode=0o666)
    async with client_for(nodes[0], lab.admin_identity) as client, aiohttp.ClientSession() as http:
        gate = tmp_path / "loaded"
        created = await client.create_service(service_spec(record, gate), timeout=10)
        assert [replica.slot for replica in created.replicas] == [0, 1]
        # Running but loading (their /v1/models answers 503 until the gate opens):
        # listed nowhere, no traffic.
        await eventually(
            lambda: chat(http, routers[2], MODEL),
            lambda answer: answer[0] == 503 and "no_ready_replica" in answer[1],
            within=30,
            what="the replicas known, not ready",
        )
        assert MODEL not in await models_at(http, routers[2])
        assert not record.read_text()
        gate.touch()
        service = await eventually(
            lambda: ready_count(client),
            lambda service: service.ready == 2,
            within=40,
            what="both replicas ready",
        )
        for router in routers.values():
            names = await eventually(
                lambda router=router: models_at(http, router),  # type: ignore[misc]
                lambda names: MODEL in names,
                within=10,
                what=f"{MODEL} listed at {router}",
            )
            assert {MODEL, "toy", f"{MODEL}:sql"} <= set(names)
            status, text = await chat(http, router, MODEL)
            assert status == 200, text
            assert json.loads(text)["choices"][0]["message"]["content"].startswith("hello from")
            status, text = await chat(http, router, f"{MODEL}:sql", stream=True)
            assert status == 200, text
            events = [line for line in text.splitlines() if line.startswith("data: ")]
            assert events[-1] == "data: [DONE]"
            assert len(events) == 5
        answered = [json.loads(line) for line in record.read_text().splitlines()]
        assert len(answered) == 6
        assert {entry["replica"] for entry in answered} == {r.job_id for r in service.replicas}
        assert f"{MODEL}:sql" in {entry["model"] for entry in answered}

        await keys_are_checked_and_usage_adds_up(client, http, list(routers.values()))

        status, text = await chat(http, routers[1], "no-such-model")
        assert status == 404, text
        async with http.post(
            f"http://{routers[1]}/v1/chat/completions", data=b"{not json"
        ) as answer:
            assert answer.status == 400

        # A replica that dies runs again, and is ready again.
        crashed = service.replicas[0]
        crashed_host = host_of(int(crashed.node.rsplit("-", 1)[1]))
        with contextlib.suppress(aiohttp.ClientError):
            async with http.post(f"http://{crashed_host}:{crashed.port}/crash"):
                pass
        restarted = await eventually(
            lambda: client.get_job(crashed.job_id, timeout=10),
            lambda job: (
                any(run.state == types_pb2.JOB_STATE_FAILED for run in job.runs)
                and job.state == types_pb2.JOB_STATE_RUNNING
            ),
            within=30,
            what="the crashed replica running again",
        )
        assert restarted.attempts >= 2
        await eventually(
            lambda: ready_count(client),
            lambda service: service.ready == 2,
            within=30,
            what="both replicas ready again",
        )

        # Spread: one node's loss takes one replica, not both.
        service = await ready_count(client)
        assert len({replica.node for replica in service.replicas}) == 2

        await rolling_update(client, http, routers[3], record, gate)

        await client.scale_service("toy", 1, timeout=10)
        await eventually(
            lambda: ready_count(client),
            lambda service: len(service.replicas) == 1 and service.ready == 1,
            within=40,
            what="one replica, ready",
        )
        deleted = await client.delete_service("toy", timeout=10)
        assert deleted.spec.name == "toy"
        await eventually(
            lambda: models_at(http, routers[3]),
            lambda names: MODEL not in names,
            within=20,
            what=f"{MODEL} gone from the routers",
        )
        gone = await client.list_services(timeout=10)
        assert gone == []


async def rolling_update(
    client: murmur.AsyncClient,
    http: aiohttp.ClientSession,
    router: str,
    record: Path,
    gate: Path,
) -> None:
    """An update with a changed command (its replicas now take a second to load):
    while the replicas are replaced, at least one is ready at every look and every
    request through the router is answered."""
    old = {replica.job_id for replica in (await ready_count(client)).replicas}
    new_spec = service_spec(record, gate)
    new_spec.template.command.extend(["--start-delay", "1"])
    new_spec.replicas = 0  # keeps the count
    updated = await client.update_service(new_spec, timeout=10)
    assert updated.revision == 2
    fewest_ready, statuses = 2, []
    async with asyncio.timeout(60):
        while True:
            service = await ready_count(client)
            fewest_ready = min(fewest_ready, service.ready)
            statuses.append((await chat(http, router, MODEL))[0])
            done = [r for r in service.replicas if r.revision == 2 and r.ready]
            if len(done) == 2 and service.ready == 2:
                break
            await asyncio.sleep(0.1)
    assert fewest_ready >= 1
    assert set(statuses) == {200}, statuses
    assert not old & {replica.job_id for replica in service.replicas}
    assert all("--start-delay" in job.spec.command for job in [
        await client.get_job(replica.job_id, timeout=10) for replica in service.replicas
    ])  # fmt: skip


async def keys_are_checked_and_usage_adds_up(
    client: murmur.AsyncClient, http: aiohttp.ClientSession, routers: list[str]
) -> None:
    """API keys on every node's router: a wrong key is 401, a key without the model
    403 (and /v1/models lists nothing for it), a revoked key 401; what each router
    counted reaches the control log, and the usage of the key adds up exactly to the
    answers the test got, streamed (the usage in the last chunk, or in a chunk of its
    own) or not."""

    async def keyed(router: str, key: str, model: str = MODEL, **extra: object) -> tuple[int, str]:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
        headers = {"Authorization": f"Bearer {key}"}
        async with http.post(
            f"http://{router}/v1/chat/completions", json=body, headers=headers
        ) as answer:
            return answer.status, await answer.text()

    wide = (await client.create_api_key("eval", models=[MODEL], timeout=10)).key
    narrow = (await client.create_api_key("narrow", models=["elsewhere"], timeout=10)).key
    sent = 0
    for router in routers:  # every node knows the keys (a voter: within a heartbeat)
        await eventually(
            lambda router=router: keyed(router, wide),  # type: ignore[misc]
            lambda answer: answer[0] == 200,
            within=10,
            what=f"the key taken at {router}",
        )
        sent += 1
        for extra in (
            {"stream": True},
            {"stream": True, "stream_options": {"include_usage": True}},
        ):
            status, text = await keyed(router, wide, f"{MODEL}:sql", **extra)
            assert status == 200, text
            assert text.rstrip().endswith("data: [DONE]")
            sent += 1
        status, text = await keyed(router, narrow)
        assert status == 403, text
        assert json.loads(text)["error"]["code"] == "model_not_allowed"
        async with http.get(
            f"http://{router}/v1/models", headers={"Authorization": f"Bearer {narrow}"}
        ) as answer:
            assert (await answer.json())["data"] == []
        status, text = await keyed(router, "mur_000000000000_" + "x" * 43)
        assert status == 401, text
        assert json.loads(text)["error"]["code"] == "invalid_api_key"

    def eval_key(keys: list[apikeys_pb2.ApiKey]) -> apikeys_pb2.ApiKey:
        return next(key for key in keys if key.name == "eval")

    keys = await eventually(
        lambda: client.list_api_keys(timeout=10),
        lambda keys: eval_key(keys).usage.requests >= sent,
        within=20,
        what="the routers' usage flushed",
    )
    usage = eval_key(keys).usage
    # The toy replica counts 5 prompt tokens and one completion token per event (4).
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (
        sent, 5 * sent, 4 * sent,
    )  # fmt: skip
    assert next(key for key in keys if key.name == "narrow").usage.requests == 0

    await client.revoke_api_key(name="eval", timeout=10)
    for router in routers:
        status, text = await eventually(
            lambda router=router: keyed(router, wide),  # type: ignore[misc]
            lambda answer: answer[0] == 401,
            within=10,
            what=f"the key refused at {router}",
        )
        assert json.loads(text)["error"]["code"] == "revoked_api_key"
