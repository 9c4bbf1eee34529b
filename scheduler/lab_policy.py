"""A lab's scheduling policy: groups, GPU quotas, cohorts, tiers, default requests.

An admin writes it as TOML and applies it with ``murmur policy apply FILE``; it is a
command of the control log, so every node holds the same version, and the leader
schedules by the version it has applied. This module only reads and checks the
text, and answers the questions placement asks; it never reads a file or a clock.

The file (every section optional; a key this version does not know is refused, so a
typo never silently does nothing)::

    [defaults]
    cpus = 1                 # what a job that names no CPUs counts as
    memory = "2GiB"          # ... and no memory
    time_limit = "24h"       # the time limit of a job submitted without one
    project = "lab"          # the project of a job submitted without one

    [tiers]                  # higher runs first; jobs get a tier from their queue
    urgent = 100
    normal = 50
    default = "normal"       # the tier of a queue that names none

    [queues.deadline]
    tier = "urgent"
    time_limit = "4h"        # this queue's default time limit

    [preemption]
    tiers = true             # a waiting job may stop running jobs of lower tiers
    reclaim_lent_quota = true  # a group may stop the jobs that borrow its idle quota

    [fair_share]             # order jobs by who has had less than their share
    half_life = "7d"         # usage counts half after this long

    [groups.nlp]
    users = ["alice", "bob"]
    gpus = 16                # the group's quota: GPUs its running jobs hold at most
    user_gpus = 8            # each member's cap
    cohort = "ml"            # groups of one cohort borrow each other's idle quota
    weight = 2               # its fair share, against the other groups' (1 by default)

    [users.alice]
    gpus = 4                 # this user's cap, whatever their group says

    [projects.vision]        # a project's jobs get MLFLOW_TRACKING_URI and
    mlflow_tracking_uri = "http://mlflow.lab:5000"   # MLFLOW_EXPERIMENT_NAME set
    mlflow_experiment = "vision"  # default: the project's name

Quotas follow Kueue's model: a group's jobs may hold its quota; beyond it, they may
borrow what the other groups of its cohort leave idle, as long as the cohort as a
whole holds no more than the sum of its groups' quotas. A user in no group has no
group quota (only a user cap, if one is set). With ``reclaim_lent_quota``, a group
that wants its quota back may have the borrowing jobs stopped
(scheduler/reclaim.py); without it, lent GPUs come back as the borrowers' jobs end.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_POLICY_BYTES = 256 * 1024
MAX_TIME_LIMIT_US = 30 * 86_400_000_000
"""A default time limit is at most what a job may ask (30 days)."""
_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?")
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?")
_MEMORY_UNITS = {
    None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
}  # fmt: skip
DEFAULT_TIER_RANK = 0


class PolicyError(ValueError):
    """The policy text is not valid; the message names the key and what is wrong."""


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    users: frozenset[str]
    gpus: int | None
    """The group's quota; None: no quota."""
    user_gpus: int | None
    """Each member's cap; None: none."""
    cohort: str
    weight: float = 1.0
    """Its fair share, relative to the other groups' weights."""


@dataclass(frozen=True, slots=True)
class Project:
    """What the policy says of one project: where its runs' MLflow tracking goes."""

    name: str
    mlflow_tracking_uri: str = ""
    mlflow_experiment: str = ""
    """The experiment its runs log to; empty: the project's name."""


@dataclass(frozen=True, slots=True)
class LabPolicy:
    """A checked policy. ``LabPolicy()`` is the policy of a cluster that applied none:
    no quotas, one tier, no default request beyond the node configuration's."""

    default_cpus: float | None = None
    default_memory_bytes: int | None = None
    tiers: Mapping[str, int] = field(default_factory=dict)
    default_tier: str = ""
    queue_tiers: Mapping[str, str] = field(default_factory=dict)
    default_time_limit_us: int = 0
    queue_time_limits_us: Mapping[str, int] = field(default_factory=dict)
    groups: Mapping[str, Group] = field(default_factory=dict)
    user_gpus: Mapping[str, int] = field(default_factory=dict)
    preempt_tiers: bool = False
    """A waiting job may have running jobs of lower tiers stopped and requeued."""
    reclaim_lent_quota: bool = False
    """A waiting job within its group's quota may have running jobs of the same or
    lower tiers that borrow beyond their own groups' quotas (in its cohort) stopped
    and requeued."""
    fair_share_half_life_us: int = 0
    """0: no fair-share ordering (priority, then submission, as without a policy)."""
    default_project: str = ""
    """The project of a job submitted without one; empty: none."""
    projects: Mapping[str, Project] = field(default_factory=dict)
    _group_of: Mapping[str, str] = field(default_factory=dict)

    def tier_of(self, queue: str) -> tuple[str, int]:
        """The tier of a job in ``queue``: its name and rank (higher first)."""
        name = self.queue_tiers.get(queue, self.default_tier)
        return name, self.tiers.get(name, DEFAULT_TIER_RANK)

    def time_limit_of(self, queue: str) -> int:
        """The time limit a job of ``queue`` submitted without one gets (µs); 0: none."""
        return self.queue_time_limits_us.get(queue, self.default_time_limit_us)

    def group_of(self, user: str) -> Group | None:
        name = self._group_of.get(user)
        return self.groups[name] if name is not None else None

    def user_cap(self, user: str) -> int | None:
        """The most GPUs ``user``'s running jobs may hold; None: no cap."""
        if user in self.user_gpus:
            return self.user_gpus[user]
        group = self.group_of(user)
        return group.user_gpus if group is not None else None

    def cohort_members(self, cohort: str) -> list[Group]:
        return [group for group in self.groups.values() if cohort and group.cohort == cohort]


