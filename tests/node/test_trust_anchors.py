"""What a node trusts and presents, from its own anchors and the rotation steps."""

from __future__ import annotations

from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from murmur.certs import CertificateAuthority
from murmur.node.trust_anchors import CaChange, CaChanges, rotation_in_progress, trust_of

FIRST = CertificateAuthority.generate(x509.Name.from_rfc4514_string("CN=Murmur lab CA"))
SECOND = FIRST.successor()
CROSS = FIRST.cross_sign(SECOND)


def added(index: int, ca: CertificateAuthority = SECOND, cross: bytes = CROSS) -> CaChange:
    return CaChange(index, ca.fingerprint, False, ca.certificate_pem, cross, "admin", index)


def retired(index: int, ca: CertificateAuthority = FIRST) -> CaChange:
    return CaChange(index, ca.fingerprint, True, b"", b"", "admin", index)


def fingerprints(pem: bytes) -> list[str]:
    from murmur.certs import certificate_fingerprint

    return [certificate_fingerprint(c) for c in x509.load_pem_x509_certificates(pem)]


def test_without_steps_the_own_anchor_signs() -> None:
    trust = trust_of([FIRST.certificate], [])
    assert trust.signing_fingerprint == FIRST.fingerprint
    assert fingerprints(trust.anchors_pem) == [FIRST.fingerprint]
    assert not trust.overlap
    assert trust.intermediate_pem == b""


def test_the_overlap_trusts_both_and_presents_the_cross_certificate() -> None:
    trust = trust_of([FIRST.certificate], [added(4)])
    assert trust.signing_fingerprint == SECOND.fingerprint
    assert fingerprints(trust.anchors_pem) == [SECOND.fingerprint, FIRST.fingerprint]
    assert trust.overlap
    assert trust.intermediate_pem == CROSS


def test_after_the_finish_only_the_new_ca_is_trusted() -> None:
    trust = trust_of([FIRST.certificate], [retired(9), added(4)])
    assert fingerprints(trust.anchors_pem) == [SECOND.fingerprint]
    assert not trust.overlap
    assert trust.intermediate_pem == b""
    # A node that joined after the rotation starts from the new CA alone: the same.
    assert trust_of([SECOND.certificate], [added(4), retired(9)]) == trust


@given(st.permutations([added(4), retired(9)]), st.integers(min_value=1, max_value=3))
def test_changes_merge_the_same_whatever_way_they_arrive(
    steps: list[CaChange], repeats: int
) -> None:
    changes = CaChanges()
    heard: list[list[CaChange]] = []
    changes.add_listener(heard.append)
    for _ in range(repeats):
        for step in steps:
            changes.merge([step])
    assert changes.entries() == [added(4), retired(9)]
    assert changes.revision == 9
    assert sum(len(batch) for batch in heard) == 2


def test_a_rotation_is_under_way_until_a_retirement_follows_it() -> None:
    assert rotation_in_progress([]) is None
    assert rotation_in_progress([added(4)]) == added(4)
    assert rotation_in_progress([added(4), retired(9)]) is None


def test_a_forged_addition_or_a_retirement_of_the_signing_ca_is_ignored() -> None:
    intruder = CertificateAuthority.generate(x509.Name.from_rfc4514_string("CN=Murmur lab CA"))
    self_crossed = intruder.cross_sign(intruder)  # not signed by the CA that signs
    forged = CaChange(
        3, intruder.fingerprint, False, intruder.certificate_pem, self_crossed, "x", 3
    )
    trust = trust_of([FIRST.certificate], [forged, retired(5, FIRST)])
    assert trust.signing_fingerprint == FIRST.fingerprint
    assert fingerprints(trust.anchors_pem) == [FIRST.fingerprint]
    assert trust.ignored == (3, 5)
    # The genuine step still counts after the forged ones.
    trust = trust_of([FIRST.certificate], [forged, retired(5, FIRST), added(7)])
    assert trust.signing_fingerprint == SECOND.fingerprint
