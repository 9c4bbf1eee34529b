"""The control state and protocol levels (node/control/queue/state.py): an entry or a
snapshot above the state's level stops it, unchanged, instead of being skipped
(fail-stop: skipping is how two voters' states would part for good); the cluster's
level is part of the replicated state."""

from __future__ import annotations

import pytest

from murmur.node.control.consensus.errors import UpgradeRequiredError
from murmur.node.control.queue import ControlSnapshotError, ControlState, ErrorKind
from murmur.node.control.queue.codec import SnapshotTooNewError
from murmur.node.control.queue.commands import SetClusterLevel, SubmitJob, UpdateService, encode
from murmur.node.control.queue.protocol import PROTOCOL_LEVEL
from murmur.node.control.queue.state import SNAPSHOT_FORMAT_WITH_CLUSTER_LEVEL
from murmur.v1 import control_pb2, types_pb2
from tests.node.control.queue.builders import SECOND, Log, spec


def waits_for_another(job_id: str) -> SubmitJob:
    """A job held back by a dependency: what an older voter would start at once."""
    held = spec()
    held.after.add(job_id="first")
    return SubmitJob(job_id, held, "alice", "", SECOND)


def test_an_entry_above_the_states_level_stops_it_unchanged() -> None:
    old = Log(ControlState(protocol_level=1))
    new = Log(ControlState())
    for log in (old, new):
        log.apply(SubmitJob("first", spec(), "alice", "", SECOND))
    data = encode(waits_for_another("second"))
    with pytest.raises(UpgradeRequiredError, match="needs control protocol 5"):
        old.apply_bytes(data)
    assert old.state.applied_index == 1  # not counted: applied again once upgraded
    assert old.state.job("second") is None
    # The same bytes, on a node of this version, at the same index.
    new.index = 1
    assert new.apply_bytes(data).ok
    assert new.state.job("second") is not None


def test_a_command_this_version_does_not_know_stops_it_and_garbage_is_refused() -> None:
    log = Log()
    with pytest.raises(UpgradeRequiredError, match="commands of a newer murmur"):
        log.apply_bytes(b"\xa2\x06\x00")  # field 100: a later version's command
    assert log.state.applied_index == 0
    log.index = 0
    refused = log.apply_bytes(b"\xff\xff\xff")  # every version refuses this alike
    assert not refused.ok
    assert refused.error is ErrorKind.INVALID
    assert log.state.applied_index == 1


def test_the_cluster_level_only_goes_up_and_survives_a_snapshot() -> None:
    log = Log()
    assert log.state.cluster_level == 1
    assert log.apply(SetClusterLevel(4, SECOND)).ok
    assert log.apply(SetClusterLevel(2, 2 * SECOND)).ok  # a stale proposal: nothing
    assert log.state.cluster_level == 4
    snapshot = log.state.snapshot()
    message = control_pb2.ControlSnapshot.FromString(snapshot)
    assert message.format == SNAPSHOT_FORMAT_WITH_CLUSTER_LEVEL
    assert message.cluster_protocol_level == 4
    assert ControlState.from_snapshot(snapshot).cluster_level == 4
    # A cluster at level 1 writes what versions before levels wrote.
    assert not control_pb2.ControlSnapshot.FromString(ControlState().snapshot()).format >= 40


def test_a_snapshot_of_a_higher_level_is_refused_and_the_state_kept() -> None:
    ahead = Log()
    ahead.apply(SetClusterLevel(PROTOCOL_LEVEL, SECOND))
    old = Log(ControlState(protocol_level=2))
    old.apply(SubmitJob("kept", spec(), "alice", "", SECOND))
    with pytest.raises(SnapshotTooNewError, match=f"control protocol {PROTOCOL_LEVEL}") as refused:
        old.state.restore(ahead.state.snapshot())
    assert isinstance(refused.value, UpgradeRequiredError)  # the runner halts on it
    assert isinstance(refused.value, ControlSnapshotError)  # as before, for other callers
    assert old.state.job("kept") is not None


def test_a_snapshot_format_not_known_here_is_a_newer_versions() -> None:
    future = control_pb2.ControlSnapshot(format=999).SerializeToString()
    with pytest.raises(SnapshotTooNewError, match="format 999 is not known here"):
        ControlState().restore(future)


def test_a_simulated_older_state_applies_what_its_level_knows() -> None:
    # The testing knob's state (simulate_protocol_level): a level-2 node takes a
    # service update, and stops at what level 2 does not know.
    log = Log(ControlState(protocol_level=2))
    service = types_pb2.ServiceSpec(name="chat", replicas=1, model="m", template=spec())
    assert not log.apply(UpdateService(service, "alice", False, SECOND)).ok  # no such service
    with pytest.raises(UpgradeRequiredError):
        log.apply(SetClusterLevel(3, SECOND))
