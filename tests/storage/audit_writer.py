"""Helper process for the kill -9 test: append audit records until killed.

Usage: python audit_writer.py STORE_PATH

Prints the id of each audit record on its own line, flushed, only after ``append_audit``
returned, i.e. after the commit was acknowledged. Stops by itself after a bound, in
case the test that should kill it does not.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from murmur.storage import AuditEntry, Store

_MAX_WRITES = 20_000


async def _append_until_killed(path: Path) -> None:
    async with await Store.open(path) as store:
        for number in range(_MAX_WRITES):
            entry = AuditEntry(
                time=datetime.now(UTC),
                user="crash-test",
                role="admin",
                action="test.write",
                target=f"write-{number}",
                result="ok",
                detail="x" * (number % 300),  # vary record sizes so pages split
            )
            record = await store.append_audit(entry)
            sys.stdout.write(f"{record.id}\n")
            sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(_append_until_killed(Path(sys.argv[1])))
