"""Errors raised by the certs package.

Every error is a `CertificateError`, so a caller that only wants to report "the
certificate setup is broken" catches one class. The messages are one line, name the
file, host or value involved, and say what to do when there is something to do.

    CertificateError
    ├── InvalidNameError              a user or node name breaks the naming rule
    ├── CertificateFileError          a key or certificate file cannot be read or written
    ├── CAExistsError                 `ca init` would overwrite an existing lab CA
    ├── CANotFoundError               no lab CA in the directory
    ├── CsrError                      a certificate signing request is garbled, forged,
    │                                 or uses a key type we do not accept
    ├── IdentityError                 a certificate lacks the name or role we need
    ├── IdentityFileError             an identity bundle file is missing or broken
    ├── CertificateExpiredError       a certificate is past its not-after time
    ├── CertificateNotYetValidError   a certificate is before its not-before time
    ├── TokenFormatError              a string is not a well-formed join token
    ├── CaPinMismatchError            the join listener does not present the pinned CA
    └── JoinUnreachableError          the join listener cannot be reached over TLS
"""

from __future__ import annotations


class CertificateError(Exception):
    """Base class of every error raised by the certs package."""


class InvalidNameError(CertificateError, ValueError):
    """A user or node name, or a node address, is not acceptable in a certificate."""


class CertificateFileError(CertificateError):
    """A key or certificate file cannot be read, parsed or written."""


class CAExistsError(CertificateError):
    """Creating a lab CA would overwrite one that already exists."""


class CANotFoundError(CertificateError):
    """The directory holds no lab CA."""


class CsrError(CertificateError):
    """A certificate signing request is garbled, badly signed, or uses a refused key."""


class IdentityError(CertificateError):
    """A certificate does not carry a usable name (CN) and role (OU)."""


class IdentityFileError(CertificateError):
    """An identity bundle file is missing, incomplete, corrupt or inconsistent."""


class CertificateExpiredError(CertificateError):
    """A certificate's validity period has ended."""


class CertificateNotYetValidError(CertificateError):
    """A certificate's validity period has not started (often a wrong clock)."""


class TokenFormatError(CertificateError, ValueError):
    """A string is not a well-formed murmur join token."""


class CaPinMismatchError(CertificateError):
    """The join listener does not present the CA whose fingerprint the token pins."""


class JoinUnreachableError(CertificateError):
    """The join listener could not be reached or the TLS handshake failed."""
