"""`RunDispatch`: hands each committed assignment to its node (``NodeService.StartRun``);
each rank of a gang to its own node, with where the gang meets (rank 0's host and the
assignment's rendezvous port).

The call carries the assignment's (term, sequence), under which the node fences
the run, and this leader's term; a node starts a run id at most once, so sending
one again is harmless. Each send is a task of the term
(node/control/leader/term.py): it ends with the term, and its failure is logged.

When a node does not take a run:

- nothing listened (the connection was refused) and this was the run's one and
  only call: the node never got it, so no copy can run there. The assignment is
  taken back (``RevokeAssignment``) and the job placed again at once without
  spending an attempt, instead of waiting out a lease. A gang's rank ends lost as
  never having reached its node instead (its other ranks may have theirs): they
  are stopped, and the job is requeued as freely once they have;
- the node refused it (``FAILED_PRECONDITION``: a newer term, a GPU it says is
  busy): the run is lost, and its job goes back to the queue, retries permitting.
  It spends a retry, unlike a run lost with its node (node/control/queue/state.py):
  the node is alive and said no, and would likely be chosen again, so the retries
  bound how often a job is offered to a node that keeps refusing it;
- anything else (a deadline, a reset): the call may have arrived. Reconciliation
  sees whether the node has the run, and sends it again if not.
"""

from __future__ import annotations

import grpc
import grpc.aio

from murmur.node.config import host_of
from murmur.node.control.leader.node_calls import NodeCalls
from murmur.node.control.leader.start_ledger import StartLedger, rank_key
from murmur.node.control.leader.term import LeaderTerm, now_us
from murmur.node.control.queue.commands import ReportRun, RevokeAssignment
from murmur.node.control.queue.records import Assignment, ClusterJob
from murmur.node.jobspec import states
from murmur.node.jobspec.arrays import spec_to_run
from murmur.node.membership.transport import SendOutcome, classify_error
from murmur.v1 import node_pb2


class RunDispatch:
    """Sends this term's assignments to their nodes.

    Args:
        term: the term the calls carry and the sends belong to.
        calls: this term's calls to nodes.
        ledger: what this term did to start each run.
        lease_seconds: the lease a started run is given.
    """

    def __init__(
        self, term: LeaderTerm, *, calls: NodeCalls, ledger: StartLedger, lease_seconds: float
    ) -> None:
        self._term = term
        self._calls = calls
        self._ledger = ledger
        self._lease_seconds = lease_seconds

    def send(self, job: ClusterJob, *, node: str | None = None) -> None:
        """Start :meth:`start` of each live rank of the job's run (only the one on
        ``node``, if given) as a task of the term (never waits)."""
        for rank in job.live_runs:
            if node is None or rank.node == node:
                self._term.start(
                    self.start(job, rank), what=f"start of run {rank.run_id} of job {job.id}"
                )

    async def start(self, job: ClusterJob, rank: Assignment) -> None:
        """Send one rank of the job's run to its node, unless it was given up or its
        node is down (reconciliation sends it again; node loss gives it up).

        Raises:
            NotLeaderError, ProposalTimeoutError: what the node's refusal made
                this leader commit was not committed.
        """
        if self._ledger.given_up(rank_key(rank)):
            return
        address = self._calls.address_of(rank.node)
        if address is None:
            return
        gang = None
        if job.is_gang:
            master = self._calls.address_of(job.runs[0].node)
            if master is None:
                return  # rank 0's node is down: this run is being lost with it
            gang = node_pb2.GangRank(
                node_rank=rank.rank, master_addr=host_of(master), master_port=rank.master_port
            )
        attempts = self._ledger.note_sent(rank_key(rank))
        request = node_pb2.StartRunRequest(
            job_id=job.id,
            run_id=rank.run_id,
            attempt=rank.attempt,
            spec=spec_to_run(job.id, job.spec),  # an array's task: its index, its values
            gpu_indices=list(rank.gpu_indices),
            term=rank.term,
            sequence=rank.sequence,
            user=job.user,
            lease_seconds=self._lease_seconds,
            sender_term=self._term.number,
            gang=gang,
        )
        try:
            await self._calls.start_run(rank.node, address, request)
        except grpc.aio.AioRpcError as exc:
            await self._not_taken(job, rank, attempts, exc)

    async def _not_taken(
        self, job: ClusterJob, rank: Assignment, attempts: int, exc: grpc.aio.AioRpcError
    ) -> None:
        term = self._term
        key = rank_key(rank)
        refused = classify_error(exc) is SendOutcome.REFUSED
        sole_attempt = attempts == 1 and self._ledger.attempts(key) == 1
        if refused and sole_attempt and rank.term == term.number and term.leads():
            # Nothing listened on the node: it never got the run, so no copy can
            # run there. Take the assignment back; the job is placed again at once
            # without spending an attempt, instead of waiting out a lease. A gang's
            # other ranks may have theirs: this rank ends lost as never having
            # reached its node, which stops the others and requeues the job as
            # freely once they have stopped.
            self._ledger.give_up(key)
            why = f"{rank.node} refused the connection"
            command: RevokeAssignment | ReportRun = (
                ReportRun(
                    job_id=job.id, run_id=rank.run_id, node=rank.node, state=states.LOST,
                    exit_code=None, reason=f"{states.NOT_REACHED_REASON}: {why}", at_us=now_us(),
                )
                if job.is_gang
                else RevokeAssignment(job_id=job.id, run_id=rank.run_id, reason=why, at_us=now_us())
            )  # fmt: skip
            await term.commit(command)
            return
        if exc.code() is grpc.StatusCode.FAILED_PRECONDITION and term.leads():
            # The node will not run it (a newer term, a GPU it says is busy): the
            # run is lost and the job goes back to the queue, retries permitting.
            await term.commit(
                ReportRun(
                    job_id=job.id, run_id=rank.run_id, node=rank.node,
                    state=states.LOST, exit_code=None,
                    reason=f"could not start on {rank.node}: {exc.details()}",
                    at_us=now_us(),
                )
            )  # fmt: skip
