"""Administration: ``ca init``, ``token create``, ``user add``, ``audit``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from murmur._cli.connect import add_connection_flags, add_json_flag, run_with_client
from murmur._cli.errors import CommandError
from murmur._cli.output import note, print_json, print_table
from murmur._cli.parsing import parse_duration, positive_int

USER_ROLES = ("admin", "member", "viewer")
"""The roles ``user add`` issues: Role's names, lower case and written out, so parsing
the command line needs no protobuf (a test holds them to the proto)."""


def register(commands: Any) -> None:
    ca = commands.add_parser("ca", help="the lab's certificate authority")
    ca_actions = ca.add_subparsers(dest="ca_command", metavar="ACTION")
    ca_actions.required = True
    init = ca_actions.add_parser("init", help="create the lab CA and an admin identity")
    init.add_argument(
        "--data-dir", type=Path, help="node data dir to hold the CA (default ~/.murmur/node)"
    )
    init.add_argument("--admin-name", default="admin", help="name of the admin identity")
    init.add_argument(
        "--identity-out", type=Path, help="where to write it (default ~/.murmur/identity.pem)"
    )
    init.set_defaults(handler=ca_init_command)

    token = commands.add_parser("token", help="join tokens for new nodes")
    token_actions = token.add_subparsers(dest="token_command", metavar="ACTION")
    token_actions.required = True
    create = token_actions.add_parser("create", help="print a one-time join token")
    create.add_argument("--ttl", type=parse_duration, help="lifetime, e.g. 30m or 1h (default 1h)")
    add_connection_flags(create)
    create.set_defaults(handler=token_create_command)

    user = commands.add_parser("user", help="user identities")
    user_actions = user.add_subparsers(dest="user_command", metavar="ACTION")
    user_actions.required = True
    add = user_actions.add_parser("add", help="issue an identity bundle for a user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=USER_ROLES)
    add.add_argument("--out", type=Path, help="bundle path (default ./NAME.identity.pem)")
    add.add_argument("--days", type=positive_int, help="certificate validity (default: the node's)")
    add_connection_flags(add)
    add.set_defaults(handler=user_add_command)

    audit = commands.add_parser("audit", help="who did what, when, with what result")
    audit.add_argument("--limit", type=positive_int, default=50)
    audit.add_argument("--user", default="")
    add_connection_flags(audit)
    add_json_flag(audit)
    audit.set_defaults(handler=audit_command)


def ca_init_command(args: argparse.Namespace) -> int:
    from murmur._config import default_home
    from murmur.certs import CertificateAuthority, Role
    from murmur.node.config import default_data_dir

    data_dir: Path = (args.data_dir or default_data_dir()).expanduser()
    identity_out: Path = (args.identity_out or default_home() / "identity.pem").expanduser()
    ca_dir = data_dir / "ca"
    # Check everything before writing anything, so a refusal changes nothing.
    if CertificateAuthority.exists(ca_dir):
        raise CommandError(f"a CA already exists in {ca_dir}")
    if identity_out.exists():
        raise CommandError(f"{identity_out} already exists; pass --identity-out FILE")
    from murmur.certs import validate_name

    admin_name = validate_name(args.admin_name)
    ca = CertificateAuthority.create(ca_dir)
    ca.issue(name=admin_name, role=Role.ADMIN, validity_days=365).write(identity_out)
    note(f"created the lab CA in {ca_dir} (fingerprint {ca.fingerprint})")
    note(f"wrote the admin identity {admin_name!r} to {identity_out}")
    note(f"next: murmur node start --data-dir {data_dir}")
    return 0


def token_create_command(args: argparse.Namespace) -> int:
    ttl = int(args.ttl.total_seconds()) if args.ttl else 0
    if args.ttl is not None and ttl < 1:
        raise CommandError("--ttl must be at least 1s")
    response = run_with_client(args, lambda client: client.create_join_token(ttl_seconds=ttl))
    print(response.token)
    expires = response.expires_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")
    note(f"single use, expires {expires}; on the new server run:")
    note("  murmur node start --join HOST:PORT --token TOKEN")
    return 0


def user_add_command(args: argparse.Namespace) -> int:
    from murmur.certs import (
        IdentityBundle,
        generate_private_key,
        make_csr,
        private_key_pem,
        validate_name,
    )
    from murmur.v1 import types_pb2

    role = types_pb2.Role.Value(f"ROLE_{args.role.upper()}")
    name = validate_name(args.name)
    out: Path = args.out or Path(f"{name}.identity.pem")
    if out.exists():
        raise CommandError(f"{out} already exists; pass --out FILE")
    key = generate_private_key()
    response = run_with_client(
        args,
        lambda client: client.issue_user_certificate(
            name, role, make_csr(key, name), ttl_days=args.days or 0
        ),
    )
    IdentityBundle(
        key_pem=private_key_pem(key),
        certificate_pem=bytes(response.certificate_pem),
        ca_certificate_pem=bytes(response.ca_certificate_pem),
    ).write(out)
    note(f"wrote {args.role} identity {name!r} to {out}; hand it to {name} over a safe channel")
    note(f"they use it with: MURMUR_IDENTITY={out} murmur status")
    print(out)
    return 0


def audit_command(args: argparse.Namespace) -> int:
    from murmur.v1 import cluster_pb2, types_pb2

    records = run_with_client(
        args, lambda client: client.list_audit(limit=args.limit, user=args.user)
    )
    if args.json:
        print_json(cluster_pb2.ListAuditResponse(records=records))
        return 0
    rows = [
        [
            r.time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
            r.user,
            types_pb2.Role.Name(r.role).removeprefix("ROLE_").lower(),
            r.action,
            r.target,
            r.result,
            r.detail,
        ]
        for r in records
    ]
    print_table(("TIME (UTC)", "USER", "ROLE", "ACTION", "TARGET", "RESULT", "DETAIL"), rows)
    return 0
