"""The leader's hand on the voter set: every ``INTERVAL_SECONDS`` it reads gossip and
its own Raft view, asks the pure policy (:mod:`murmur.node.control.consensus.voter_policy`) for the
next step, and applies it to Raft. Only the leader acts; elsewhere this loop idles.

Gossip discovers the nodes; Raft's log decides who votes. A step Raft refuses (a
change still uncommitted, or a new leader that has not committed in its term yet)
is simply asked for again on the next round.

A node that cannot apply the log (one that stopped at an entry its version does not
know, or of a protocol level below the log's: node/control/queue/protocol.py) counts
as not alive here: it is not made a learner, a learner is dropped, and a voter is
replaced as a dead one would be. A version from before levels would otherwise skip
what it does not know; this one would stop, and hold a seat it cannot lead from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.consensus.voter_policy import (
    AddLearner,
    Liveness,
    PromoteLearner,
    RemoveLearner,
    RemoveVoter,
    VoterPolicyConfig,
    VoterSetView,
    VoterStep,
    next_voter_step,
)
from murmur.node.control.raft import ElectionError
from murmur.node.gossip import MemberState
from murmur.node.membership import MembershipRunner
from murmur.v1 import types_pb2

_log = logging.getLogger("murmur.consensus")

INTERVAL_SECONDS = 0.5
"""How often the leader reconsiders the voter set: well below the stabilization
time, so a dead voter is replaced soon after that time has passed."""

_ALIVE_STATES = frozenset({MemberState.ALIVE, MemberState.SUSPECT})


def member_liveness(
    membership: MembershipRunner,
    may_apply_log: Callable[[types_pb2.NodeInfo | None], bool] = lambda info: True,
) -> Mapping[str, Liveness]:
    """Gossip's members as the policy sees them (``since`` on the monotonic clock); one
    that cannot apply the log (``may_apply_log``) is not alive."""
    return {
        member.name: Liveness(
            alive=member.state in _ALIVE_STATES and may_apply_log(member.info),
            since=member.member.state_changed_at,
        )
        for member in membership.members()
    }


class VoterManager:
    """The leader's voter steps (see the module doc).

    Args:
        may_apply_log: whether a node, by its gossiped NodeInfo, can apply the log
            (node/control/queue/protocol_gate.py); one that cannot is not alive here.
    """

    def __init__(
        self,
        *,
        consensus: ConsensusRunner,
        membership: MembershipRunner,
        config: VoterPolicyConfig,
        may_apply_log: Callable[[types_pb2.NodeInfo | None], bool] = lambda info: True,
    ) -> None:
        self._consensus = consensus
        self._membership = membership
        self._config = config
        self._may_apply_log = may_apply_log

    async def run(self) -> None:
        while True:
            if not self._consensus.is_leader:
                # Only the leader decides. A follower waits for a change of role (or
                # applied entries), not a timer: an idle voter does not wake for this.
                await self._consensus.applied_signal().wait()
                continue
            await asyncio.sleep(INTERVAL_SECONDS)
            if not self._consensus.is_leader:
                continue
            try:
                self.step_once()
            except Exception:
                _log.exception("voter step failed; trying again")

    def step_once(self) -> VoterStep | None:
        """Take one step if the policy wants one; returns it (for tests and logs)."""
        raft = self._consensus.raft
        if raft.node_id not in raft.voters:
            return None  # a leader whose own removal is in the log: it steps down soon
        if self._set_is_full_and_alive():
            return None
        view = VoterSetView(
            leader=raft.node_id,
            voters=raft.voters,
            learners=raft.learners,
            change_pending=raft.voter_change_pending,
            match_index={name: raft.match_index(name) for name in raft.voters | raft.learners},
            commit_index=raft.commit_index,
        )
        step = next_voter_step(
            view,
            member_liveness(self._membership, self._may_apply_log),
            now=time.monotonic(),
            config=self._config,
        )
        if step is None:
            return None
        try:
            match step:
                case AddLearner(name):
                    self._consensus.add_learner(name)
                case PromoteLearner(name):
                    self._consensus.change_voters(raft.voters | {name})
                case RemoveVoter(name):
                    self._consensus.change_voters(raft.voters - {name})
                case RemoveLearner(name):
                    self._consensus.remove_learner(name)
        except ElectionError as exc:
            _log.debug("voter step %s deferred: %s", step, exc)
            return None
        _log.info(
            "voter set step",
            extra={"event": "consensus.voter_step", "step": type(step).__name__, "peer": step.name},
        )
        return step

    def _set_is_full_and_alive(self) -> bool:
        """Whether the policy surely has nothing to do: no change pending, no learner,
        ``max_voters`` voters, every one alive. Then no rule applies (nobody to remove,
        replace or add), so the leader need not read every member's liveness twice a
        second (~0.1% of a core on an idle leader of 32 nodes)."""
        raft = self._consensus.raft
        if raft.voter_change_pending or raft.learners:
            return False
        if len(raft.voters) != self._config.max_voters:
            return False
        for name in raft.voters - {raft.node_id}:
            member = self._membership.member(name)
            if member is None or member.state not in _ALIVE_STATES:
                return False
        return True
