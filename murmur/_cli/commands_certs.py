"""Certificates: ``cert revoke``, ``cert revocations``, ``ca rotate``, ``ca status``."""

from __future__ import annotations

import argparse
import string
from typing import Any

from murmur._cli.connect import add_connection_flags, add_json_flag, run_with_client
from murmur._cli.output import note, print_json, print_table

SERIAL_PREFIX = "serial:"
SERIAL_MIN_HEX_DIGITS = 32
"""A bare target of this many hex digits or more (colons allowed) is a serial: the lab
CA's serials have about 40; a user or node name that long, all hex digits, is not
expected (write ``serial:`` to say it is one, whatever its length)."""


def register(commands: Any) -> None:
    cert = commands.add_parser("cert", help="certificates: revoke them, list revocations")
    cert_actions = cert.add_subparsers(dest="cert_command", metavar="ACTION")
    cert_actions.required = True
    revoke = cert_actions.add_parser(
        "revoke",
        help="revoke a user's or node's certificates, or one certificate (admin)",
        description="Every node refuses the certificate within seconds, and ends its open "
        "streams. By name: every certificate of that user or node issued up to now (a "
        "later `murmur user add` issues one that works); by serial (`serial:HEX`, or a "
        "long hex number, as `murmur whoami` shows it): exactly that certificate. "
        "Revoking a user cancels none of their jobs; the answer lists them.",
    )
    revoke.add_argument("target", metavar="USER|NODE|SERIAL")
    revoke.add_argument("--reason", default="", help="why, for the audit log and the refusals")
    add_connection_flags(revoke)
    add_json_flag(revoke)
    revoke.set_defaults(handler=cert_revoke_command)
    listing = cert_actions.add_parser(
        "revocations", help="the revocations the node enforces, oldest first (admin)"
    )
    add_connection_flags(listing)
    add_json_flag(listing)
    listing.set_defaults(handler=cert_revocations_command)


def parse_target(target: str) -> tuple[str, str]:
    """(name, serial) of a ``cert revoke`` target: one of the two is empty."""
    text = target.strip()
    if text.lower().startswith(SERIAL_PREFIX):
        return "", text[len(SERIAL_PREFIX) :]
    digits = text.lower().removeprefix("0x").replace(":", "")
    if len(digits) >= SERIAL_MIN_HEX_DIGITS and all(c in string.hexdigits for c in digits):
        return "", text
    return text, ""


def cert_revoke_command(args: argparse.Namespace) -> int:
    name, serial = parse_target(args.target)
    response = run_with_client(
        args,
        lambda client: client.revoke_certificate(name=name, serial=serial, reason=args.reason),
    )
    if args.json:
        print_json(response)
        return 0
    when = response.revoked_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")
    if name:
        note(f"revoked every certificate of {response.target} issued up to {when}")
    else:
        note(f"revoked certificate {serial} at {when}")
    note("every node refuses it within seconds and ends its open streams")
    if response.active_jobs:
        count = len(response.active_jobs)
        note(f"{name} has {count} pending or running job(s); revoking cancels none of them:")
        print_table(
            ["ID", "NAME", "STATE", "NODE"],
            [
                [
                    job.id,
                    job.spec.name,
                    _job_state(job.state),
                    job.runs[-1].node if job.runs else "",
                ]
                for job in response.active_jobs
            ],
        )
        note("cancel them with: murmur job cancel ID")
    return 0


def _job_state(state: int) -> str:
    from murmur.v1 import types_pb2

    return types_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()  # type: ignore[arg-type]


def cert_revocations_command(args: argparse.Namespace) -> int:
    response = run_with_client(args, lambda client: client.list_revocations())
    if args.json:
        print_json(response)
        return 0
    rows = [
        [
            str(r.index),
            r.name or f"serial:{r.serial}",
            r.revoked_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
            r.revoked_by,
            r.reason,
        ]
        for r in response.revocations
    ]
    if not rows:
        note(f"no certificate is revoked (as {response.answered_by} knows)")
        return 0
    print_table(["ENTRY", "REVOKED", "AT (UTC)", "BY", "REASON"], rows)
    return 0


# ---------------------------------------------------------------- CA rotation


def register_ca_rotation(ca_actions: Any) -> None:
    """``ca rotate start|finish`` and ``ca status``, under ``murmur ca``."""
    rotate = ca_actions.add_parser(
        "rotate",
        help="replace the lab CA, with an overlap window (admin)",
        description="start: a new CA signs from now on; every node trusts the old and the "
        "new CA and renews its own certificate within seconds; users renew their bundles "
        "(`murmur user renew`) meanwhile, and old bundles keep working. finish: the old CA "
        "is trusted no more, anywhere; refused while a live node still holds a certificate "
        "of the old CA (see `murmur ca status`) unless --force.",
    )
    rotate.add_argument("step", choices=("start", "finish"))
    rotate.add_argument(
        "--force",
        action="store_true",
        help="finish although some nodes still hold a certificate of the old CA "
        "(they must join again)",
    )
    add_connection_flags(rotate)
    add_json_flag(rotate)
    rotate.set_defaults(handler=ca_rotate_command)
    status = ca_actions.add_parser(
        "status", help="the CA that signs, a rotation under way, and each node's CA (admin)"
    )
    add_connection_flags(status)
    add_json_flag(status)
    status.set_defaults(handler=ca_status_command)


def ca_rotate_command(args: argparse.Namespace) -> int:
    response = run_with_client(args, lambda client: client.rotate_ca(args.step, force=args.force))
    if args.json:
        print_json(response)
        return 0
    for change in response.changes:
        if change.retired:
            note(f"retired lab CA {change.fingerprint}: its certificates are refused everywhere")
        else:
            note(f"lab CA {change.fingerprint} signs from now on; the old CA stays trusted")
            note(
                "nodes renew their certificates within seconds; renew users' bundles with "
                "`murmur user renew NAME`, then run `murmur ca rotate finish`"
            )
    return 0


def ca_status_command(args: argparse.Namespace) -> int:
    from murmur.v1 import cluster_pb2, types_pb2

    async def gather(client: Any) -> tuple[Any, Any, list[types_pb2.NodeInfo]]:
        return (
            await client.whoami(),
            await client.list_revocations(),
            await client.list_nodes(),
        )

    whoami, listing, nodes = run_with_client(args, gather)
    signing = whoami.identity.ca_fingerprint
    changes = list(listing.ca_changes)
    live = [node for node in nodes if node.state == types_pb2.NODE_STATE_ALIVE]
    if args.json:
        print_json(
            cluster_pb2.ListRevocationsResponse(ca_changes=changes, answered_by=listing.answered_by)
        )
        return 0
    under_way = bool(changes) and not changes[-1].retired
    note(f"lab CA {signing} signs (as {whoami.node} knows)")
    if under_way:
        started = changes[-1]
        when = datetime_of(started.at_us)
        note(
            f"a rotation is under way since {when} (started by {started.by}): "
            "old and new CAs are trusted"
        )
    rows = [
        [
            node.name,
            node.ca_fingerprint[:16] + "..." if node.ca_fingerprint else "?",
            "yes" if node.ca_fingerprint == signing else "no: renewing",
        ]
        for node in live
    ]
    print_table(["NODE", "CA", "CURRENT"], rows)
    if under_way:
        lagging = [node.name for node in live if node.ca_fingerprint != signing]
        if lagging:
            note(f"waiting for {', '.join(lagging)} before `murmur ca rotate finish`")
        else:
            note("every live node holds a certificate of the new CA: `murmur ca rotate finish`")
    return 0


def datetime_of(at_us: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at_us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
