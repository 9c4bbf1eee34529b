"""The certificate deny list's table (``revocations``) in a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from murmur.storage import RevocationRecord, Store


def revocation(index: int, *, name: str = "", serial: str = "") -> RevocationRecord:
    return RevocationRecord(
        index=index,
        name=name,
        serial=serial,
        revoked_at_us=1_700_000_000_000_000 + index,
        revoked_by="admin",
        reason=f"reason {index}",
    )


async def test_revocations_survive_a_reopen_in_log_order(store_path: Path) -> None:
    records = [revocation(7, name="alice"), revocation(3, serial="ab12"), revocation(9, name="n3")]
    async with await Store.open(store_path) as store:
        assert await store.list_revocations() == []
        await store.add_revocations(records)
        await store.add_revocations([])
    async with await Store.open(store_path) as store:
        assert await store.list_revocations() == sorted(records, key=lambda r: r.index)


async def test_a_revocation_kept_twice_stays_as_first_kept(store: Store) -> None:
    first = revocation(4, name="alice")
    await store.add_revocations([first])
    await store.add_revocations([revocation(4, name="bob"), revocation(5, name="carol")])
    assert [r.name for r in await store.list_revocations()] == ["alice", "carol"]
