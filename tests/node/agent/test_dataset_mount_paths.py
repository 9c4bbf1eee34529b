"""A dataset is mounted only where it was registered: a directory swapped for a
symlink out of the data root after the add is not handed to a run."""

from __future__ import annotations

import shutil
from pathlib import Path

from murmur.node.agent.datasets import DatasetCatalog
from murmur.storage import Store


async def test_a_dataset_swapped_for_a_symlink_out_of_its_root_is_not_mountable(
    store: Store, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    (root / "imagenet").mkdir(parents=True)
    (root / "imagenet" / "a.bin").write_bytes(b"x")
    (root / "cifar").mkdir()
    (root / "cifar" / "b.bin").write_bytes(b"y")
    outside = tmp_path / "secrets"
    outside.mkdir()
    catalog = DatasetCatalog(store, (root,))
    await catalog.add(name="imagenet", path=str(root / "imagenet"), added_by="ada")
    await catalog.add(name="cifar", path=str(root / "cifar"), added_by="ada")
    assert set(catalog.paths()) == {"imagenet", "cifar"}

    shutil.rmtree(root / "imagenet")
    (root / "imagenet").symlink_to(outside)

    assert catalog.paths() == {"cifar": root / "cifar"}
    assert [r.name for r in catalog.records()] == ["cifar", "imagenet"]  # still listed
