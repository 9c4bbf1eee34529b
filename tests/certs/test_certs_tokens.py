"""Join tokens: encoding, strict decoding, and secret hashing."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.certs import JoinToken, TokenFormatError, hash_secret, new_join_token, secret_matches
from murmur.certs.tokens import TOKEN_PREFIX

FINGERPRINT = "ab" * 32

fingerprints = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
tokens = st.builds(
    JoinToken,
    ca_fingerprint=fingerprints,
    token_id=st.text(alphabet="0123456789abcdef", min_size=8, max_size=64),
    secret=st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        min_size=43,
        max_size=128,
    ),
    join_port=st.integers(min_value=1, max_value=65535),
)


def encode_document(document: object) -> str:
    payload = json.dumps(document).encode()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def test_new_token_is_random_and_decodable() -> None:
    first = new_join_token(ca_fingerprint=FINGERPRINT.upper(), join_port=7443)
    second = new_join_token(ca_fingerprint=FINGERPRINT, join_port=7443)
    assert first.ca_fingerprint == FINGERPRINT
    assert first.join_port == 7443
    assert len(first.token_id) == 12
    assert len(first.secret) >= 43  # 32 random bytes in base64url
    assert first.token_id != second.token_id
    assert first.secret != second.secret
    assert JoinToken.decode(first.encode()) == first


def test_wire_form() -> None:
    token = JoinToken(
        ca_fingerprint=FINGERPRINT, token_id="0123456789ab", secret="s" * 43, join_port=1
    )
    text = token.encode()
    assert text.startswith("murmur1.")
    assert "=" not in text
    body = text.removeprefix("murmur1.")
    document = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert document == {"fp": FINGERPRINT, "id": "0123456789ab", "s": "s" * 43, "jp": 1}


def test_repr_hides_the_secret() -> None:
    token = new_join_token(ca_fingerprint=FINGERPRINT, join_port=7443)
    assert token.secret not in repr(token)
    assert token.token_id in repr(token)


def test_surrounding_whitespace_is_ignored() -> None:
    token = new_join_token(ca_fingerprint=FINGERPRINT, join_port=7443)
    assert JoinToken.decode(f"  {token.encode()}\n") == token


@settings(max_examples=200)
@given(tokens)
def test_encode_decode_round_trip(token: JoinToken) -> None:
    assert JoinToken.decode(token.encode()) == token


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "does not start with 'murmur1.'"),
        ("murmur2.e30", "does not start with 'murmur1.'"),
        ("murmur1.", "not base64url"),
        ("murmur1.e30=", "not base64url"),
        ("murmur1.!!!!", "not base64url"),
        ("murmur1.A", "not base64url JSON"),
        ("murmur1." + "A" * 2000, "longer than"),
        (encode_document([1, 2]), "exactly the fields"),
        (encode_document({"fp": FINGERPRINT, "id": "0123456789ab", "s": "s" * 43}), "exactly"),
        (
            encode_document(
                {"fp": FINGERPRINT, "id": "0123456789ab", "s": "s" * 43, "jp": 1, "x": 0}
            ),
            "exactly the fields",
        ),
        (
            encode_document({"fp": FINGERPRINT, "id": "0123456789ab", "s": "s" * 43, "jp": "7443"}),
            "wrong type",
        ),
        (
            encode_document({"fp": FINGERPRINT, "id": "0123456789ab", "s": "s" * 43, "jp": True}),
            "wrong type",
        ),
        (
            encode_document({"fp": "ab" * 31, "id": "0123456789ab", "s": "s" * 43, "jp": 1}),
            "fingerprint is not 64 lowercase hex",
        ),
        (
            encode_document({"fp": "AB" * 32, "id": "0123456789ab", "s": "s" * 43, "jp": 1}),
            "fingerprint is not 64 lowercase hex",
        ),
        (
            encode_document({"fp": FINGERPRINT, "id": "xyz", "s": "s" * 43, "jp": 1}),
            "token id",
        ),
        (
            encode_document({"fp": FINGERPRINT, "id": "0123456789ab", "s": "short", "jp": 1}),
            "secret",
        ),
        (
            encode_document({"fp": FINGERPRINT, "id": "0123456789ab", "s": "s" * 43, "jp": 0}),
            "join port 0 is not 1-65535",
        ),
        (
            encode_document({"fp": FINGERPRINT, "id": "0123456789ab", "s": "s" * 43, "jp": 65536}),
            "join port 65536",
        ),
        (encode_document({"nested": [[[[[[[[[[]]]]]]]]]]}), "exactly the fields"),
    ],
)
def test_malformed_tokens_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(TokenFormatError, match=f"^not a murmur join token: .*{complaint}"):
        JoinToken.decode(text)


def test_deeply_nested_json_is_refused_cleanly() -> None:
    text = TOKEN_PREFIX + base64.urlsafe_b64encode(b"[" * 760).rstrip(b"=").decode()
    with pytest.raises(TokenFormatError):
        JoinToken.decode(text)


@settings(max_examples=500)
@given(st.text())
def test_arbitrary_text_raises_only_token_format_error(text: str) -> None:
    with contextlib.suppress(TokenFormatError):
        JoinToken.decode(text)


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_arbitrary_payload_after_the_prefix_raises_only_token_format_error(payload: bytes) -> None:
    text = TOKEN_PREFIX + base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    with contextlib.suppress(TokenFormatError):
        JoinToken.decode(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=300)
@given(
    st.fixed_dictionaries(
        {"fp": json_values, "id": json_values, "s": json_values, "jp": json_values}
    )
    | json_values
)
def test_arbitrary_json_after_the_prefix_raises_only_token_format_error(document: object) -> None:
    with contextlib.suppress(TokenFormatError):
        JoinToken.decode(encode_document(document))


def test_hash_is_sha256_hex() -> None:
    assert hash_secret("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@given(st.text(), st.text())
def test_secret_matches_only_its_own_hash(secret: str, other: str) -> None:
    stored = hash_secret(secret)
    assert secret_matches(secret, stored)
    assert secret_matches(other, stored) == (other == secret)
    assert not secret_matches(secret, stored.upper() if stored.upper() != stored else "")
    assert not secret_matches(secret, secret if secret != stored else "")