NO_LAB_POLICY = LabPolicy()


def parse_policy(text: str) -> LabPolicy:
    """The policy ``text`` says.

    Raises:
        PolicyError: not TOML, too large, an unknown key, a value of the wrong kind,
            a user in two groups, a queue naming an unknown tier.
    """
    if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise PolicyError(f"a policy is at most {MAX_POLICY_BYTES // 1024} KiB")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"not valid TOML: {exc}") from None
    _known(
        document,
        "",
        {"defaults", "tiers", "queues", "groups", "users", "fair_share", "preemption", "projects"},
    )
    preemption = _table(document, "preemption")
    _known(preemption, "preemption", {"tiers", "reclaim_lent_quota"})
    preempt_tiers = preemption.get("tiers", False)
    if not isinstance(preempt_tiers, bool):
        raise PolicyError("preemption.tiers must be true or false")
    reclaim_lent_quota = preemption.get("reclaim_lent_quota", False)
    if not isinstance(reclaim_lent_quota, bool):
        raise PolicyError("preemption.reclaim_lent_quota must be true or false")
    fair = _table(document, "fair_share")
    _known(fair, "fair_share", {"half_life"})
    if "fair_share" in document and "half_life" not in fair:
        raise PolicyError('fair_share.half_life is missing (e.g. half_life = "7d")')
    half_life_us = _duration_us(fair["half_life"], "fair_share.half_life") if fair else 0
    defaults = _table(document, "defaults")
    _known(defaults, "defaults", {"cpus", "memory", "time_limit", "project"})
    default_project = defaults.get("project", "")
    if not isinstance(default_project, str):
        raise PolicyError("defaults.project must be a project's name")
    if default_project:
        _check_project_name(default_project, "defaults.project")
    default_time_limit = (
        _time_limit(defaults["time_limit"], "defaults.time_limit")
        if "time_limit" in defaults
        else 0
    )
    default_cpus = _number(defaults, "defaults", "cpus") if "cpus" in defaults else None
    default_memory = (
        _memory(defaults["memory"], "defaults.memory") if "memory" in defaults else None
    )

    tiers_table = _table(document, "tiers")
    default_tier = tiers_table.get("default", "")
    if not isinstance(default_tier, str):
        raise PolicyError("tiers.default must be the name of a tier")
    tiers: dict[str, int] = {}
    for name, rank in tiers_table.items():
        if name == "default":
            continue
        _check_name(name, "tiers")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank <= 1_000_000:
            raise PolicyError(f"tiers.{name} must be a whole number from 0 to 1000000")
        tiers[name] = rank
    if default_tier and default_tier not in tiers:
        raise PolicyError(f"tiers.default names {default_tier!r}, which is not a tier")

    queue_tiers: dict[str, str] = {}
    queue_time_limits: dict[str, int] = {}
    for queue, settings in _table(document, "queues").items():
        where = f"queues.{queue}"
        if not isinstance(settings, dict):
            raise PolicyError(f"{where} must be a table")
        _known(settings, where, {"tier", "time_limit"})
        if "time_limit" in settings:
            queue_time_limits[queue] = _time_limit(settings["time_limit"], f"{where}.time_limit")
        tier = settings.get("tier", "")
        if tier:
            if tier not in tiers:
                raise PolicyError(f"{where}.tier names {tier!r}, which is not a tier")
            queue_tiers[queue] = tier

    groups: dict[str, Group] = {}
    group_of: dict[str, str] = {}
    for name, settings in _table(document, "groups").items():
        where = f"groups.{name}"
        _check_name(name, "groups")
        if not isinstance(settings, dict):
            raise PolicyError(f"{where} must be a table")
        _known(settings, where, {"users", "gpus", "user_gpus", "cohort", "weight"})
        weight = _number(settings, where, "weight") if "weight" in settings else 1.0
        if weight <= 0:
            raise PolicyError(f"{where}.weight must be above 0")
        users = settings.get("users", [])
        if not isinstance(users, list) or not all(isinstance(u, str) and u for u in users):
            raise PolicyError(f"{where}.users must be a list of user names")
        for user in users:
            if user in group_of:
                raise PolicyError(f"user {user!r} is in groups {group_of[user]!r} and {name!r}")
            group_of[user] = name
        cohort = settings.get("cohort", "")
        if not isinstance(cohort, str):
            raise PolicyError(f"{where}.cohort must be a name")
        groups[name] = Group(
            name=name,
            users=frozenset(users),
            gpus=_count(settings, where, "gpus"),
            user_gpus=_count(settings, where, "user_gpus"),
            cohort=cohort,
            weight=weight,
        )
    for group in groups.values():
        if group.cohort and any(
            g.gpus is None for g in groups.values() if g.cohort == group.cohort
        ):
            raise PolicyError(
                f"every group of cohort {group.cohort!r} needs a gpus quota (what it lends)"
            )

    user_gpus: dict[str, int] = {}
    for user, settings in _table(document, "users").items():
        where = f"users.{user}"
        if not isinstance(settings, dict):
            raise PolicyError(f"{where} must be a table")
        _known(settings, where, {"gpus"})
        cap = _count(settings, where, "gpus")
        if cap is not None:
            user_gpus[user] = cap
    projects: dict[str, Project] = {}
    for name, settings in _table(document, "projects").items():
        where = f"projects.{name}"
        _check_project_name(name, where)
        if not isinstance(settings, dict):
            raise PolicyError(f"{where} must be a table")
        _known(settings, where, {"mlflow_tracking_uri", "mlflow_experiment"})
        uri = settings.get("mlflow_tracking_uri", "")
        experiment = settings.get("mlflow_experiment", "")
        for key, value in (("mlflow_tracking_uri", uri), ("mlflow_experiment", experiment)):
            if not isinstance(value, str) or len(value) > 1024 or "\x00" in value:
                raise PolicyError(f"{where}.{key} must be text (at most 1024 characters)")
        if experiment and not uri:
            raise PolicyError(f"{where}.mlflow_experiment needs mlflow_tracking_uri")
        projects[name] = Project(name, uri, experiment)
    return LabPolicy(
        default_project=default_project,
        projects=projects,
        default_cpus=default_cpus,
        default_memory_bytes=default_memory,
        tiers=tiers,
        default_tier=default_tier,
        queue_tiers=queue_tiers,
        default_time_limit_us=default_time_limit,
        queue_time_limits_us=queue_time_limits,
        groups=groups,
        user_gpus=user_gpus,
        fair_share_half_life_us=half_life_us,
        preempt_tiers=preempt_tiers,
        reclaim_lent_quota=reclaim_lent_quota,
        _group_of=group_of,
    )


