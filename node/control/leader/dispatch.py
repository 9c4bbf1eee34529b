"""`RunDispatch`: hands each committed assignment to its node (``NodeService.StartRun``).

The call carries the assignment's (term, sequence), under which the node fences
the run, and this leader's term; a node starts a run id at most once, so sending
one again is harmless. Each send is a task of the term
(node/control/leader/term.py): it ends with the term, and its failure is logged.

When a node does not take a run:

- nothing listened (the connection was refused) and this was the run's one and
  only call: the node never got it, so no copy can run there. The assignment is
  taken back (``RevokeAssignment``) and the job placed again at once without
  spending an attempt, instead of waiting out a lease;
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

from murmur.node.control.leader.node_calls import NodeCalls
from murmur.node.control.leader.start_ledger import StartLedger
from murmur.node.control.leader.term import LeaderTerm, now_us
from murmur.node.control.queue.commands import ReportRun, RevokeAssignment
from murmur.node.control.queue.records import ClusterJob
from murmur.node.jobspec import states
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

    def send(self, job: ClusterJob) -> None:
        """Start :meth:`start` as a task of the term (never waits)."""
        run_id = job.assignment.run_id if job.assignment is not None else "none"
        self._term.start(self.start(job), what=f"start of run {run_id} of job {job.id}")

    async def start(self, job: ClusterJob) -> None:
        """Send the job's run to its node, unless it was given up or its node is down
        (reconciliation sends it again; node loss gives it up).

        Raises:
            NotLeaderError, ProposalTimeoutError: what the node's refusal made
                this leader commit was not committed.
        """
        assignment = job.assignment
        if assignment is None or self._ledger.given_up(assignment.run_id):
            return
        address = self._calls.address_of(assignment.node)
        if address is None:
            return
        attempts = self._ledger.note_sent(assignment.run_id)
        request = node_pb2.StartRunRequest(
            job_id=job.id,
            run_id=assignment.run_id,
            attempt=assignment.attempt,
            spec=job.spec,
            gpu_indices=list(assignment.gpu_indices),
            term=assignment.term,
            sequence=assignment.sequence,
            user=job.user,
            lease_seconds=self._lease_seconds,
            sender_term=self._term.number,
        )
        try:
            await self._calls.start_run(assignment.node, address, request)
        except grpc.aio.AioRpcError as exc:
            await self._not_taken(job, attempts, exc)

    async def _not_taken(self, job: ClusterJob, attempts: int, exc: grpc.aio.AioRpcError) -> None:
        assignment = job.assignment
        assert assignment is not None
        term = self._term
        refused = classify_error(exc) is SendOutcome.REFUSED
        sole_attempt = attempts == 1 and self._ledger.attempts(assignment.run_id) == 1
        if refused and sole_attempt and assignment.term == term.number and term.leads():
            # Nothing listened on the node: it never got the run, so no copy can
            # run there. Take the assignment back; the job is placed again at once
            # without spending an attempt, instead of waiting out a lease.
            self._ledger.give_up(assignment.run_id)
            await term.commit(
                RevokeAssignment(
                    job_id=job.id, run_id=assignment.run_id,
                    reason=f"{assignment.node} refused the connection", at_us=now_us(),
                )
            )  # fmt: skip
            return
        if exc.code() is grpc.StatusCode.FAILED_PRECONDITION and term.leads():
            # The node will not run it (a newer term, a GPU it says is busy): the
            # run is lost and the job goes back to the queue, retries permitting.
            await term.commit(
                ReportRun(
                    job_id=job.id, run_id=assignment.run_id, node=assignment.node,
                    state=states.LOST, exit_code=None,
                    reason=f"could not start on {assignment.node}: {exc.details()}",
                    at_us=now_us(),
                )
            )  # fmt: skip
