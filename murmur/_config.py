"""How the client finds its node and proves who it is.

One place resolves the connection settings, in this order of precedence: explicit
arguments, then environment variables (`MURMUR_NODE`, `MURMUR_IDENTITY`), then the
client settings file `~/.murmur/client.toml`, then the defaults. The results are
frozen dataclasses, so a client's configuration cannot change under it.

A node setting may name several nodes of one cluster (`a:7070,b:7070`): the first is
called, the others are fallbacks when it cannot be reached. The CLI also remembers the
addresses of the nodes a cluster reported (`known-nodes.json` in the home), to fall
back on them the same way (`remembered_addresses`, `remember_addresses`).

Checking an identity file (key, certificate and CA belong together) takes
cryptography, whose import is a fifth of a CLI command's start. The CLI therefore
keeps a record, in the home, of the identity file contents that passed the checks,
keyed by the SHA-256 of the whole content (`checked_identities_path`): the same bytes
again skip the checks and the import; any other bytes, a changed or replaced file, are
checked in full. The record holds no key material, and what is presented and trusted
is always the file's own blocks.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from murmur._errors import ConfigError

# Each from its own light module, not cryptography's (see murmur/certs/__init__.py).
from murmur.certs import NODE_TLS_NAME, CertificateIdentity, IdentityFileError, Role
from murmur.certs.pem import pem_blocks, split_blocks

__all__ = [
    "DEFAULT_NODE_ADDRESS",
    "ConnectConfig",
    "RetryConfig",
    "TLSConfig",
    "checked_identities_path",
    "client_settings_path",
    "default_home",
    "known_nodes_path",
    "remember_addresses",
    "remembered_addresses",
    "resolve_connect_config",
    "validate_node_address",
]

DEFAULT_NODE_ADDRESS = "127.0.0.1:7070"
"""Where a node listens when nothing else is said: the first node of `murmur up`."""

_IDENTITY_FILE_NAME = "identity.pem"
_CLIENT_SETTINGS_FILE_NAME = "client.toml"
_KNOWN_NODES_FILE_NAME = "known-nodes.json"
_CHECKED_IDENTITIES_FILE_NAME = "checked-identities.json"
_MAX_CHECKED_IDENTITIES = 16
"""Identity contents remembered as checked: enough for the identities one user switches
between; the oldest is forgotten first."""
_MAX_REMEMBERED_ADDRESSES = 64
"""At most this many remembered addresses per cluster: enough to find one that answers."""

# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_PORT = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True)
class TLSConfig:
    """The mutual-TLS material a client presents and trusts."""

    key_pem: bytes = field(repr=False)
    """The client's private key, PEM. Kept out of `repr` so it never lands in a log."""
    certificate_pem: bytes = field(repr=False)
    """The client's certificate, PEM, issued by the lab CA."""
    ca_certificate_pem: bytes = field(repr=False)
    """The lab CA certificate: the only issuer whose node certificates are trusted."""
    server_name: str = NODE_TLS_NAME
    """The name checked in the node's certificate. Clients dial nodes by IP address, and
    every node certificate carries this one DNS name, so it stands in for the host."""
    identity: CertificateIdentity | None = None
    """Who `certificate_pem` says we are, when known; lets the client refuse an expired
    certificate with a clear message instead of a failed TLS handshake."""

    @classmethod
    def from_identity_file(cls, path: str | os.PathLike[str]) -> TLSConfig:
        """Reads an identity bundle (key, certificate and CA certificate in one file).

        Raises:
            ConfigError: The file is missing, unreadable or not a valid bundle.
        """
        from murmur.certs.identity import IdentityBundle  # imports cryptography

        try:
            bundle = IdentityBundle.read(Path(path).expanduser())
        except IdentityFileError as err:
            raise ConfigError(str(err)) from err
        return cls(
            key_pem=bundle.key_pem,
            certificate_pem=bundle.certificate_pem,
            ca_certificate_pem=bundle.ca_certificate_pem,
            identity=bundle.identity,
        )


