"""kill -9 of a node in the middle of writes loses no acknowledged record.

A client creates join tokens as fast as it can (each one is a store write plus
an audit write, acknowledged only after both commit); the node is killed with
SIGKILL at a random moment; after a restart every acknowledged token is in the
audit log and still usable.
"""

from __future__ import annotations

import asyncio
import random

import murmur
from murmur import AsyncClient, resolve_connect_config
from tests.support.nodes import Lab, NodeProcess

ROUNDS = 3


async def hammer_until_killed(lab: Lab, node: NodeProcess, kill_after: float) -> list[str]:
    """Creates tokens on ``node`` until it dies; SIGKILLs it ``kill_after`` seconds in.
    Returns once the process is gone, with the tokens it acknowledged."""
    acknowledged: list[str] = []
    config = resolve_connect_config(node=node.address, identity=lab.admin_identity)
    loop = asyncio.get_running_loop()
    timer = loop.call_later(kill_after, node.process.kill)
    try:
        async with AsyncClient(config) as client:
            while True:
                try:
                    response = await client.create_join_token(timeout=2)
                except murmur.MurmurError:
                    break
                acknowledged.append(response.token)
    finally:
        # A write that timed out before the timer fired (a slow machine) ends the
        # loop early; the node may still be busy with it: kill it now instead.
        timer.cancel()
        if node.process.poll() is None:
            node.process.kill()
        await asyncio.to_thread(node.process.wait, 10)
    return acknowledged


async def test_kill_9_during_writes_loses_no_acknowledged_record(lab: Lab) -> None:
    rng = random.Random(20261123)
    node = lab.start_node("node-1", data_dir=lab.first_data_dir)
    for round_number in range(ROUNDS):
        acknowledged = await hammer_until_killed(lab, node, rng.uniform(0.3, 1.0))
        assert node.process.returncode == -9
        assert acknowledged, "the node was killed before any write was acknowledged"
        node = lab.restart(node)
        config = resolve_connect_config(node=node.address, identity=lab.admin_identity)
        async with AsyncClient(config) as client:
            records = await client.list_audit(limit=1000)
        audited = {r.target for r in records if r.action == "CreateJoinToken" and r.result == "OK"}
        token_ids = [murmur_token_id(token) for token in acknowledged]
        missing = [t for t in token_ids if t not in audited]
        assert not missing, f"round {round_number}: acknowledged but lost: {missing}"
    # The last acknowledged token of the last round still admits a node.
    lab.start_node("node-2", extra_args=["--join", node.address, "--token", acknowledged[-1]])


def murmur_token_id(token: str) -> str:
    from murmur.certs import JoinToken

    return JoinToken.decode(token).token_id
