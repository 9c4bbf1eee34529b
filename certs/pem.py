"""The PEM blocks of an identity bundle, split and checked for order without parsing
them (no cryptography): what `IdentityBundle.parse` checks first, and all a client
needs of a bundle whose content already passed the full checks (`murmur._config`)."""

from __future__ import annotations

import re

from murmur.certs.errors import IdentityFileError

__all__ = ["pem_blocks", "split_blocks", "with_final_newline"]

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL)
_PRIVATE_KEY_LABELS = {b"PRIVATE KEY", b"EC PRIVATE KEY"}
_CERTIFICATE_LABEL = b"CERTIFICATE"


def pem_blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(label, block) for each PEM block in ``data``, each ending in a newline."""
    return [
        (match.group(1), with_final_newline(match.group(0).rstrip(b"\r\n")))
        for match in _PEM_BLOCK.finditer(data)
    ]


def split_blocks(data: bytes, source: str) -> tuple[bytes, bytes, list[bytes]]:
    """The key block, the certificate block and the blocks after them, of a bundle.

    Raises:
        IdentityFileError: text outside the blocks (but a leading comment header), a
            block missing, out of order, or an encrypted key.
    """
    blocks: list[tuple[bytes, bytes]] = []
    position = 0
    for match in _PEM_BLOCK.finditer(data):
        between = data[position : match.start()]
        if not _is_only_comments(between, allow_comments=not blocks):
            raise IdentityFileError(
                f"identity file {source}: unexpected text outside the PEM blocks"
            )
        blocks.append((match.group(1), with_final_newline(match.group(0).rstrip(b"\r\n"))))
        position = match.end()
    if not _is_only_comments(data[position:], allow_comments=not blocks):
        raise IdentityFileError(
            f"identity file {source}: unexpected text after the PEM blocks "
            "(a truncated or corrupt block?)"
        )
    expected = (
        ("private key", _PRIVATE_KEY_LABELS),
        ("certificate", {_CERTIFICATE_LABEL}),
        ("CA certificate", {_CERTIFICATE_LABEL}),
    )
    for index, (what, labels) in enumerate(expected):
        if index >= len(blocks):
            raise IdentityFileError(f"identity file {source}: missing the {what} block")
        label = blocks[index][0]
        if label == b"ENCRYPTED PRIVATE KEY":
            raise IdentityFileError(
                f"identity file {source}: the private key is encrypted; Murmur reads "
                "unencrypted keys and protects them by file mode 0600"
            )
        if label not in labels:
            raise IdentityFileError(
                f"identity file {source}: expected the {what} as block {index + 1}, "
                f"found {label.decode('ascii')!r}"
            )
    for index, (label, _) in enumerate(blocks[len(expected) :], start=len(expected)):
        if label != _CERTIFICATE_LABEL:
            raise IdentityFileError(
                f"identity file {source}: expected a certificate as block {index + 1}, "
                f"found {label.decode('ascii')!r}"
            )
    return blocks[0][1], blocks[1][1], [block for _, block in blocks[2:]]


def _is_only_comments(text: bytes, *, allow_comments: bool) -> bool:
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if allow_comments and (stripped == b"#" or line.startswith(b"# ")):
            continue
        return False
    return True


def with_final_newline(block: bytes) -> bytes:
    return block if block.endswith(b"\n") else block + b"\n"
