"""The control protocol's levels: which entries of the control log a version understands.

Every voter applies every committed entry, and must get the same state from it. A
cluster being upgraded one node at a time runs two versions at once, so an entry
that one of them reads differently from the other would split the state in two
without anyone noticing. Three things keep that from happening:

1. **A level per version** (:data:`PROTOCOL_LEVEL`, here and nowhere else). It goes
   up by one whenever the log gains something an older version would read
   differently: a new command, a new field whose value changes what an entry does
   (a job spec's ``after`` holds a job back), a new key in text the state parses
   (the lab policy), a new enum value, or a changed rule in how an existing command
   applies. :data:`LEVELS` names what each level added; :func:`required_level` says,
   for one entry, the lowest level that reads it as this version does. The rule for
   whoever changes the log: *a new meaning gets a new level and a line in
   ``required_level``*; a field that changes nothing a voter computes (a display
   string) needs none. Prefer a new command to a new meaning in an old one: an
   older version does not know the command at all, and stops (3, below) instead of
   misreading it.
2. **Gating** (node/control/queue/protocol_gate.py). Each node gossips its level
   (``NodeInfo.protocol_level``; 0, from a version before levels, reads as 1). The
   log holds the *cluster's* level (``SetClusterLevel``), which the leader raises
   once every node that applies the log, or may, speaks it: every voter and learner,
   up or down, and every other live node. A command needing more than the cluster's
   level is refused before it is proposed, with FAILED_PRECONDITION and the node that
   holds it back (:func:`refusal`). Being in the log, the level is the same for every
   voter, whatever gossip each has heard; it never goes down.
3. **Fail-stop** (node/control/consensus/runner.py). A node that meets an entry above
   its own level (a command it does not know, or an entry whose ``protocol_level``
   says more than it speaks) does not skip it: it stops applying the log there, keeps
   storing and acknowledging it, never stands for leader, and says it must be
   upgraded. Restarted on a newer version it applies the log from its snapshot on.
   Gating makes this rare (a node rolled back after the upgrade finished, or one that
   joins late on an old version); it is what makes a mistake cost availability of one
   node instead of a silent split.

Entries proposed by this version carry their level (``ControlCommand.protocol_level``)
when it is above 1, so a later version that adds a meaning to an existing command is
still recognised by this one: it reads the number, not the new field.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from murmur.v1 import control_pb2, types_pb2

BASE_LEVEL = 1
"""The level of every version from before levels existed (its nodes gossip none)."""

LEVELS: Mapping[int, str] = {
    1: "the base protocol",
    2: "service updates",
    3: "service liveness probes",
    4: "API keys",
    5: "job arrays, dependencies, projects and batch submissions",
    6: "records of issued user certificates",
}
"""What each level added, as a refusal names it ("does not know service updates")."""

PROTOCOL_LEVEL = max(LEVELS)
"""The level this version speaks."""

COMMAND_LEVELS: Mapping[str, int] = {
    "submit_job": 1,
    "cancel_job": 1,
    "assign_job": 1,
    "report_run": 1,
    "node_lost": 1,
    "revoke_assignment": 1,
    "set_node_drain": 1,
    "forget_jobs": 1,
    "revoke_certificate": 1,
    "add_trusted_ca": 1,
    "retire_ca": 1,
    "set_lab_policy": 1,
    "preempt_job": 1,
    "create_service": 1,
    "scale_service": 1,
    "delete_service": 1,
    "record_audit": 1,
    "create_join_token": 1,
    "consume_join_token": 1,
    "update_service": 2,
    "roll_replica": 2,
    "set_cluster_level": 2,
    "create_api_key": 4,
    "revoke_api_key": 4,
    "record_api_key_usage": 4,
    "submit_jobs": 5,
    "record_user_certificate": 6,
}
"""The level each command (``ControlCommand``'s oneof field) first appeared at. A test
holds it to the proto: a command added without a line here fails it (and is taken to
need this version's level meanwhile)."""

UNKNOWN = PROTOCOL_LEVEL + 1
"""What :func:`required_level` says of a command this version does not know: more
than it speaks, whatever the writer's level was."""


def feature(level: int) -> str:
    """What ``level`` added, in words; a level above this version's is "a newer
    version's commands"."""
    return LEVELS.get(level, "commands of a newer murmur")


def required_level(message: control_pb2.ControlCommand) -> int:
    """The lowest level that applies this entry as this version does.

    The command's own level, raised by what its content uses (a job spec's array,
    dependencies or project; a service's liveness probe; a policy's projects), and by
    the level its writer put in it. A command this version does not know (a newer
    version's, or an empty entry's unknown fields) is :data:`UNKNOWN`.
    """
    kind = message.WhichOneof("command")
    if kind is None:
        return max(message.protocol_level, UNKNOWN) if message.ByteSize() else BASE_LEVEL
    # A command of this version's contract not in the table yet (the test holds the
    # table to the contract) needs this version: gated, but never stopped on here.
    level = COMMAND_LEVELS.get(kind, PROTOCOL_LEVEL)
    if kind == "submit_job":
        level = max(level, _job_spec_level(message.submit_job.spec))
    elif kind in ("create_service", "update_service"):
        service = getattr(message, kind).spec
        level = max(level, _service_spec_level(service))
    elif kind == "set_lab_policy":
        level = max(level, _policy_level(message.set_lab_policy.text))
    elif kind == "set_cluster_level":
        level = max(level, message.set_cluster_level.level)
    return max(level, message.protocol_level)


def _job_spec_level(spec: types_pb2.JobSpec) -> int:
    # An older voter would start a job its dependencies hold back, run an array as
    # one job, and not count a project's usage.
    if spec.HasField("array") or spec.after or spec.project:
        return 5
    return BASE_LEVEL


def _service_spec_level(spec: types_pb2.ServiceSpec) -> int:
    level = _job_spec_level(spec.template)
    if spec.HasField("liveness"):  # copied into each replica's job by the state
        level = max(level, 3)
    return level


def _policy_level(text: str) -> int:
    # The policy is parsed when its entry applies: an older parser refuses a key it
    # does not know, where a newer one accepts it.
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return BASE_LEVEL  # refused alike by every version
    defaults = document.get("defaults")
    if "projects" in document or (isinstance(defaults, dict) and "project" in defaults):
        return 5
    return BASE_LEVEL


def entry_level(data: bytes) -> int:
    """:func:`required_level` of an entry's bytes; bytes that are no command at all
    need nothing (every version refuses them alike)."""
    message = control_pb2.ControlCommand()
    try:
        message.ParseFromString(data)
    except Exception:
        return BASE_LEVEL
    return required_level(message)


# ------------------------------------------------------------------ members and gating


@dataclass(frozen=True, slots=True)
class MemberLevel:
    """What one node of the cluster speaks, as this node knows it (gossip)."""

    name: str
    version: str
    """Its murmur version; empty when not known yet."""
    level: int
    """Its protocol level (``BASE_LEVEL`` for one that gossips none)."""
    counts: bool = True
    """Whether it applies the log, or may: a voter or learner (up or down), or any
    other node that is up. A node down that votes not counts too, since it will
    replay the log when it comes back."""
    down: bool = False

    def describe(self) -> str:
        version = f"murmur {self.version}" if self.version else "a version not known yet"
        state = " (down)" if self.down else ""
        return f"{self.name}{state} runs {version} (protocol {self.level})"


def level_of_info(info: types_pb2.NodeInfo | None) -> int:
    """A gossiped NodeInfo's level: 0 (none gossiped) is a version from before levels."""
    if info is None:
        return BASE_LEVEL
    return max(info.protocol_level, BASE_LEVEL)


def cluster_may_speak(members: Iterable[MemberLevel]) -> int:
    """The highest level every node that counts speaks: what the cluster's level may be
    raised to. No node at all (not known yet): the base level."""
    levels = [member.level for member in members if member.counts]
    return min(levels) if levels else BASE_LEVEL


def level_to_raise(cluster_level: int, members: Iterable[MemberLevel]) -> int | None:
    """The level the leader commits next (``SetClusterLevel``), or None: every node
    that counts speaks more than the log's level says."""
    possible = cluster_may_speak(members)
    return possible if possible > cluster_level else None


def refusal(needed: int, members: Iterable[MemberLevel], *, what: str = "") -> str | None:
    """Why a command needing ``needed`` may not be proposed now, or None: every node
    that counts speaks it.

    Args:
        needed: the command's :func:`required_level`.
        members: the cluster's nodes as gossip knows them (this one included).
        what: the request in words, for the message (default: the feature's name).
    """
    behind = sorted(
        (member for member in members if member.counts and member.level < needed),
        key=lambda member: (member.level, member.name),
    )
    if not behind:
        return None
    first = behind[0]
    more = f" (and {len(behind) - 1} more)" if len(behind) > 1 else ""
    subject = what or feature(needed)
    return (
        f"node {first.describe()}{more}, which does not know {subject} (protocol {needed}): "
        "finish the upgrade first"
    )
