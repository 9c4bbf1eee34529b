"""The lab CA, certificates, identity bundles and join tokens.

Every node and user of a Murmur cluster holds a certificate from the lab CA: the
subject's CN is the name, its OU the role. Nodes verify each other and clients by these
certificates alone (mutual TLS), so there is no central server to ask. New nodes join
with a token that pins the CA's fingerprint and carries a one-time secret.

The names below load on first use (PEP 562), each with its own module only: a client
needs the identity's facts and the errors, not cryptography, which the CA, the key
and certificate parsing and the token checks import (a fifth of a CLI command's start).
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: this package is imported where typing is not
if TYPE_CHECKING:
    from typing import Any

    from murmur.certs.ca import CLOCK_SKEW_ALLOWANCE, CertificateAuthority
    from murmur.certs.errors import (
        CAExistsError,
        CANotFoundError,
        CaPinMismatchError,
        CertificateError,
        CertificateExpiredError,
        CertificateFileError,
        CertificateNotYetValidError,
        CsrError,
        IdentityError,
        IdentityFileError,
        InvalidNameError,
        JoinUnreachableError,
        TokenFormatError,
    )
    from murmur.certs.files import create_private_directory, write_private_file, write_public_file
    from murmur.certs.identity import (
        IdentityBundle,
        certificate_fingerprint,
        generate_private_key,
        identity_from_certificate,
        is_ca_certificate,
        load_certificate,
        make_csr,
        private_key_pem,
    )
    from murmur.certs.pinning import fetch_pinned_ca_certificate, server_certificate_chain
    from murmur.certs.roles import Role, validate_name
    from murmur.certs.san import NODE_TLS_NAME
    from murmur.certs.tokens import JoinToken, hash_secret, new_join_token, secret_matches
    from murmur.certs.validity import CertificateIdentity, check_validity

_LAZY: dict[str, str] = {
    "CAExistsError": "murmur.certs.errors",
    "CANotFoundError": "murmur.certs.errors",
    "CLOCK_SKEW_ALLOWANCE": "murmur.certs.ca",
    "CaPinMismatchError": "murmur.certs.errors",
    "CertificateAuthority": "murmur.certs.ca",
    "CertificateError": "murmur.certs.errors",
    "CertificateExpiredError": "murmur.certs.errors",
    "CertificateFileError": "murmur.certs.errors",
    "CertificateIdentity": "murmur.certs.validity",
    "CertificateNotYetValidError": "murmur.certs.errors",
    "CsrError": "murmur.certs.errors",
    "IdentityBundle": "murmur.certs.identity",
    "IdentityError": "murmur.certs.errors",
    "IdentityFileError": "murmur.certs.errors",
    "InvalidNameError": "murmur.certs.errors",
    "JoinToken": "murmur.certs.tokens",
    "JoinUnreachableError": "murmur.certs.errors",
    "NODE_TLS_NAME": "murmur.certs.san",
    "Role": "murmur.certs.roles",
    "TokenFormatError": "murmur.certs.errors",
    "certificate_fingerprint": "murmur.certs.identity",
    "check_validity": "murmur.certs.validity",
    "create_private_directory": "murmur.certs.files",
    "fetch_pinned_ca_certificate": "murmur.certs.pinning",
    "generate_private_key": "murmur.certs.identity",
    "hash_secret": "murmur.certs.tokens",
    "identity_from_certificate": "murmur.certs.identity",
    "is_ca_certificate": "murmur.certs.identity",
    "load_certificate": "murmur.certs.identity",
    "make_csr": "murmur.certs.identity",
    "new_join_token": "murmur.certs.tokens",
    "private_key_pem": "murmur.certs.identity",
    "secret_matches": "murmur.certs.tokens",
    "server_certificate_chain": "murmur.certs.pinning",
    "validate_name": "murmur.certs.roles",
    "write_private_file": "murmur.certs.files",
    "write_public_file": "murmur.certs.files",
}
"""Each public name and the module it comes from."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'murmur.certs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup finds it without us
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CLOCK_SKEW_ALLOWANCE",
    "NODE_TLS_NAME",
    "CAExistsError",
    "CANotFoundError",
    "CaPinMismatchError",
    "CertificateAuthority",
    "CertificateError",
    "CertificateExpiredError",
    "CertificateFileError",
    "CertificateIdentity",
    "CertificateNotYetValidError",
    "CsrError",
    "IdentityBundle",
    "IdentityError",
    "IdentityFileError",
    "InvalidNameError",
    "JoinToken",
    "JoinUnreachableError",
    "Role",
    "TokenFormatError",
    "certificate_fingerprint",
    "check_validity",
    "create_private_directory",
    "fetch_pinned_ca_certificate",
    "generate_private_key",
    "hash_secret",
    "identity_from_certificate",
    "is_ca_certificate",
    "load_certificate",
    "make_csr",
    "new_join_token",
    "private_key_pem",
    "secret_matches",
    "server_certificate_chain",
    "validate_name",
    "write_private_file",
    "write_public_file",
]
