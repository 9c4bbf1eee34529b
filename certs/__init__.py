"""The lab CA, certificates, identity bundles and join tokens.

Every node and user of a Murmur cluster holds a certificate from the lab CA: the
subject's CN is the name, its OU the role. Nodes verify each other and clients by these
certificates alone (mutual TLS), so there is no central server to ask. New nodes join
with a token that pins the CA's fingerprint and carries a one-time secret.
"""

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
    CertificateIdentity,
    IdentityBundle,
    certificate_fingerprint,
    check_validity,
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
