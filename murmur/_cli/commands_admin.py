"""Administration: ``ca init``, ``token create``, ``user add|renew|list``, ``audit``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from murmur._cli.commands_certs import register_ca_rotation
from murmur._cli.connect import add_connection_flags, add_json_flag, run_with_client
from murmur._cli.errors import CommandError
from murmur._cli.output import note, print_json, print_table
from murmur._cli.parsing import parse_duration, parse_since, positive_int

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
    init.add_argument(
        "--admin-name",
        help="name of the admin identity (default: your Unix account's, so that your "
        "jobs run as you)",
    )
    init.add_argument(
        "--identity-out", type=Path, help="where to write it (default ~/.murmur/identity.pem)"
    )
    init.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help="encrypt the CA key with the first line of FILE ($MURMUR_CA_PASSPHRASE wins)",
    )
    init.set_defaults(handler=ca_init_command)
    register_ca_rotation(ca_actions)

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
    renew = user_actions.add_parser(
        "renew",
        help="reissue an existing user's bundle: a new key and certificate, same role",
    )
    renew.add_argument("name")
    renew.add_argument(
        "--out",
        type=Path,
        help="the user's bundle, replaced in place (default ./NAME.identity.pem)",
    )
    renew.add_argument(
        "--role", choices=USER_ROLES, help="the role (default: the one in the bundle at --out)"
    )
    renew.add_argument(
        "--days", type=positive_int, help="certificate validity (default: the node's)"
    )
    add_connection_flags(renew)
    renew.set_defaults(handler=user_renew_command)
    user_list = user_actions.add_parser(
        "list",
        help="every user the lab CA issued a certificate to, with role, expiry and status",
        description="Users the lab CA issued certificates to since the cluster recorded "
        "them (murmur with control protocol 6; docs/security.md): by default each user's "
        "newest certificate. Serials, issuers and revocation details are shown to admins "
        "only.",
    )
    user_list.add_argument(
        "--all", action="store_true", help="every certificate, renewed and revoked ones too"
    )
    add_connection_flags(user_list)
    add_json_flag(user_list)
    user_list.set_defaults(handler=user_list_command)

    audit = commands.add_parser(
        "audit",
        help="who did what, when, through which node, with what result (the cluster's trail)",
        description="The cluster's audit trail, oldest first, the same from every node. "
        "`murmur audit verify` checks its hash chain on the node reached instead.",
    )
    audit.add_argument(
        "audit_action",
        nargs="?",
        choices=("verify",),
        metavar="verify",
        help="check the trail's hash chain on the node reached (exit 1 if it is broken)",
    )
    audit.add_argument("--limit", type=positive_int, default=50, help="newest N entries")
    audit.add_argument("--user", default="", help="only this user's calls")
    audit.add_argument(
        "--since",
        type=parse_since,
        metavar="T",
        help="only calls since T: a duration ago (30m, 2d) or a UTC time (2026-12-05T14:00)",
    )
    audit.add_argument("--action", default="", help="only this RPC, e.g. SubmitJob")
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
    from murmur._cli.accounts import own_account_name
    from murmur.certs import validate_name

    admin_name = args.admin_name or own_account_name()
    try:
        admin_name = validate_name(admin_name)
    except ValueError as exc:
        hint = "" if args.admin_name else " (your Unix account's name); pass --admin-name NAME"
        raise CommandError(f"{exc}{hint}") from None
    from murmur.node.identity.ca_custody import ca_passphrase

    # Encrypted at rest when MURMUR_CA_PASSPHRASE(_FILE) is set; the node needs it too.
    ca = CertificateAuthority.create(ca_dir, passphrase=ca_passphrase(args.passphrase_file))
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


def _issue_bundle(args: argparse.Namespace, name: str, role_name: str, out: Path) -> None:
    """Makes a key here (it is sent nowhere), has a node sign its CSR for ``name`` with
    the role ``role_name``, and writes the bundle to ``out`` (0600, atomically)."""
    from murmur.certs import IdentityBundle, generate_private_key, make_csr, private_key_pem
    from murmur.v1 import types_pb2

    role = types_pb2.Role.Value(f"ROLE_{role_name.upper()}")
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


def user_add_command(args: argparse.Namespace) -> int:
    from murmur.certs import validate_name

    name = validate_name(args.name)
    out: Path = args.out or Path(f"{name}.identity.pem")
    if out.exists():
        raise CommandError(f"{out} already exists; pass --out FILE")
    _issue_bundle(args, name, args.role, out)
    note(f"wrote {args.role} identity {name!r} to {out}; hand it to {name} over a safe channel")
    note(f"they use it with: MURMUR_IDENTITY={out} murmur status")
    print(out)
    return 0


def user_list_command(args: argparse.Namespace) -> int:
    """``murmur user list``: each user's newest certificate (``--all``: every one)."""
    import time

    from murmur.v1 import cluster_pb2, types_pb2

    answer = run_with_client(args, lambda client: client.list_users())
    certificates = list(answer.certificates)
    if not args.all:
        newest: dict[str, cluster_pb2.UserCertificate] = {}
        for certificate in certificates:  # in issue order: the last one wins
            newest[certificate.name] = certificate
        certificates = sorted(newest.values(), key=lambda c: c.name)
    if args.json:
        print_json(
            cluster_pb2.ListUsersResponse(
                certificates=certificates, details_withheld=answer.details_withheld
            )
        )
        return 0
    now_us = time.time_ns() // 1000

    def when(stamp: Any) -> str:
        return str(stamp.ToDatetime().strftime("%Y-%m-%d %H:%M"))

    def status(c: cluster_pb2.UserCertificate) -> str:
        if c.revoked:
            return f"revoked {when(c.revoked_at)}"
        return "expired" if c.not_after.ToMicroseconds() <= now_us else "valid"

    headers = ["USER", "ROLE", "ISSUED (UTC)", "EXPIRES (UTC)", "STATUS"]
    if not answer.details_withheld:
        headers += ["ISSUED BY", "SERIAL"]
    rows = []
    for c in certificates:
        row = [
            c.name,
            types_pb2.Role.Name(c.role).removeprefix("ROLE_").lower(),
            when(c.not_before),
            when(c.not_after),
            status(c),
        ]
        if not answer.details_withheld:
            row += [c.issued_by or "-", c.serial]
        rows.append(row)
    print_table(headers, rows)
    if not certificates:
        note(
            "no user certificates recorded: those issued before the cluster ran "
            "control protocol 6 are not listed (see docs/security.md)"
        )
    return 0


