"""The subject alternative names of leaf certificates: who may serve TLS as a node.

Every node certificate carries `node.murmur`, and no user certificate does. Peers verify
a node against that one name, whatever address they dialled, so a node keeps its
certificate when its address changes, and a user's certificate can never serve as a
node's.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from murmur.certs.errors import InvalidNameError
from murmur.certs.roles import Role

if TYPE_CHECKING:
    # Imported where used: a client needs NODE_TLS_NAME alone, and cryptography costs
    # a fifth of a CLI command's start-up.
    from cryptography import x509

__all__ = ["NODE_TLS_NAME", "USER_DNS_SUFFIX", "subject_alternative_names"]

NODE_TLS_NAME = "node.murmur"
"""DNS name in every node certificate, and only in node certificates.

Clients and nodes connect by IP or any host name, and verify the server against this
name (gRPC option `grpc.ssl_target_name_override`), so a node's certificate stays
valid when its address changes, and a user certificate can never pass as a node.
"""

_NODE_DNS_SUFFIX = "." + NODE_TLS_NAME
USER_DNS_SUFFIX = ".user.murmur"
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)


def subject_alternative_names(
    name: str, role: Role, node_addresses: Sequence[str]
) -> list[x509.GeneralName]:
    """The SANs of a certificate for `name` with `role`.

    Node: DNS `node.murmur`, `<name>.node.murmur`, `localhost`, then one SAN per
    address (IP SAN for an IP, DNS SAN for a host name; a `:port` suffix is dropped).
    User: DNS `<name>.user.murmur` only.

    Raises:
        InvalidNameError: an address is neither an IP address nor a host name, or is
            a name under `node.murmur`.
    """
    from cryptography import x509

    if role is not Role.NODE:
        return [x509.DNSName(name + USER_DNS_SUFFIX)]
    names: list[x509.GeneralName] = [
        x509.DNSName(NODE_TLS_NAME),
        x509.DNSName(name + _NODE_DNS_SUFFIX),
        x509.DNSName("localhost"),
    ]
    for address in node_addresses:
        general_name = _general_name_for_address(address)
        if general_name not in names:
            names.append(general_name)
    return names


def _general_name_for_address(address: str) -> x509.GeneralName:
    """An IP SAN for an IP address, a DNS SAN for a host name; a port is dropped."""
    from cryptography import x509

    host = _host_part(address.strip())
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    hostname = host.lower().rstrip(".")
    if _HOSTNAME.fullmatch(hostname) is None:
        raise InvalidNameError(
            f"invalid node address {address!r}: expected an IP address or a host name, "
            "optionally with :port"
        )
    if hostname == NODE_TLS_NAME or hostname.endswith(_NODE_DNS_SUFFIX):
        raise InvalidNameError(
            f"invalid node address {address!r}: names under {NODE_TLS_NAME} are reserved"
        )
    return x509.DNSName(hostname)


def _host_part(address: str) -> str:
    if address.startswith("["):
        closing = address.find("]")
        return address[1:closing] if closing > 0 else address
    if address.count(":") == 1:
        return address.rsplit(":", 1)[0]
    return address
