"""The chaos harness: a real five-node cluster, a stream of submissions, kill -9s
(the leader's included), restarts and network partitions; afterwards a checker
reads the whole history and counts what the invariants forbid.

Rooms:

- :mod:`tests.chaos.job_program`: the job every submission runs; it writes its own
  execution record (start, heartbeats, end) to a per-job file.
- :mod:`tests.chaos.history`: what happened, as plain records (submissions, faults,
  executions), and the parser of the execution files.
- :mod:`tests.chaos.checker`: pure verdicts over a history (lost acknowledged jobs,
  a job running twice at once, a GPU given to two runs at once, orphans).
- :mod:`tests.chaos.processes`: live processes that belong to the harness (``/proc``).
- :mod:`tests.chaos.schedule`: the seeded fault schedule.
- :mod:`tests.chaos.network`: namespaced hosts that can be split minority/majority.
- :mod:`tests.chaos.cluster`: the cluster driver (start, kill, restart, partition, leader).
- :mod:`tests.chaos.load`: the submitter (idempotency keys, retries, unknown outcomes).
- :mod:`tests.chaos.harness`: one session: cluster up, load + faults, settle, check.
- :mod:`tests.chaos.run`: the command line, ``python -m tests.chaos.run``.
"""