def audit_command(args: argparse.Namespace) -> int:
    from murmur.v1 import cluster_pb2, types_pb2

    if args.audit_action == "verify":
        return audit_verify_command(args)
    records = run_with_client(
        args,
        lambda client: client.list_audit(
            limit=args.limit, user=args.user, since=args.since, action=args.action
        ),
    )
    records.reverse()  # the page comes newest first; a trail reads oldest first
    if args.json:
        print_json(cluster_pb2.ListAuditResponse(records=records))
        return 0
    rows = [
        [
            str(r.id),
            r.time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
            r.user,
            types_pb2.Role.Name(r.role).removeprefix("ROLE_").lower(),
            r.node,
            r.action,
            r.target,
            r.result,
            r.detail,
        ]
        for r in records
    ]
    print_table(
        ("ID", "TIME (UTC)", "USER", "ROLE", "NODE", "ACTION", "TARGET", "RESULT", "DETAIL"),
        rows,
    )
    return 0


def audit_verify_command(args: argparse.Namespace) -> int:
    """``murmur audit verify``: exit 0 and one line when the chain checks, else 1 and
    the first bad entry."""
    report = run_with_client(args, lambda client: client.verify_audit())
    if args.json:
        print_json(report)
        return 0 if report.intact else 1
    if report.intact:
        held = f"entries {report.first_id}..{report.last_id}" if report.entries else "no entries"
        anchored = (
            f"; entries up to {max(report.anchors)} compacted before this node held them"
            if report.anchors
            else ""
        )
        print(
            f"audit trail intact on {report.node}: {report.entries} entries checked "
            f"({held}), head {report.head.hex()[:16] or '-'} "
            f"matches the control log ({report.log_count} entries){anchored}"
        )
        return 0
    raise CommandError(
        f"audit trail on {report.node} is broken at entry {report.bad_id}: {report.problem} "
        f"({report.entries} entries before it check)"
    )


def user_renew_command(args: argparse.Namespace) -> int:
    """A new key and certificate for an existing user, written over their bundle
    (atomically); the role is the old bundle's unless ``--role`` says otherwise."""
    from murmur.certs import (
        CertificateError,
        IdentityBundle,
        validate_name,
    )

    name = validate_name(args.name)
    out: Path = args.out or Path(f"{name}.identity.pem")
    role_name: str | None = args.role
    if out.exists():
        try:
            current = IdentityBundle.read(out).identity
        except CertificateError as exc:
            raise CommandError(f"{out}: {exc}") from None
        if current.name != name:
            raise CommandError(f"{out} holds {current.name!r}'s identity, not {name!r}")
        role_name = role_name or current.role.value
    elif role_name is None:
        raise CommandError(f"{out} does not exist; pass --out FILE (their bundle) or --role R")
    if role_name not in USER_ROLES:
        raise CommandError(f"{out} holds a {role_name} identity; users are {', '.join(USER_ROLES)}")
    _issue_bundle(args, name, role_name, out)
    note(f"renewed {role_name} identity {name!r} in {out}; hand it to {name} over a safe channel")
    print(out)
    return 0