@dataclass(frozen=True)
class RetryConfig:
    """How calls that are safe to repeat are retried when the node is unavailable.

    Only idempotent reads and job submissions (which carry an idempotency key) are
    retried, and only on UNAVAILABLE; the call's timeout bounds all attempts together.
    """

    max_attempts: int = 5
    """Attempts in all, the first included; 1 turns retrying off."""
    initial_backoff: float = 0.1
    """Seconds to wait before the second attempt; doubled after each further one."""
    max_backoff: float = 1.0
    """The longest wait between two attempts, in seconds."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ConfigError(
                "backoffs must satisfy 0 <= initial_backoff <= max_backoff, not "
                f"{self.initial_backoff} and {self.max_backoff}"
            )


@dataclass(frozen=True)
class ConnectConfig:
    """Everything an `AsyncClient` needs to talk to one node."""

    address: str
    """The node's client API as HOST:PORT; IPv6 hosts in brackets, as in `[::1]:7070`."""
    tls: TLSConfig
    """The identity the client presents and the CA it trusts."""
    timeout: float = 10.0
    """Seconds a unary call may take (retries included) when the call names no timeout."""
    keepalive_seconds: float = 30.0
    """Seconds between HTTP/2 pings while a call is open, so a dead node ends a watch
    stream instead of hanging it; 0 turns pings off."""
    retry: RetryConfig = field(default_factory=RetryConfig)
    """When and how calls are retried on UNAVAILABLE."""
    fallback_addresses: tuple[str, ...] = ()
    """Other nodes of the same cluster, as HOST:PORT, to call in this order when
    `address` cannot be reached (see `AsyncClient`); empty: no failover."""

    def __post_init__(self) -> None:
        # Stored without surrounding spaces, which gRPC would take as part of the host.
        object.__setattr__(self, "address", validate_node_address(self.address))
        fallbacks = (validate_node_address(a) for a in self.fallback_addresses)
        object.__setattr__(
            self,
            "fallback_addresses",
            tuple(a for a in dict.fromkeys(fallbacks) if a != self.address),
        )
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds, not {self.timeout}")
        if self.keepalive_seconds < 0:
            raise ConfigError(
                f"keepalive_seconds must be 0 (off) or positive, not {self.keepalive_seconds}"
            )


def validate_node_address(address: str, *, source: str = "") -> str:
    """Checks that `address` is HOST:PORT and returns it without surrounding spaces.

    Args:
        address: e.g. `127.0.0.1:7070`, `gpu-01.lab:7070` or `[::1]:7070`.
        source: Where the address came from (`MURMUR_NODE`, a file), for the message.

    Raises:
        ConfigError: The address is not HOST:PORT with a port from 1 to 65535.
    """
    text = address.strip()
    origin = f" (from {source})" if source else ""

    def invalid(reason: str) -> ConfigError:
        return ConfigError(f"invalid node address {address!r}{origin}: {reason}")

    if "://" in text:
        raise invalid("give HOST:PORT without a scheme, e.g. 127.0.0.1:7070")
    host, colon, port = text.rpartition(":")
    if text.startswith("[") and not host.endswith("]"):
        raise invalid("expected [IPV6]:PORT, e.g. [::1]:7070")
    if not colon or not host:
        raise invalid("expected HOST:PORT, e.g. 127.0.0.1:7070")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise invalid(f"{host[1:-1]!r} is not an IPv6 address") from None
    elif ":" in host:
        raise invalid("put an IPv6 address in brackets, e.g. [::1]:7070")
    elif re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise invalid(f"{host!r} is not an IPv4 address") from None
    elif not _HOST_NAME.fullmatch(host):
        raise invalid(f"{host!r} is not a host name or IP address")
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise invalid(f"port must be a number from 1 to 65535, not {port!r}")
    return text


def default_home(env: Mapping[str, str] = os.environ) -> Path:
    """The directory holding the user's identity and client settings.

    `MURMUR_HOME` when set, else `~/.murmur`.
    """
    configured = env.get("MURMUR_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".murmur"


def client_settings_path(home: Path) -> Path:
    """The client settings file in `home`: TOML with a `node = "HOST:PORT"` key."""
    return home / _CLIENT_SETTINGS_FILE_NAME


def resolve_connect_config(
    *,
    node: str | None = None,
    identity: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] = os.environ,
    home: Path | None = None,
    checked_identities: bool = False,
) -> ConnectConfig:
    """Works out which node to call and with which identity.

    Args:
        node: HOST:PORT; else `MURMUR_NODE`, else `node` in the client settings file,
            else `DEFAULT_NODE_ADDRESS`. Each may name several nodes, separated by
            commas (the settings file's `node` may also be a list): the first is the
            address, the others its `fallback_addresses`.
        identity: An identity bundle file; else `MURMUR_IDENTITY`, else
            `identity.pem` in the home directory.
        env: The environment to read (tests pass their own).
        home: The Murmur home directory; `default_home(env)` when None.
        checked_identities: Skip checking an identity file whose exact content is
            recorded in the home as checked, and record it when it passes (see the
            module's docstring): the CLI's start-up.

    Raises:
        ConfigError: The address is malformed, the settings file is not valid TOML,
            or the identity file is missing or invalid.
    """
    home = default_home(env) if home is None else home
    address, *fallbacks = _resolve_addresses(node, env, client_settings_path(home))
    if identity:
        identity_path = Path(identity)
    elif env.get("MURMUR_IDENTITY"):
        identity_path = Path(env["MURMUR_IDENTITY"])
    else:
        identity_path = home / _IDENTITY_FILE_NAME
    if checked_identities:
        tls = _tls_from_checked_identity_file(identity_path, home)
    else:
        tls = TLSConfig.from_identity_file(identity_path)
    return ConnectConfig(address=address, tls=tls, fallback_addresses=tuple(fallbacks))