def _table(document: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise PolicyError(f"{key} must be a table ([{key}])")
    return value


def _known(table: Mapping[str, Any], where: str, keys: set[str]) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        place = f"{where}." if where else ""
        raise PolicyError(
            f"unknown key {place}{unknown[0]} (known here: {', '.join(sorted(keys))})"
        )


_PROJECT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")


def _check_project_name(name: str, where: str) -> None:
    """A project's name as ``--project`` takes it (node/jobspec/arrays.py)."""
    if not _PROJECT_NAME.fullmatch(name):
        raise PolicyError(
            f"{where}: a project's name is letters, digits, '.', '_' or '-' (at most 63, "
            "starting and ending with a letter or digit)"
        )


def _check_name(name: str, where: str) -> None:
    if not _NAME.fullmatch(name):
        raise PolicyError(
            f"{where}.{name}: a name is lowercase letters, digits, '.', '_' or '-' "
            "(at most 63, starting and ending with a letter or digit)"
        )


def _number(table: Mapping[str, Any], where: str, key: str) -> float:
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 4096:
        raise PolicyError(f"{where}.{key} must be a number from 0 to 4096")
    return float(value)


def _count(table: Mapping[str, Any], where: str, key: str) -> int | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
        raise PolicyError(f"{where}.{key} must be a whole number of GPUs (0 or more)")
    return value


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d)")
_DURATION_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}


def _duration_us(value: object, where: str) -> int:
    """``"7d"``, ``"12h"``, ``"1d12h"``, or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value * 1_000_000)
    text = value.strip() if isinstance(value, str) else ""
    total, position = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_US[match.group(2)]
        position = match.end()
    if not text or position != len(text) or total <= 0:
        raise PolicyError(f'{where} must be a duration such as "7d" or "36h"')
    return int(total)


def _time_limit(value: object, where: str) -> int:
    limit = _duration_us(value, where)
    if limit > MAX_TIME_LIMIT_US:
        raise PolicyError(f"{where} is at most 30 days, as a job's own time limit")
    return limit


def _memory(value: object, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _MEMORY.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise PolicyError(f'{where} must be a size such as "2GiB" or a number of bytes')
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2)])
