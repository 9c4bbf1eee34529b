"""How a node comes by its identity at start.

In order of preference:

* ``identity.pem`` already in the data dir: use it (a restart; ``--join`` and
  ``--token`` are refused there, as they mean a new node);
* the data dir holds the lab CA (``murmur ca init`` ran here): issue our own;
* ``--join`` and ``--token`` were given: enroll with an existing node;
* otherwise: refuse to start, saying which of the above to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from murmur.certs import (
    CertificateAuthority,
    CertificateError,
    IdentityBundle,
    Role,
    check_validity,
)
from murmur.node.config import NodeConfig, default_node_name
from murmur.node.errors import StartupError
from murmur.node.identity.ca_custody import ca_passphrase, load_ca
from murmur.node.identity.join_client import join_cluster


@dataclass(frozen=True)
class NodeIdentity:
    bundle: IdentityBundle
    ca: CertificateAuthority | None
    issuer_address: str = ""
    """When this start joined a cluster: the API address of the node that signed."""

    @property
    def name(self) -> str:
        return self.bundle.identity.name


async def obtain_identity(config: NodeConfig) -> NodeIdentity:
    """The node's identity bundle, and the CA when this node holds it.

    Raises:
        StartupError: one line telling the operator what to do.
    """
    # Encrypted at rest when the operator set a passphrase (node/identity/ca_custody.py).
    ca = load_ca(config.ca_dir, ca_passphrase(config.ca_passphrase_file))
    if config.identity_path.exists():
        bundle = IdentityBundle.read(config.identity_path)
        identity = bundle.identity
        if config.join is not None or config.token is not None:
            # Ignoring them would restart this node while the operator meant to add one.
            raise StartupError(
                f"data dir {config.data_dir} already holds the identity of node "
                f"{identity.name!r} (cluster CA {bundle.ca_fingerprint[:16]}...): "
                "--join/--token are only for a new data dir; start without them to restart "
                "this node, or pass a new --data-dir to join as another node"
            )
        if config.name is not None and config.name != identity.name:
            raise StartupError(
                f"data dir {config.data_dir} belongs to node {identity.name!r}, "
                f"not {config.name!r}; use another --data-dir or drop --name"
            )
        if identity.role is not Role.NODE:
            raise StartupError(
                f"{config.identity_path} is a {identity.role.value} identity, not a node's"
            )
        try:
            check_validity(identity, datetime.now(UTC))
        except CertificateError as exc:
            raise StartupError(f"node certificate {config.identity_path}: {exc}") from None
        return NodeIdentity(bundle, ca)
    name = config.name or default_node_name()
    issuer_address = ""
    if ca is not None:
        addresses = {config.listen.host, config.advertise_address.host}
        bundle = ca.issue(
            name=name,
            role=Role.NODE,
            validity_days=config.node_certificate_days,
            node_addresses=sorted(addresses),
        )
    elif config.join is not None and config.token is not None:
        joined = await join_cluster(
            join=config.join,
            token_text=config.token,
            node_name=name,
            advertise=config.advertise_address,
        )
        bundle, issuer_address = joined.bundle, joined.issuer_address
    else:
        raise StartupError(
            f"no identity in {config.data_dir}: run `murmur ca init --data-dir {config.data_dir}` "
            "on the first server, or pass --join HOST:PORT --token TOKEN to join a cluster"
        )
    bundle.write(config.identity_path)
    return NodeIdentity(bundle, ca, issuer_address)
