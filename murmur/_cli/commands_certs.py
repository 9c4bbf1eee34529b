"""Certificates: ``cert revoke``, ``cert revocations``."""

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
