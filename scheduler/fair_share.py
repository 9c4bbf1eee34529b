"""Fair share: who has had what, and who goes first because of it.

Usage is GPU-seconds of runs that ended, recorded per user (and the group the lab
policy put them in) in day buckets by the control state as runs end, so it survives
any node and needs no accounting database. Here it is only read:

- **decayed usage** of a group: every bucket weighs 2^(-age/half_life), so last
  week's use counts half when the half-life is seven days;
- **fair-share factor** F = 2^(-U/S): U the group's share of all decayed usage, S
  its share of the weights (``[groups.NAME] weight``, 1 by default). A group that
  used exactly its share has F = 0.5, one that used nothing 1, one that used twice
  its share 0.25 (Slurm's classic formula);
- **multifactor priority**: fair share first, then age (saturating at
  ``AGE_SATURATION_US``), then the job's own priority, then job size, then
  submission order. A user in no group counts as a group of their own, weight 1.

Tiers (``queue_order.tiered``) still come first: fair share orders jobs within a tier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from murmur.scheduler.lab_policy import LabPolicy
from murmur.scheduler.queue_order import QueueOrder
from murmur.scheduler.snapshot import JobRequest

DAY_US = 86_400_000_000
AGE_SATURATION_US = 7 * DAY_US
"""A job waiting this long gets the whole age factor."""
WEIGHT_FAIR_SHARE = 10_000.0
WEIGHT_AGE = 1_000.0
WEIGHT_PRIORITY = 1.0
"""Per point of the job's own priority (-1000..1000)."""
WEIGHT_SIZE = 100.0
"""For the largest job in the queue (by GPUs times nodes); bigger jobs wait less
for their turn, so small ones do not keep them out."""


@dataclass(frozen=True, slots=True)
class UsageBucket:
    """GPU-seconds of runs of one user (in one group) that ended on one day."""

    user: str
    group: str
    """The lab policy's group when the run ended; empty: in no group."""
    day: int
    """Days since the Unix epoch (UTC) of the runs' ends."""
    gpu_seconds: float


def share_key(user: str, group: str) -> str:
    """Whom fair share counts a bucket for: the group, or the user alone."""
    return f"group:{group}" if group else f"user:{user}"


def decayed_usage(
    buckets: Iterable[UsageBucket], now_us: int, half_life_us: int
) -> dict[str, float]:
    """Share key -> decayed GPU-seconds."""
    found: dict[str, float] = {}
    for bucket in buckets:
        age_us = max(0, now_us - (bucket.day * DAY_US + DAY_US // 2))
        weight = 0.5 ** (age_us / half_life_us) if half_life_us > 0 else 1.0
        key = share_key(bucket.user, bucket.group)
        found[key] = found.get(key, 0.0) + bucket.gpu_seconds * weight
    return found


@dataclass(frozen=True, slots=True)
class FairShare:
    """Every share key's factor F in [0, 1], from one look at the usage."""

    factors: Mapping[str, float]
    default_factor: float
    """For a key that used nothing (F = 1 when anything was used at all)."""

    def factor(self, key: str) -> float:
        return self.factors.get(key, self.default_factor)


def fair_share(policy: LabPolicy, usage: Mapping[str, float]) -> FairShare:
    """F = 2^(-U/S) for every key with usage; groups' weights from ``policy``."""
    total_usage = sum(usage.values())
    if total_usage <= 0:
        return FairShare({}, 1.0)
    weights = {f"group:{name}": group.weight for name, group in policy.groups.items()}
    for key in usage:
        weights.setdefault(key, 1.0)
    total_weight = sum(weights.values())
    factors = {}
    for key, used in usage.items():
        share = weights[key] / total_weight if total_weight > 0 else 0.0
        factors[key] = 2.0 ** (-(used / total_usage) / share) if share > 0 else 0.0
    return FairShare(factors, 1.0)


def multifactor_order(
    policy: LabPolicy, shares: FairShare, now_us: int, submitted_at_us: Mapping[str, int]
) -> QueueOrder:
    """Fair share, then age, own priority and size (see the module docstring); ties
    by submission order (an array's tasks by index), then id."""

    def order(pending: Sequence[JobRequest]) -> tuple[JobRequest, ...]:
        largest = max((job.gpus * job.nodes for job in pending), default=0) or 1
        keys: dict[str, float] = {}

        def score(job: JobRequest) -> float:
            group = policy.group_of(job.user)
            key = share_key(job.user, group.name if group is not None else "")
            factor = keys.get(key)
            if factor is None:
                factor = keys[key] = shares.factor(key)
            age = max(0, now_us - submitted_at_us.get(job.id, now_us))
            return (
                WEIGHT_FAIR_SHARE * factor
                + WEIGHT_AGE * min(1.0, age / AGE_SATURATION_US)
                + WEIGHT_PRIORITY * job.priority
                + WEIGHT_SIZE * (job.gpus * job.nodes) / largest
            )

        return tuple(
            sorted(
                pending,
                key=lambda job: (-score(job), job.submit_order, job.submit_rank, job.id),
            )
        )

    return order
