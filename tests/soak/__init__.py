"""The soak test: a real 3-5 node cluster under a mixed workload and faults for a set
time (minutes to hours), checked continuously, not only at the end.

Rooms:

- :mod:`tests.soak.pacing`: how a soak of a given length is paced (job lengths,
  bursts, fault gaps, warm-up, bounds), and the node settings it runs with.
- :mod:`tests.soak.workload`: what is submitted (the job mix, each job recording its
  own executions through :mod:`tests.chaos.job_program`), the bursts from client
  processes, and the cancels.
- :mod:`tests.soak.faults`: the seeded fault schedule and its driver (kill -9 and
  restart, SIGSTOP/SIGCONT stalls, partitions), and when each node was down.
- :mod:`tests.soak.checks`: pure verdicts: stuck jobs, dishonest status, double runs,
  growth of a daemon's RSS, open files, threads and asyncio tasks.
- :mod:`tests.soak.monitors`: what samples the cluster (status poller, job watchdog,
  daemon resources, node logs) and feeds the verdicts.
- :mod:`tests.soak.session`: one soak: cluster up, load + faults + monitors, settle,
  final check, report.
- :mod:`tests.soak.run`: the command line, ``python -m tests.soak.run`` (``make soak``).
"""
