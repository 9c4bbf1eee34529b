"""`ProposalForwarder`: a node that does not lead sends the leader its commands in
batches, one ``NodeService.Propose`` call for every command that arrived while its
previous calls were in flight.

A call costs the leader far more than the command it carries (TLS, HTTP/2 and
grpc's own bookkeeping, a task per call), and under load commands arrive much
faster than calls return. So at most ``max_in_flight`` calls per leader are
open at a time, and whatever arrives meanwhile waits for the next one: an idle
node forwards a lone command at once (nothing is held back on a timer), and a busy
node's batches grow until its calls keep up. The leader answers each command on
its own (a job, or the status it would have ended a single call with), so one
refused command never fails its neighbours.

Each call is a task the forwarder owns: :meth:`ProposalForwarder.close` cancels
and awaits them, and one that raises (a bug; its commands' callers are told to
retry) is logged with its traceback and counted (``calls_failed``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
import grpc.aio

from murmur.node.control.consensus.errors import NotLeaderError
from murmur.node.errors import PeerRefusedError
from murmur.v1 import node_pb2, types_pb2

if TYPE_CHECKING:
    from murmur.v1.node_pb2_grpc import NodeServiceAsyncStub

_log = logging.getLogger("murmur.jobs")

MAX_BATCH = 256
"""Commands per call: bounds the call's size (a submission is at most a few KiB)."""

MAX_IN_FLIGHT = 2
"""Calls open at once per leader: one being answered while the next one fills."""

_RETRY_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def refusal_error(code: grpc.StatusCode, message: str, who: str) -> Exception:
    """A forwarded command's refusal as this node's error: the leader's own refusals
    keep their code; a leader that is gone or stepped down means "try again"
    (:class:`NotLeaderError`, which the caller retries on whoever leads next)."""
    if code in _RETRY_CODES:
        return NotLeaderError(None, f"{who} did not take it: {message}")
    return PeerRefusedError(code, message or code.name)


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def status_code(value: int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` of its wire number (``UNKNOWN`` for one we do not know)."""
    return _CODES.get(value, grpc.StatusCode.UNKNOWN)


@dataclass
class _Lane:
    """The commands waiting for one leader address, and its open calls."""

    waiting: list[tuple[bytes, asyncio.Future[types_pb2.Job]]] = field(default_factory=list)
    in_flight: int = 0
    flush_scheduled: bool = False


class ProposalForwarder:
    """Batches this node's forwarded commands per leader address.

    Args:
        stub_for: the NodeService stub on the shared peer channel to an address.
        timeout: each call's deadline; a leader that does not answer in time is
            treated as gone, and every command of the call is retried by its caller.
    """

    def __init__(
        self,
        stub_for: Callable[[str], NodeServiceAsyncStub],
        *,
        timeout: float,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._stub_for = stub_for
        self._timeout = timeout
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._lanes: dict[str, _Lane] = {}
        self._calls: set[asyncio.Task[None]] = set()
        self._closed = False
        self.calls_made = 0
        """Propose calls sent, for tests and benchmarks: commands / calls is the batch size."""
        self.calls_failed = 0
        """Calls that raised (a bug), each logged with its traceback."""

    async def forward(self, address: str, command: bytes) -> types_pb2.Job:
        """Commit ``command`` through the leader at ``address``.

        Raises:
            NotLeaderError: the leader did not answer, or no longer leads: retry.
            PeerRefusedError: the leader refused the command (its status as is).
        """
        if self._closed:
            raise NotLeaderError(None, "this node is stopping")
        future: asyncio.Future[types_pb2.Job] = asyncio.get_running_loop().create_future()
        lane = self._lanes.setdefault(address, _Lane())
        lane.waiting.append((command, future))
        self._schedule(address, lane)
        return await future

    async def close(self) -> None:
        """Cancel the calls in flight and fail what waits for one: their callers get
        :class:`NotLeaderError`, and nothing is sent any more."""
        self._closed = True
        for lane in self._lanes.values():
            for _, future in lane.waiting:
                if not future.done():
                    future.set_exception(NotLeaderError(None, "this node is stopping"))
            lane.waiting.clear()
        calls = list(self._calls)
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)  # failures: see _finished

    def _schedule(self, address: str, lane: _Lane) -> None:
        # call_soon, not now: every command that arrives in this turn of the loop
        # joins the same call.
        if self._closed:
            return
        if lane.waiting and not lane.flush_scheduled and lane.in_flight < self._max_in_flight:
            lane.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush, address, lane)

    def _flush(self, address: str, lane: _Lane) -> None:
        lane.flush_scheduled = False
        batch = [(data, future) for data, future in lane.waiting if not future.done()]
        lane.waiting = batch[self._max_batch :]
        batch = batch[: self._max_batch]
        if not batch:
            return
        lane.in_flight += 1
        call = asyncio.create_task(self._call(address, batch))
        self._calls.add(call)
        call.add_done_callback(lambda done: self._finished(done, address, lane))

    def _finished(self, call: asyncio.Task[None], address: str, lane: _Lane) -> None:
        self._calls.discard(call)
        if not call.cancelled() and (error := call.exception()) is not None:
            self.calls_failed += 1
            _log.error(
                "forwarding to the leader at %s failed",
                address,
                exc_info=error,
                extra={"event": "jobs.forward_failed", "failures": self.calls_failed},
            )
        lane.in_flight -= 1
        if not lane.waiting and not lane.in_flight:
            self._lanes.pop(address, None)
        self._schedule(address, lane)

    async def _call(
        self, address: str, batch: list[tuple[bytes, asyncio.Future[types_pb2.Job]]]
    ) -> None:
        self.calls_made += 1
        try:
            response = await self._stub_for(address).Propose(
                node_pb2.ProposeRequest(commands=[data for data, _ in batch]),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            error = refusal_error(exc.code(), exc.details() or "", "the leader")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException as exc:  # cancelled, or a bug: no caller waits forever
            for _, future in batch:
                if not future.done():
                    future.set_exception(
                        NotLeaderError(None, f"forwarding to the leader failed: {exc!r}")
                    )
            raise
        if len(response.outcomes) != len(batch):
            _log.error(
                "the leader at %s answered %d outcomes for %d commands",
                address,
                len(response.outcomes),
                len(batch),
                extra={"event": "jobs.bad_propose_answer"},
            )
        for index, (_, future) in enumerate(batch):
            if future.done():
                continue
            if index >= len(response.outcomes):
                future.set_exception(NotLeaderError(None, "the leader left the command unanswered"))
                continue
            outcome = response.outcomes[index]
            if outcome.HasField("job"):
                future.set_result(outcome.job)
            else:
                refusal = outcome.refusal
                future.set_exception(
                    refusal_error(status_code(refusal.code), refusal.message, "the leader")
                )
