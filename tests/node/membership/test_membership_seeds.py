"""The seed book: where a node finds its cluster again at the next start."""

from __future__ import annotations

from pathlib import Path

from murmur.node.membership.seeds import MAX_REMEMBERED_PEERS, SeedBook
from murmur.storage import Store

OWN = "127.0.0.1:7070"


async def test_a_fresh_node_has_only_its_configured_seeds(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "murmur.db") as store:
        book = SeedBook(store, own_address=OWN)
        assert await book.seeds() == []
        assert await book.seeds(["10.0.0.1:7070", OWN, "10.0.0.1:7070"]) == ["10.0.0.1:7070"]


async def test_the_issuer_and_remembered_peers_outlive_a_restart(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "murmur.db") as store:
        book = SeedBook(store, own_address=OWN)
        await book.remember_issuer("127.0.0.2:7070")
        assert await book.remember(["127.0.0.3:7070", OWN, "127.0.0.4:7070"])
        assert not await book.remember(["127.0.0.4:7070", "127.0.0.3:7070"]), "unchanged"
        assert not await book.remember([]), "an empty view never erases the record"
    async with await Store.open(tmp_path / "murmur.db") as store:
        book = SeedBook(store, own_address=OWN)
        assert await book.seeds(["10.9.9.9:7070"]) == [
            "10.9.9.9:7070",
            "127.0.0.2:7070",
            "127.0.0.3:7070",
            "127.0.0.4:7070",
        ]


async def test_a_large_cluster_is_remembered_by_a_stable_sample(tmp_path: Path) -> None:
    peers = [f"10.0.{i // 200}.{i % 200}:7070" for i in range(300)]
    async with await Store.open(tmp_path / "murmur.db") as store:
        book = SeedBook(store, own_address=OWN)
        assert await book.remember(peers)
        first = await book.seeds()
        assert len(first) == MAX_REMEMBERED_PEERS
        assert set(first) <= set(peers)
        # The same cluster again changes nothing: no rewrite at every round.
        assert not await book.remember(list(reversed(peers)))
        # Peers that went away are replaced, the others kept.
        survivors = [p for p in peers if p not in first[:4]]
        assert await book.remember(survivors)
        second = await book.seeds()
        assert len(second) == MAX_REMEMBERED_PEERS
        assert set(first[4:]) <= set(second)


async def test_an_unreadable_record_is_forgotten_not_fatal(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "murmur.db") as store:
        await store.set_meta("membership-peers", "{not json")
        book = SeedBook(store, own_address=OWN)
        assert await book.seeds(["10.0.0.1:7070"]) == ["10.0.0.1:7070"]
