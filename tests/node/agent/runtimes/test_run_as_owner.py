"""A process run runs as its owner's Unix account: a real account, a real job.

Needs root (to create accounts and switch to them); skips elsewhere with the reason.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from murmur.node.agent.runtimes.accounts import AccountRefusedError
from murmur.node.agent.runtimes.base import (
    DatasetMount,
    LaunchSpec,
    RunAccount,
    RunExit,
    RunFiles,
)
from murmur.node.agent.runtimes.process import ProcessRuntime
from murmur.node.agent.runtimes.run_log import read_entries
from tests.support.run_processes import kill_everything_under
from tests.support.unix_accounts import reachable_directory, unix_account

SETTLE_SECONDS = 15.0

_run_numbers = itertools.count(1)


@pytest.fixture
def account() -> Iterator[RunAccount]:
    with unix_account() as created:
        yield created


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Reachable by the job's account, unlike pytest's own."""
    with reachable_directory() as path:
        yield path


@pytest.fixture
def runs_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "runs"
    yield directory
    kill_everything_under(directory)


@pytest.fixture
def runtime(runs_dir: Path) -> Iterator[ProcessRuntime]:
    runtime = ProcessRuntime(runs_dir=runs_dir, node_name="node-1")
    yield runtime
    runtime.close()


def spec_as(account: RunAccount, runs_dir: Path, script: str, **changes: Any) -> LaunchSpec:
    run_id = f"run-{next(_run_numbers)}"
    fields: dict[str, Any] = {
        "run_id": run_id,
        "job_id": f"job-{run_id}",
        "node_name": "node-1",
        "argv": ("/bin/sh", "-c", script),
        "shell": False,
        "env": {},
        "workdir": None,
        "gpu_indices": (),
        "cpus": None,
        "memory_bytes": None,
        "datasets": (),
        "files": RunFiles(runs_dir / run_id),
        "account": account,
    }
    fields.update(changes)
    return LaunchSpec(**fields)


async def run_to_end(runtime: ProcessRuntime, spec: LaunchSpec) -> RunExit:
    handle = await runtime.start(spec)
    return await asyncio.wait_for(runtime.wait(handle), SETTLE_SECONDS)


def output(spec: LaunchSpec, stream: str = "stdout") -> list[str]:
    return [entry.text for entry in read_entries(spec.files.log_dir) if entry.stream == stream]


async def test_the_job_runs_as_its_account_and_cannot_read_a_root_only_file(
    runtime: ProcessRuntime, runs_dir: Path, tmp_path: Path, account: RunAccount
) -> None:
    secret = tmp_path / "root-only"
    secret.write_text("for root's eyes\n")
    secret.chmod(0o600)
    spec = spec_as(
        account, runs_dir, f'id -u; id -g; id -G; echo "$HOME $USER"; cat {secret}; echo "cat: $?"'
    )

    assert await run_to_end(runtime, spec) == RunExit(0, "exited with code 0")

    uid, gid, groups, identity, status = output(spec)
    assert (int(uid), int(gid)) == (account.uid, account.gid)
    # No supplementary group of the root supervisor leaked into the job.
    assert groups.split() == [str(account.gid)]
    assert identity == f"{account.home} {account.name}"
    assert status == "cat: 1"
    assert any("Permission denied" in line for line in output(spec, "stderr"))
    assert "for root's eyes" not in "\n".join(output(spec) + output(spec, "stderr"))


async def test_the_scratch_dir_is_the_accounts_and_files_it_makes_are_too(
    runtime: ProcessRuntime, runs_dir: Path, account: RunAccount
) -> None:
    spec = spec_as(account, runs_dir, 'touch made; stat -c "%u %a" . made; pwd')

    assert await run_to_end(runtime, spec) == RunExit(0, "exited with code 0")

    directory, made, where = output(spec)
    assert directory == f"{account.uid} 700"
    assert made == f"{account.uid} 644"  # umask 022, not the daemon's 077
    assert where == str(runs_dir.parent.resolve() / "work" / spec.run_id)


async def test_a_workdir_the_account_cannot_enter_is_refused_before_anything_runs(
    runtime: ProcessRuntime, runs_dir: Path, tmp_path: Path, account: RunAccount
) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    spec = spec_as(account, runs_dir, "pwd", workdir=str(private))

    with pytest.raises(AccountRefusedError, match=f"working directory: .*lacks rx.*{private}"):
        await runtime.start(spec)

    assert not spec.files.directory.exists()


async def test_a_dataset_is_read_only_to_the_job_even_when_its_account_owns_it(
    runtime: ProcessRuntime, runs_dir: Path, tmp_path: Path, account: RunAccount
) -> None:
    dataset = tmp_path / "corpus"
    dataset.mkdir()
    (dataset / "part-0").write_text("tokens\n")
    for path in (dataset, dataset / "part-0"):
        os.chown(path, account.uid, account.gid)
    spec = spec_as(
        account,
        runs_dir,
        'cat "$MURMUR_DATASET_CORPUS/part-0"; echo x >> "$MURMUR_DATASET_CORPUS/part-0"; '
        'touch "$MURMUR_DATASET_CORPUS/new"; echo "wrote: $?"',
        datasets=(DatasetMount("corpus", dataset),),
    )

    assert await run_to_end(runtime, spec) == RunExit(0, "exited with code 0")

    assert output(spec) == ["tokens", "wrote: 1"]
    assert any("Read-only file system" in line for line in output(spec, "stderr"))
    assert (dataset / "part-0").read_text() == "tokens\n"
    assert not (dataset / "new").exists()
    # Only the job's own namespace is read-only: the node still writes there.
    (dataset / "new").write_text("the node may")


async def test_a_dataset_the_account_cannot_read_is_refused(
    runtime: ProcessRuntime, runs_dir: Path, tmp_path: Path, account: RunAccount
) -> None:
    dataset = tmp_path / "closed"
    dataset.mkdir(mode=0o700)
    spec = spec_as(account, runs_dir, "true", datasets=(DatasetMount("closed", dataset),))

    with pytest.raises(AccountRefusedError, match=f"dataset closed: .*{dataset}"):
        await runtime.start(spec)
