"""The daemon's periodic stats record carries the failure counters as flat scalars
(the JSON log would write a nested dict as its Python repr)."""

from __future__ import annotations

from murmur.node.control.consensus.runner import ConsensusStats
from murmur.node.control.consensus.streams import RaftSendStats
from murmur.node.control.leader.stats import LeaderStats
from murmur.node.control.queue.cluster_jobs import ClusterJobsStats
from murmur.node.daemon import counters_of


def test_counters_are_flattened_with_their_group_names() -> None:
    consensus = ConsensusStats(
        apply_failures=1, on_applied_failures=0, sends=RaftSendStats(messages_dropped=3)
    )

    found = counters_of(
        leader=LeaderStats(tasks_failed=2), consensus=consensus, cluster_jobs=ClusterJobsStats()
    )

    assert found["leader_tasks_failed"] == 2
    assert found["consensus_apply_failures"] == 1
    assert found["consensus_sends_messages_dropped"] == 3
    assert found["cluster_jobs_apply_failures"] == 0
    assert all(isinstance(value, int) for value in found.values())
