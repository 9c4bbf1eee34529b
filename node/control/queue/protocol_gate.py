"""`ProtocolGate`: the control protocol's gating on this node (the rules:
node/control/queue/protocol.py).

A command that needs a higher level than the cluster's is stopped at two doors:

- :meth:`ProtocolGate.check`, where a client's request becomes a command
  (``ClusterJobs.propose``, on the node the client reached): refused, with the node
  that holds it back, while gossip shows a node that counts below its level; and
  refused when it carries fields this version does not know (a newer client's),
  which this node would otherwise pass on without knowing what they mean.
- :meth:`ProtocolGate.admit`, the consensus runner's hook on the leader, which every
  proposal passes (forwarded ones and the leader's own: a rollout's ``RollReplica``,
  a router's usage flush). A command at or below the log's level (``cluster_level``)
  passes at once, which is every command of a cluster not being upgraded: no gossip
  is read. One above it passes only when every node that counts speaks it, and then
  behind a ``SetClusterLevel`` entry that raises the log's level first, so the log
  itself says, before the entry, that it may be there.

:meth:`ProtocolGate.run` raises the log's level as soon as every node speaks more,
without waiting for a request that needs it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.queue.commands import (
    CommandDecodeError,
    SetClusterLevel,
    encode,
    parse,
)
from murmur.node.control.queue.protocol import (
    BASE_LEVEL,
    MemberLevel,
    cluster_may_speak,
    level_of_info,
    level_to_raise,
    refusal,
    required_level,
)
from murmur.node.control.queue.state import ControlState
from murmur.node.errors import NodeError, UpgradeInProgressError
from murmur.node.gossip import MemberState
from murmur.node.membership import MembershipRunner
from murmur.v1 import control_pb2, types_pb2

_log = logging.getLogger("murmur.jobs")

RAISE_CHECK_SECONDS = 1.0
"""How often the leader looks whether the cluster's level can go up: an upgrade's
last node is in the log's level a second after gossip shows it."""

_UP = frozenset({MemberState.ALIVE, MemberState.SUSPECT})


def has_unknown_fields(message: control_pb2.ControlCommand) -> bool:
    """Whether ``message`` (anywhere inside) holds fields this version does not know."""
    known = control_pb2.ControlCommand()
    known.CopyFrom(message)
    known.DiscardUnknownFields()
    return known.ByteSize() != message.ByteSize()


class ProtocolGate:
    """This node's side of the control protocol's gating (see the module doc).

    Args:
        name: this node's name.
        version: the murmur version it reports.
        level: the control protocol level it speaks.
        control: its replica of the control state (the log's ``cluster_level``).
        consensus: its Raft (who votes, who learns, whether it leads).
        membership: gossip (every other node's level and whether it is up).
    """

    def __init__(
        self,
        *,
        name: str,
        version: str,
        level: int,
        control: ControlState,
        consensus: ConsensusRunner,
        membership: MembershipRunner,
    ) -> None:
        self._name = name
        self._version = version
        self._level = level
        self._control = control
        self._consensus = consensus
        self._membership = membership

    def members(self) -> list[MemberLevel]:
        """Every node as gossip knows it, with whether it counts: voters and learners
        up or down (they apply the log, or will when they return), any other node up
        (it may become one). A voter gossip does not know counts at the base level."""
        status = self._consensus.status()
        applying = status.voters | status.learners
        found: dict[str, MemberLevel] = {
            self._name: MemberLevel(self._name, self._version, self._level)
        }
        for member in self._membership.members():
            if member.name == self._name:
                continue
            up = member.state in _UP
            info = member.info
            found[member.name] = MemberLevel(
                member.name,
                info.version if info is not None else "",
                level_of_info(info),
                counts=up or member.name in applying,
                down=not up,
            )
        for name in applying - found.keys():
            found[name] = MemberLevel(name, "", BASE_LEVEL, down=True)
        return sorted(found.values(), key=lambda member: member.name)

    def may_apply_log(self, info: types_pb2.NodeInfo | None) -> bool:
        """Whether a node, by what it gossips, can apply this log: it has not stopped
        at an entry it does not know, and speaks the log's level (the voter manager
        makes no learner or voter of one that cannot; one from before levels would
        skip what it does not know rather than stop)."""
        if info is not None and info.upgrade_needed:
            return False
        return level_of_info(info) >= self._control.cluster_level

    def check(self, message: control_pb2.ControlCommand) -> None:
        """Where a request becomes a command: refuse what some node would not read.

        Raises:
            UpgradeInProgressError: a node that counts (this one included) speaks a
                lower level than the command needs, or the command holds fields this
                version does not know.
        """
        if has_unknown_fields(message):
            raise UpgradeInProgressError(
                f"node {self._name} runs murmur {self._version} (protocol {self._level}), "
                "which does not know every field of this request (sent by a newer murmur?): "
                "send it to an upgraded node, or finish the upgrade first"
            )
        needed = required_level(message)
        if needed <= BASE_LEVEL:
            return
        why = refusal(needed, self.members())
        if why is not None:
            raise UpgradeInProgressError(why)

    def admit(self, data: bytes) -> Sequence[bytes]:
        """The leader's door (``ConsensusRunner.admit``): the entries to append before
        ``data``, if any.

        Raises:
            UpgradeInProgressError: ``data`` needs a level some node that counts lacks.
        """
        try:
            message = parse(data)
        except CommandDecodeError:
            return ()  # no command to any version: every voter refuses it alike
        needed = required_level(message)
        cluster_level = self._control.cluster_level
        if needed <= cluster_level:
            return ()
        members = self.members()
        why = refusal(needed, members)
        if why is not None:
            raise UpgradeInProgressError(why)
        if message.WhichOneof("command") == "set_cluster_level":
            return ()
        raised = SetClusterLevel(cluster_may_speak(members), time.time_ns() // 1000)
        _log.info(
            "raising the cluster's control protocol to %d (every node speaks it)",
            raised.level,
            extra={"event": "protocol.raised", "level": raised.level, "from": cluster_level},
        )
        return (encode(raised),)

    async def raise_once(self) -> int | None:
        """On the leader, commit ``SetClusterLevel`` if every node that counts speaks
        more than the log's level; returns the level raised to, if any."""
        if self._control.cluster_level >= self._level or not self._consensus.state_is_current():
            return None  # as high as this node speaks (no gossip read), or not the leader
        target = level_to_raise(self._control.cluster_level, self.members())
        if target is None:
            return None
        await self._consensus.propose(encode(SetClusterLevel(target, time.time_ns() // 1000)))
        _log.info(
            "cluster's control protocol raised to %d: every node speaks it",
            target,
            extra={"event": "protocol.raised", "level": target},
        )
        return target

    async def run(self) -> None:
        """Raise the log's level whenever it can go up, until cancelled."""
        while True:
            try:
                await self.raise_once()
            except NodeError as exc:  # no longer leads, no quorum, a node came back old
                _log.debug("cluster protocol level not raised: %s", exc)
            await asyncio.sleep(RAISE_CHECK_SECONDS)
