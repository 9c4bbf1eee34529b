"""`RunReporter`: tells the leader each change of this node's runs, soon and in order.

The executor calls :meth:`RunReporter.report` after it recorded a transition; the
reporter commits it as a ReportRun command through the leader (or directly, on
the leader). Only a run's latest record waits to be sent, and one send per run is
in flight at a time, so a run's reports arrive in order. A report that finds no
leader waits and is retried; one the control state refuses (a stale run the
cluster already re-placed) is dropped. Lost reports cost only latency: the leader
reconciles with every node's records every few seconds anyway.
"""

from __future__ import annotations

import asyncio
import logging

from murmur.node.agent.run_convert import run_message
from murmur.node.control.queue.cluster_jobs import ClusterJobs
from murmur.node.control.queue.commands import report_of
from murmur.node.errors import NodeError, UnavailableError
from murmur.storage import RunRecord

_log = logging.getLogger("murmur.jobs")

RETRY_SECONDS = 0.5


class RunReporter:
    def __init__(self, jobs: ClusterJobs) -> None:
        self._jobs = jobs
        self._latest: dict[str, RunRecord] = {}
        self._in_flight: set[str] = set()
        self._wake = asyncio.Event()

    def report(self, run: RunRecord) -> None:
        """The executor recorded a transition of ``run`` (never blocks)."""
        self._latest[run.id] = run
        self._wake.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            while True:
                await self._wake.wait()
                self._wake.clear()
                for run_id in [r for r in self._latest if r not in self._in_flight]:
                    self._in_flight.add(run_id)
                    tasks.create_task(self._send(run_id))

    async def _send(self, run_id: str) -> None:
        try:
            while (run := self._latest.get(run_id)) is not None:
                try:
                    await self._jobs.propose(report_of(run.job_id, run.node, run_message(run)))
                except UnavailableError as exc:
                    _log.info("report of run %s waits for a leader: %s", run_id, exc)
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                except NodeError as exc:
                    _log.info("report of run %s not taken: %s", run_id, exc)
                except Exception:
                    _log.exception("report of run %s failed; trying again", run_id)
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                if self._latest.get(run_id) is run:
                    del self._latest[run_id]
        finally:
            self._in_flight.discard(run_id)
            if run_id in self._latest:
                self._wake.set()
