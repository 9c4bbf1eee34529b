"""Lease renewals (node/control/leader/renewals.py): nodes holding runs are asked
every round, idle ones less often, and each node's reconciliation is a task of the
term that ends with it."""

from __future__ import annotations

import asyncio

from murmur.node.control.queue import ControlState
from tests.node.control.leader.fakes import TERM, leader_over, placed
from tests.node.control.queue.builders import Log


async def test_nodes_without_runs_are_reconciled_less_often() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1", node="n1")
    # A lease of 0.3 s: the runs' nodes are asked every 0.1 s.
    leader = leader_over(log, lease_seconds=0.3)
    async with leader.term() as term:
        async with term.alongside(leader.wire(term).renewals.run()):
            await asyncio.sleep(1.05)
        assert term.running == 0  # every reconciliation ended with the loop's round
    asked = [address for kind, address in leader.peers.calls if kind == "ListRuns"]
    assert asked.count("n1:1") >= 5  # it holds a run: its lease is renewed
    assert asked.count("n2:1") == 1  # none there: IDLE_RECONCILE_SECONDS apart


async def test_the_rounds_end_when_the_term_is_lost() -> None:
    log = Log(ControlState(), term=TERM)
    leader = leader_over(log, lease_seconds=0.3)
    async with leader.term() as term:
        renewals = asyncio.create_task(leader.wire(term).renewals.run())
        await asyncio.sleep(0.15)
        leader.consensus.depose()
        await asyncio.wait_for(renewals, 1.0)
