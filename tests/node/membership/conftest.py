"""Fixtures of the membership tests: a lab CA and gossip nodes made from it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from murmur.certs import CertificateAuthority
from tests.node.membership.gossip_cluster import GossipLab


@pytest.fixture
def lab_ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "lab-ca")


@pytest.fixture
async def gossip_lab(lab_ca: CertificateAuthority) -> AsyncIterator[GossipLab]:
    lab = GossipLab(lab_ca)
    try:
        yield lab
    finally:
        await lab.close()
