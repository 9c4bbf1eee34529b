"""A real ``kill -STOP``: separate ``murmur node start`` processes on 127.0.0.x over
mTLS, with production gossip timings.

A stopped process refuses nothing: its kernel still accepts connections, nobody
reads them. Only the suspicion (confirmed by other nodes' own probes) can declare
it dead; once continued, it reads what waited for it, refutes, and is alive again
everywhere at a higher incarnation. Its timings are measured by
``tests/bench/bench_silent_failures.py``, not asserted here.
"""

from __future__ import annotations

import signal

from tests.support.cluster import node_states, start_cluster, wait_converged
from tests.support.nodes import Lab


async def test_a_stopped_node_is_seen_dead_by_all_and_alive_again_once_continued(
    lab: Lab,
) -> None:
    nodes = start_cluster(lab, 5)
    names = [node.name for node in nodes]
    everyone_alive = dict.fromkeys(names, "alive")
    await wait_converged(nodes, lab.admin_identity, everyone_alive)
    victim = nodes[3]
    survivors = [node for node in nodes if node is not victim]
    before = (await node_states(nodes[0], lab.admin_identity))[victim.name].incarnation

    victim.process.send_signal(signal.SIGSTOP)
    try:
        await wait_converged(survivors, lab.admin_identity, {victim.name: "dead"})
    finally:
        victim.process.send_signal(signal.SIGCONT)

    await wait_converged(nodes, lab.admin_identity, everyone_alive)
    for node in nodes:
        seen = (await node_states(node, lab.admin_identity))[victim.name]
        assert seen.incarnation > before, f"{node.name} sees incarnation {seen.incarnation}"
