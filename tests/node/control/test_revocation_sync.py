"""RevocationSync without a network: a voter takes its log's revocations, keeps them
in its store, and a restarted node enforces them before it hears from anyone."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from murmur.node.control.queue.commands import RevokeCertificate
from murmur.node.control.revocation_sync import (
    RevocationSync,
    revocation_from_message,
    revocation_message,
)
from murmur.node.deny_list import DenyList, Revocation
from murmur.storage import Store
from tests.node.control.queue.builders import Log


def _unreachable(address: str) -> Any:
    raise AssertionError("no peer is asked without gossip")


async def test_a_voter_takes_its_logs_revocations_and_keeps_them(tmp_path: Path) -> None:
    log = Log()
    changes: list[int] = []
    deny = DenyList()
    async with await Store.open(tmp_path / "store.db") as store:
        sync = RevocationSync(
            deny_list=deny,
            store=store,
            control=log.state,
            membership=None,
            cluster_stub=_unreachable,
            on_change=lambda: changes.append(deny.revision),
        )
        await sync.sync_once()
        assert changes == []
        log.apply(RevokeCertificate("alice", "", "left", "admin", 10))
        log.apply(RevokeCertificate("", "ab12", "", "admin", 11))
        await sync.sync_once()
        await sync.sync_once()
        assert changes == [2]
        assert [r.target for r in deny.entries()] == ["alice", "serial:ab12"]

    restarted = DenyList()
    async with await Store.open(tmp_path / "store.db") as store:
        sync = RevocationSync(
            deny_list=restarted,
            store=store,
            control=None,
            membership=None,
            cluster_stub=_unreachable,
        )
        await sync.load()
    assert restarted.entries() == deny.entries()
    assert restarted.revision == 2


async def test_an_applied_entry_wakes_the_sync_and_idle_it_sleeps(tmp_path: Path) -> None:
    """Event-driven: a woken sync takes the new revocation at once; without a wake-up
    it looks again only after its (long, here) interval."""
    log = Log()
    deny = DenyList()
    learnt = asyncio.Event()
    async with await Store.open(tmp_path / "store.db") as store:
        sync = RevocationSync(
            deny_list=deny,
            store=store,
            control=log.state,
            membership=None,
            cluster_stub=_unreachable,
            on_change=learnt.set,
            interval=3600,
        )
        running = asyncio.create_task(sync.run())
        try:
            await asyncio.sleep(0.05)
            log.apply(RevokeCertificate("alice", "", "left", "admin", 10))
            await asyncio.sleep(0.2)
            assert not learnt.is_set(), "an idle sync looked without being woken"
            sync.wake()
            await asyncio.wait_for(learnt.wait(), 5)
            assert deny.revision == 1
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


def test_a_revocation_survives_its_wire_message() -> None:
    revocation = Revocation(7, "alice", "", 1_700_000_000_123_456, "admin", "left")
    assert revocation_from_message(revocation_message(revocation)) == revocation
