"""The signed offline install bundle: what ``murmur bundle keygen|create|verify`` do.

A bundle is one directory (carried as is, or as a tarball) that installs Murmur on a
server that never sees a network::

    BUNDLE/
    ├── install.sh              verifies, installs under /opt/murmur/<version>/
    ├── manifest.json           version, architectures, glibc floor, images, wheels
    ├── linux-x86_64/murmur/    the onedir build for that architecture (one per arch)
    ├── wheels/                 the client library and its dependencies, as wheels
    ├── images/                 job images, as `docker save` tarballs (optional)
    ├── SHA256SUMS              every other file's SHA-256, sorted by path
    └── SHA256SUMS.sig          Ed25519 signature of SHA256SUMS (the release key)

Verification fails closed: the signature first, then every file against its hash;
a changed, missing or extra file, a link, or a file the list does not name stops it.
Rooms: :mod:`.signing` (keys, signatures), :mod:`.checksums` (hashes, the list),
:mod:`.manifest`, :mod:`.glibc` (what a build needs of its host), :mod:`.create`,
:mod:`.verify`. Nothing here opens a network connection; :mod:`.create` runs pip
(the wheelhouse) and docker (images) on the connected machine that makes a bundle.
"""

from murmur.bundle.errors import BundleError

__all__ = ["BundleError"]
