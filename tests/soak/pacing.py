"""How a soak of a given length is paced, the bounds its checks hold the cluster to,
and the node settings it runs with.

A short soak (the ``make test`` one, about a minute of load) packs every kind of
job, cancel and fault into its minute; a long one spreads them out and lets long
jobs run up to two minutes. Bounds are generous where timing is not the point (a
loaded 2-core machine stretches everything), but each is finite: a job stuck for
good, or a daemon that leaks, fails the soak.
"""

from __future__ import annotations

from dataclasses import dataclass

SHORT_LOAD_SECONDS = 120.0
"""Loads up to this long are paced as short soaks."""


@dataclass(frozen=True)
class Pacing:
    load_seconds: float
    """How long jobs are submitted and faults injected; then the cluster settles."""
    warmup_seconds: float
    """Daemon resources sampled before this (from the start of the load) are not judged."""
    retention_seconds: float
    """The nodes' job retention: ended jobs leave the replicated state after this, so
    the state (and the daemons' memory) stays bounded however long the soak."""
    long_job_seconds: tuple[float, float]
    gpu_job_seconds: tuple[float, float]
    burst_gap_seconds: tuple[float, float]
    """Pause between the end of one burst and the start of the next."""
    per_client: tuple[int, int]
    """Jobs each client process submits in one burst."""
    fault_gap_seconds: tuple[float, float]
    """Quiet time after a fault is repaired and a leader agreed, before the next."""
    kill_seconds: tuple[float, float]
    """How long a killed node stays down."""
    partition_seconds: tuple[float, float]
    cancel_gap_seconds: tuple[float, float]
    progress_seconds: float
    sample_seconds: float
    """How often each daemon's RSS, open files and threads are read."""

    @classmethod
    def for_load(cls, seconds: float) -> Pacing:
        if seconds <= SHORT_LOAD_SECONDS:
            return cls(
                load_seconds=seconds,
                warmup_seconds=_clamp(seconds / 4, 10.0, 30.0),
                retention_seconds=20.0,
                long_job_seconds=(6.0, 15.0),
                gpu_job_seconds=(1.0, 5.0),
                burst_gap_seconds=(3.0, 8.0),
                per_client=(4, 12),
                fault_gap_seconds=(3.0, 6.0),
                kill_seconds=(1.0, 5.0),
                partition_seconds=(3.0, 8.0),
                cancel_gap_seconds=(1.5, 3.5),
                progress_seconds=10.0,
                sample_seconds=3.0,
            )
        return cls(
            load_seconds=seconds,
            warmup_seconds=_clamp(seconds / 4, 30.0, 300.0),
            retention_seconds=_clamp(seconds / 4, 20.0, 120.0),
            long_job_seconds=(10.0, _clamp(seconds / 10, 20.0, 120.0)),
            gpu_job_seconds=(2.0, 8.0),
            burst_gap_seconds=(10.0, 30.0),
            per_client=(5, 25),
            fault_gap_seconds=(10.0, 30.0),
            kill_seconds=(1.0, 10.0),
            partition_seconds=(3.0, 12.0),
            cancel_gap_seconds=(2.0, 6.0),
            progress_seconds=30.0,
            sample_seconds=10.0,
        )


@dataclass(frozen=True)
class NodeSettings:
    run_start_timeout_seconds: float = 20.0
    """Low, so that the leader's give-up of a run that never starts is exercised."""
    run_lease_seconds: float = 8.0
    """Longer than a stall (2-5 s): a stalled leader costs no run; a partition
    longer than this ends the minority's runs (lost) and their jobs run again."""
    stop_grace_seconds: float = 5.0

    def env(self, retention_seconds: float) -> dict[str, str]:
        return {
            "MURMUR_NODE_VOTER_STABILIZATION_SECONDS": "1",
            "MURMUR_NODE_RUN_LEASE_SECONDS": f"{self.run_lease_seconds:g}",
            "MURMUR_NODE_STOP_GRACE_SECONDS": f"{self.stop_grace_seconds:g}",
            "MURMUR_NODE_RETRY_BACKOFF_SECONDS": "1",
            "MURMUR_NODE_RUN_START_TIMEOUT_SECONDS": f"{self.run_start_timeout_seconds:g}",
            "MURMUR_NODE_JOB_RETENTION_SECONDS": f"{retention_seconds:g}",
            "MURMUR_GOSSIP_RECONNECT_INTERVAL": "2",
            # The jobs name no CPUs or memory, and the watchdog's idea of room is GPUs
            # alone: counted as light, the three nodes on one small host (2 CPUs each
            # offered) take a burst as they did before default requests, and room
            # stays what the watchdog thinks it is.
            "MURMUR_NODE_DEFAULT_JOB_CPUS": "0.05",
            "MURMUR_NODE_DEFAULT_JOB_MEMORY_BYTES": "16MiB",
        }


@dataclass(frozen=True)
class Bounds:
    """What the continuous checks allow. Times are counted from the latest of the
    event itself, the current leader's first sighting and the last repair of the
    run's node: a new leader restarts its own clocks, and a restarted node must
    first be seen alive again."""

    start_seconds: float
    """A run scheduled or starting longer than this is stuck (start timeout + slack)."""
    running_slack_seconds: float = 60.0
    """A run still running this long after its program's planned end is stuck."""
    cancel_seconds: float = 60.0
    """A job not ended this long after its cancel was acknowledged is stuck."""
    pending_seconds: float = 60.0
    """A pending job that could have been placed (every job ahead of it fits on the
    healthy nodes' free GPUs) in every sample for this long is stuck."""
    healthy_after_seconds: float = 15.0
    """A node counts as able to take work this long after its last repair."""
    agreement_seconds: float = 90.0
    """The live nodes must agree on a leader within this after a repair."""
    settle_seconds: float = 180.0
    """After the faults stop, every job must end within this."""
    rss_growth_mib: float = 64.0
    fd_growth: float = 32.0
    thread_growth: float = 8.0
    task_growth: float = 150.0
    """Growth allowed between the first and last fifth (medians) of a daemon's
    post-warm-up samples. Open files, threads and tasks rise and fall with the runs
    in flight: the bounds leave room for the difference in load, not for a leak of
    one per job."""

    @classmethod
    def for_soak(cls, pacing: Pacing, settings: NodeSettings) -> Bounds:
        return cls(
            start_seconds=settings.run_start_timeout_seconds + 40.0,
            settle_seconds=2 * pacing.long_job_seconds[1] + 180.0,
        )


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))
