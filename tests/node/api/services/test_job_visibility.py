"""Who sees what of a job: env values and output for its owner, admins and nodes;
secret values for nobody."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from murmur.certs import CertificateIdentity, Role
from murmur.node.api.services.job_visibility import (
    REDACTED,
    check_may_read_output,
    sees_private_parts,
    visible_job,
)
from murmur.node.errors import PermissionDeniedError
from murmur.v1 import types_pb2


def caller(name: str, role: Role) -> CertificateIdentity:
    now = datetime.now(UTC)
    return CertificateIdentity(
        name=name, role=role, serial="1", not_before=now, not_after=now + timedelta(days=1)
    )


def alices_job(**spec_fields: object) -> types_pb2.Job:
    spec = types_pb2.JobSpec(
        command=["python", "train.py", "--lr", "0.1"],
        env={"HF_TOKEN": "hf_abc", "SEED": "1"},
        labels={"team": "nlp"},
        **spec_fields,  # type: ignore[arg-type]
    )
    return types_pb2.Job(
        id="j1",
        user="alice",
        spec=spec,
        state=types_pb2.JOB_STATE_RUNNING,
        reason="running",
        runs=[types_pb2.Run(id="r1", node="node-2")],
    )


ALICE = caller("alice", Role.MEMBER)
BOB = caller("bob", Role.MEMBER)
VIEWER = caller("vera", Role.VIEWER)
ADMIN = caller("admin", Role.ADMIN)
NODE = caller("node-1", Role.NODE)


@pytest.mark.parametrize(
    ("who", "sees"),
    [
        (ALICE, True),
        (ADMIN, True),
        (NODE, True),
        (BOB, False),
        (VIEWER, False),
        # A viewer's certificate in the owner's name is the owner.
        (caller("alice", Role.VIEWER), True),
    ],
)
def test_the_owner_admins_and_nodes_see_private_parts(who: CertificateIdentity, sees: bool) -> None:
    assert sees_private_parts(who, "alice") is sees


def test_a_job_without_an_owner_is_private_to_admins_and_nodes() -> None:
    assert not sees_private_parts(caller("", Role.MEMBER), "")
    assert sees_private_parts(ADMIN, "")


def test_others_see_env_names_with_redacted_values_and_everything_else() -> None:
    job = alices_job()
    for who in (BOB, VIEWER):
        shown = visible_job(job, who)
        assert dict(shown.spec.env) == {"HF_TOKEN": REDACTED, "SEED": REDACTED}
        assert list(shown.spec.command) == ["python", "train.py", "--lr", "0.1"]
        assert dict(shown.spec.labels) == {"team": "nlp"}
        assert (shown.state, shown.reason, shown.runs[0].node) == (job.state, "running", "node-2")
    # The job given was not changed.
    assert job.spec.env["HF_TOKEN"] == "hf_abc"


@given(
    env=st.dictionaries(
        st.from_regex(r"[A-Z_][A-Z0-9_]{0,12}", fullmatch=True), st.text(max_size=8), max_size=40
    )
)
def test_no_env_value_is_left_in_the_clear_whatever_the_names(env: dict[str, str]) -> None:
    """Every value is redacted, however many and in whatever order the map holds them
    (a bug redacted while iterating the map and left some in the clear)."""
    job = types_pb2.Job(id="j1", user="alice", spec=types_pb2.JobSpec(command=["x"], env=env))

    shown = visible_job(job, BOB)

    assert dict(shown.spec.env) == dict.fromkeys(env, REDACTED)


def test_the_owner_and_admins_get_the_job_as_it_is() -> None:
    job = alices_job()
    assert visible_job(job, ALICE) is job
    assert visible_job(job, ADMIN) is job
    assert visible_job(job, NODE) is job


def test_secret_values_are_shown_to_nobody_only_their_names() -> None:
    job = alices_job(secrets={"API_KEY": "sk_live", "DB_PASS": "pw"})
    for who in (ALICE, ADMIN, NODE, BOB, VIEWER):
        shown = visible_job(job, who)
        assert not shown.spec.secrets
        assert list(shown.spec.secret_names) == ["API_KEY", "DB_PASS"]
        assert b"sk_live" not in shown.SerializeToString()
    assert visible_job(job, ALICE).spec.env["HF_TOKEN"] == "hf_abc"
    assert visible_job(job, BOB).spec.env["HF_TOKEN"] == REDACTED


def test_only_the_owner_admins_and_nodes_read_the_output() -> None:
    job = alices_job()
    for who in (ALICE, ADMIN, NODE):
        check_may_read_output(who, job)
    for who in (BOB, VIEWER):
        with pytest.raises(PermissionDeniedError, match="only they and admins may read its logs"):
            check_may_read_output(who, job)
