"""Which lost runs were lost for their node's sake: the words the node's parts write,
read by the control state to requeue a job without spending a retry."""

from __future__ import annotations

import pytest

from murmur.node.agent.runtimes.lease_file import RunLeaseFile
from murmur.node.agent.runtimes.lease_guard import lease_reason
from murmur.node.agent.runtimes.process import LOST_REASON
from murmur.node.jobspec import states


def test_the_lease_guards_words_are_a_loss_with_the_node() -> None:
    lease = RunLeaseFile(expires_at=0.0, lease_seconds=30.0, grace_seconds=10.0)
    assert states.lost_with_its_node(lease_reason(lease))


@pytest.mark.parametrize(
    "reason",
    [
        f"{states.LEASE_LAPSED_REASON} for 30 s (lease expired)",
        f"{states.NODE_RESTARTED_REASON} and the run was not found",
    ],
)
def test_the_executors_words_are_a_loss_with_the_node(reason: str) -> None:
    assert states.lost_with_its_node(reason)


@pytest.mark.parametrize(
    "reason",
    [
        LOST_REASON,  # a supervisor that died unrecorded: not surely the node's doing
        "lost: runtime error: boom",
        "lost: container removed outside murmur",
        "lost: did not start on n1 within 600 s",
        "exited with code 137",
        "",
    ],
)
def test_other_losses_are_not(reason: str) -> None:
    assert not states.lost_with_its_node(reason)