def _resolve_addresses(node: str | None, env: Mapping[str, str], settings_path: Path) -> list[str]:
    """The configured node addresses, the one to call first first; never empty."""
    if node:
        return _address_list(node, source="")
    if env.get("MURMUR_NODE"):
        return _address_list(env["MURMUR_NODE"], source="MURMUR_NODE")
    configured = _node_from_client_settings(settings_path)
    if configured:
        return [
            address
            for text in configured
            for address in _address_list(text, source=str(settings_path))
        ]
    return [DEFAULT_NODE_ADDRESS]


def _address_list(text: str, *, source: str) -> list[str]:
    """``HOST:PORT`` or ``HOST:PORT,HOST:PORT,...``, each checked, without repeats."""
    parts = [part for part in text.split(",") if part.strip()] or [text]
    return list(dict.fromkeys(validate_node_address(part, source=source) for part in parts))


def _node_from_client_settings(path: Path) -> list[str] | None:
    """The `node` key of the client settings file (a string, or a list of them); None
    when there is no file or key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read client settings {path}: {err}") from err
    import tomllib  # only when there is a file: it costs a command's start-up

    try:
        settings = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"client settings {path} are not valid TOML: {err}") from err
    node = settings.get("node")
    if isinstance(node, list) and all(isinstance(item, str) for item in node):
        return [item for item in node if item] or None
    if node is not None and not isinstance(node, str):
        raise ConfigError(
            f'client settings {path}: `node` must be a string like "HOST:PORT", or a list of them'
        )
    return [node] if node else None


# --------------------------------------------------------------- checked identities


def checked_identities_path(home: Path) -> Path:
    """Where the CLI records the identity file contents that passed the checks."""
    return home / _CHECKED_IDENTITIES_FILE_NAME


def _tls_from_checked_identity_file(path: Path, home: Path) -> TLSConfig:
    """`TLSConfig.from_identity_file`, but content recorded as checked is taken without
    checking it again (nor importing cryptography), and content that passes is recorded.

    The record is keyed by the SHA-256 of the whole file, so a tampered or replaced
    file never matches a stale record; a record that does not make sense is ignored.
    """
    path = path.expanduser()
    try:
        data = path.read_bytes()
    except OSError:
        return TLSConfig.from_identity_file(path)  # which says why, as ever
    digest = hashlib.sha256(data).hexdigest()
    records = _checked_identities(home)
    record = records.get(digest)
    if record is not None:
        with contextlib.suppress(KeyError, ValueError, TypeError, IdentityFileError):
            return _tls_from_record(data, str(path), record)
    from murmur.certs.identity import IdentityBundle  # imports cryptography

    try:
        bundle = IdentityBundle.parse(data, source=str(path))
    except IdentityFileError as err:
        raise ConfigError(str(err)) from err
    identity = bundle.identity
    tls = TLSConfig(
        key_pem=bundle.key_pem,
        certificate_pem=bundle.certificate_pem,
        ca_certificate_pem=bundle.ca_certificate_pem,
        identity=identity,
    )
    record = {
        "name": identity.name,
        "role": identity.role.value,
        "serial": identity.serial,
        "not_before": identity.not_before.isoformat(),
        "not_after": identity.not_after.isoformat(),
        "intermediates": len(pem_blocks(bundle.intermediate_pem)),
    }
    # Recorded only when the record gives back exactly what the checks gave.
    if _tls_from_record(data, str(path), record) == tls:
        records.pop(digest, None)
        records[digest] = record
        _write_checked_identities(home, dict(list(records.items())[-_MAX_CHECKED_IDENTITIES:]))
    return tls


def _tls_from_record(data: bytes, source: str, record: Mapping[str, Any]) -> TLSConfig:
    """The TLS settings of bundle content `data` that passed the checks, as `record`
    (written when it did) says: its blocks, split without parsing them, and the facts
    of its certificate.

    Raises:
        KeyError, ValueError, TypeError: The record is malformed.
        IdentityFileError: `data` is not a bundle's blocks.
    """
    key_pem, certificate_pem, rest = split_blocks(data, source)
    intermediates = record["intermediates"]
    if not isinstance(intermediates, int) or not 0 <= intermediates < len(rest):
        raise ValueError(f"bad count of intermediates: {intermediates!r}")
    identity = CertificateIdentity(
        name=str(record["name"]),
        role=Role(record["role"]),
        serial=str(record["serial"]),
        not_before=_utc_time(record["not_before"]),
        not_after=_utc_time(record["not_after"]),
    )
    return TLSConfig(
        key_pem=key_pem,
        certificate_pem=certificate_pem,
        ca_certificate_pem=b"".join(rest[intermediates:]),
        identity=identity,
    )


def _utc_time(text: object) -> datetime:
    """An aware time from its ISO form; ValueError for anything else."""
    if not isinstance(text, str):
        raise ValueError(f"not a time: {text!r}")
    moment = datetime.fromisoformat(text)
    if moment.utcoffset() is None:
        raise ValueError(f"not an aware time: {text!r}")
    return moment


def _checked_identities(home: Path) -> dict[str, dict[str, Any]]:
    """The records of checked identity contents by SHA-256, oldest first; empty when
    none can be read (the record only saves time, never a reason to fail)."""
    try:
        data = json.loads(checked_identities_path(home).read_text(encoding="utf-8"))
        identities = data["identities"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(identities, dict):
        return {}
    return {k: v for k, v in identities.items() if isinstance(k, str) and isinstance(v, dict)}


def _write_checked_identities(home: Path, records: Mapping[str, Mapping[str, Any]]) -> None:
    """Replaces the records atomically (private to the user); a home that cannot be
    written is left as it is."""
    _write_json_atomically(home, checked_identities_path(home), {"identities": dict(records)})


def _write_json_atomically(home: Path, path: Path, content: object) -> bool:
    """Writes `content` to `path` in `home` by renaming a temporary file over it, so a
    reader never sees half a file; False (and nothing changed) when it cannot."""
    import tempfile  # only when something changed: it costs a client's start-up

    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=home, prefix=f".{path.stem}.")
    except OSError:
        return False
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=2)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        return False
    return True


# ------------------------------------------------------------- remembered addresses


def known_nodes_path(home: Path) -> Path:
    """Where the CLI remembers the node addresses each cluster reported."""
    return home / _KNOWN_NODES_FILE_NAME


def _cluster_key(tls: TLSConfig) -> str:
    """Which cluster a set of addresses belongs to: its lab CA, by a hash of the CA
    certificate the client trusts, so an address is never tried with another lab's
    identity."""
    return hashlib.sha256(tls.ca_certificate_pem).hexdigest()[:32]


def remembered_addresses(home: Path, tls: TLSConfig) -> list[str]:
    """The addresses remembered for the cluster whose CA `tls` trusts; empty when
    none are (or the file cannot be read: it is a hint, never a reason to fail)."""
    try:
        data = json.loads(known_nodes_path(home).read_text(encoding="utf-8"))
        entry = data["clusters"][_cluster_key(tls)]
        addresses = [a for a in entry["addresses"] if isinstance(a, str)]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    valid = []
    for address in addresses[:_MAX_REMEMBERED_ADDRESSES]:
        with contextlib.suppress(ConfigError):
            valid.append(validate_node_address(address))
    return valid


def remember_addresses(home: Path, tls: TLSConfig, addresses: Iterable[str]) -> bool:
    """Remembers `addresses` (replacing what was remembered) for the cluster whose CA
    `tls` trusts. Writes only when they changed, atomically; a home that cannot be
    written is left as it is. Returns whether the file was written."""
    wanted = list(dict.fromkeys(addresses))[:_MAX_REMEMBERED_ADDRESSES]
    if not wanted or wanted == remembered_addresses(home, tls):
        return False
    path = known_nodes_path(home)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        clusters = data["clusters"] if isinstance(data.get("clusters"), dict) else {}
    except (OSError, ValueError, AttributeError):
        clusters = {}
    clusters[_cluster_key(tls)] = {"addresses": wanted}
    return _write_json_atomically(home, path, {"clusters": clusters})
