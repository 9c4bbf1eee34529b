"""kill -9 during writes: every acknowledged write survives and the file stays sound.

A process killed by SIGKILL loses nothing the kernel already has, so this checks the
store's own part: a write is acknowledged only after its commit, and a commit cut off
midway leaves a file SQLite recovers cleanly. (Power loss additionally relies on
synchronous=FULL fsyncing each commit, which a test cannot pull the plug on.)
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from murmur import storage
from murmur.storage import Store

_WRITER = Path(__file__).with_name("audit_writer.py")
_REPO_ROOT = Path(storage.__file__).resolve().parent.parent
_ROUNDS = 4
_LINE_TIMEOUT_S = 20.0  # a safety net for a wedged child, not a performance assertion


async def _run_writer_and_kill(path: Path, rng: random.Random) -> list[int]:
    """Start the writer, kill -9 it at a random moment, return every id it acknowledged."""
    environment = {**os.environ, "PYTHONPATH": str(_REPO_ROOT)}
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        str(_WRITER),
        str(path),
        stdout=asyncio.subprocess.PIPE,
        env=environment,
    )
    assert writer.stdout is not None
    acknowledged: list[int] = []
    try:
        for _ in range(rng.randint(5, 60)):
            line = await asyncio.wait_for(writer.stdout.readline(), _LINE_TIMEOUT_S)
            assert line, f"writer exited early with {await writer.wait()}"
            acknowledged.append(int(line))
        # Let it keep writing a little more so the kill lands mid-transaction at a
        # random point rather than just after a flush we observed.
        await asyncio.sleep(rng.uniform(0, 0.02))
    finally:
        writer.send_signal(signal.SIGKILL)
        # Lines written before the kill are acknowledged writes too.
        rest = await writer.stdout.read()
        await writer.wait()
    acknowledged.extend(int(line) for line in rest.split())
    assert writer.returncode == -signal.SIGKILL
    return acknowledged


def _integrity(path: Path) -> str:
    with closing(sqlite3.connect(path)) as raw:
        return str(raw.execute("PRAGMA integrity_check").fetchone()[0])


async def test_acknowledged_audit_records_survive_kill_9(store_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    acknowledged: list[int] = []
    for round_number in range(_ROUNDS):
        acknowledged += await _run_writer_and_kill(store_path, rng)
        async with await Store.open(store_path) as store:
            stored = await store.list_audit(limit=1_000_000)
        stored_ids = {record.id for record in stored}
        missing = sorted(set(acknowledged) - stored_ids)
        context = f"seed={seed} round={round_number}"
        assert not missing, f"acknowledged but lost: {missing[:10]} ({context})"
        # Ids are contiguous: nothing in the middle was lost or half-written either.
        assert sorted(stored_ids) == list(range(1, len(stored_ids) + 1)), context
        assert _integrity(store_path) == "ok", context
