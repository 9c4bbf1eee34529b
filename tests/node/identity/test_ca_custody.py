"""The CA key handed to a new voter: only this cluster's CA, kept encrypted."""

from __future__ import annotations

from pathlib import Path

import pytest

from murmur.certs import CertificateAuthority, CertificateError
from murmur.node.identity.ca_custody import CaCustody, ca_passphrase, load_ca

PASSPHRASE = b"s3cret phrase"


def custody(
    tmp_path: Path, cluster: CertificateAuthority, offered: CertificateAuthority
) -> tuple[CaCustody, list[CertificateAuthority]]:
    adopted: list[CertificateAuthority] = []

    async def fetch(address: str) -> tuple[bytes, bytes]:
        return offered.private_key_pem(), offered.certificate_pem

    async def adopt(ca: CertificateAuthority) -> None:
        adopted.append(ca)

    return (
        CaCustody(
            ca_dir=tmp_path / "voter" / "ca",
            ca_fingerprint=lambda: cluster.fingerprint,
            holds=lambda: bool(adopted),
            is_voter=lambda: True,
            holders=lambda: ["10.0.0.1:7070"],
            fetch=fetch,
            adopt=adopt,
            passphrase=PASSPHRASE,
            interval=0.1,
        ),
        adopted,
    )


async def test_a_voter_takes_its_clusters_key_and_keeps_it_encrypted(tmp_path: Path) -> None:
    cluster = CertificateAuthority.create(tmp_path / "first")
    keeper, adopted = custody(tmp_path, cluster, cluster)
    assert await keeper.acquire_once()
    assert [ca.fingerprint for ca in adopted] == [cluster.fingerprint]
    assert CertificateAuthority.key_is_encrypted(tmp_path / "voter" / "ca")
    assert load_ca(tmp_path / "voter" / "ca", PASSPHRASE) is not None


async def test_another_ca_is_refused(tmp_path: Path) -> None:
    cluster = CertificateAuthority.create(tmp_path / "first")
    impostor = CertificateAuthority.create(tmp_path / "impostor")
    keeper, adopted = custody(tmp_path, cluster, impostor)
    assert not await keeper.acquire_once()
    assert not adopted
    assert not (tmp_path / "voter" / "ca" / "ca.key").exists()


def test_a_key_in_the_clear_is_encrypted_once_a_passphrase_is_set(tmp_path: Path) -> None:
    CertificateAuthority.create(tmp_path / "ca")
    assert load_ca(tmp_path / "ca", PASSPHRASE) is not None
    assert CertificateAuthority.key_is_encrypted(tmp_path / "ca")
    with pytest.raises(CertificateError, match="MURMUR_CA_PASSPHRASE"):
        load_ca(tmp_path / "ca", None)
    assert load_ca(tmp_path / "nothing", None) is None


def test_the_passphrase_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert ca_passphrase(None, {}) is None
    assert ca_passphrase(tmp_path / "phrase", {"MURMUR_CA_PASSPHRASE": "abc"}) == b"abc"
    (tmp_path / "phrase").write_text("from file\n")
    assert ca_passphrase(tmp_path / "phrase", {}) == b"from file"
    with pytest.raises(CertificateError, match="cannot read"):
        ca_passphrase(tmp_path / "missing", {})
