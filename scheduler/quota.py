"""GPU quotas: who holds how many GPUs now, and whether a job may take more.

The leader builds a ledger from the jobs that hold GPUs (scheduled, starting or
running) and asks it about each job it is about to place, in queue order; a job it
places is counted at once, so one plan never hands out more than the quotas allow.
The rules are the lab policy's (scheduler/lab_policy.py): a user cap, then the
group's quota, beyond which a group of a cohort may borrow what its cohort leaves
idle.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from murmur.scheduler.lab_policy import LabPolicy


class QuotaLedger:
    """GPUs held per user, group and cohort under ``policy``.

    Args:
        policy: the lab policy in force.
        held: (user, GPUs) of every job that holds GPUs now.
    """

    def __init__(self, policy: LabPolicy, held: Iterable[tuple[str, int]]) -> None:
        self._policy = policy
        self._users: Counter[str] = Counter()
        self._groups: Counter[str] = Counter()
        self._cohorts: Counter[str] = Counter()
        for user, gpus in held:
            self.take(user, gpus)

    def held_by_user(self, user: str) -> int:
        return self._users[user]

    def held_by_group(self, group: str) -> int:
        return self._groups[group]

    def refusal(self, user: str, gpus: int) -> str | None:
        """Why ``user`` may not take ``gpus`` more GPUs now; None when they may."""
        if gpus <= 0:
            return None
        policy = self._policy
        cap = policy.user_cap(user)
        if cap is not None and self._users[user] + gpus > cap:
            if gpus > cap:
                return f"quota: the job asks {gpus} GPUs, more than user {user}'s quota of {cap}"
            return f"quota: user {user} uses {self._users[user]}/{cap} GPUs"
        group = policy.group_of(user)
        if group is None or group.gpus is None:
            return None
        used = self._groups[group.name]
        if used + gpus <= group.gpus:
            return None
        if not group.cohort:
            if gpus > group.gpus:
                return (
                    f"quota: the job asks {gpus} GPUs, more than group {group.name}'s "
                    f"quota of {group.gpus}"
                )
            return f"quota: group {group.name} uses {used}/{group.gpus} GPUs"
        cohort_quota = sum(g.gpus or 0 for g in policy.cohort_members(group.cohort))
        cohort_used = self._cohorts[group.cohort]
        if cohort_used + gpus <= cohort_quota:
            return None  # borrowed from the cohort's idle quota
        return (
            f"quota: group {group.name} uses {used}/{group.gpus} GPUs and its cohort "
            f"{group.cohort} {cohort_used}/{cohort_quota}"
        )

    def take(self, user: str, gpus: int) -> None:
        """Counts ``gpus`` more GPUs as held by ``user``."""
        if gpus <= 0:
            return
        self._users[user] += gpus
        group = self._policy.group_of(user)
        if group is not None:
            self._groups[group.name] += gpus
            if group.cohort:
                self._cohorts[group.cohort] += gpus

    def give_back(self, user: str, gpus: int) -> None:
        """Counts ``gpus`` fewer GPUs as held by ``user`` (a run of theirs that is to
        end; never below what ``take`` counted)."""
        if gpus <= 0:
            return
        self._users[user] = max(0, self._users[user] - gpus)
        group = self._policy.group_of(user)
        if group is not None:
            self._groups[group.name] = max(0, self._groups[group.name] - gpus)
            if group.cohort:
                self._cohorts[group.cohort] = max(0, self._cohorts[group.cohort] - gpus)
