"""The lab's scheduling policy: ``policy apply FILE``, ``policy show``; ``usage``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from murmur._cli.connect import add_connection_flags, add_json_flag, run_with_client
from murmur._cli.errors import CommandError
from murmur._cli.output import note, print_json, print_table
from murmur._cli.parsing import parse_since


def register(commands: Any) -> None:
    policy = commands.add_parser(
        "policy", help="the lab's scheduling policy: groups, quotas, tiers (docs/policy.md)"
    )
    actions = policy.add_subparsers(dest="policy_command", metavar="ACTION")
    actions.required = True
    apply = actions.add_parser(
        "apply",
        help="apply a policy file (admin); every node enforces the same version",
        description="Checks FILE (TOML) here and on every voter, then puts it in the "
        "control log: the leader places jobs by it from the next plan on. An empty "
        "file goes back to no policy.",
    )
    apply.add_argument("file", type=Path, metavar="FILE")
    add_connection_flags(apply)
    add_json_flag(apply)
    apply.set_defaults(handler=policy_apply_command)
    show = actions.add_parser("show", help="print the policy in force (its TOML text)")
    add_connection_flags(show)
    add_json_flag(show)
    show.set_defaults(handler=policy_show_command)
    usage = commands.add_parser(
        "usage",
        help="GPU-hours of runs that ended, by user and group (and by project), and "
        "fair-share factors",
    )
    usage.add_argument("--group", default="", help="only this group's users")
    usage.add_argument(
        "--since",
        type=parse_since,
        help="only runs that ended since T: a duration ago (30d) or a UTC date (2026-12-01)",
    )
    add_connection_flags(usage)
    add_json_flag(usage)
    usage.set_defaults(handler=usage_command)


def policy_apply_command(args: argparse.Namespace) -> int:
    from murmur.scheduler.lab_policy import PolicyError, parse_policy

    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {args.file}: {exc}") from None
    try:
        parse_policy(text)
    except PolicyError as exc:
        raise CommandError(f"{args.file}: {exc}") from None
    info = run_with_client(args, lambda client: client.apply_policy(text))
    if args.json:
        print_json(info)
        return 0
    note(f"policy version {info.version} applied by {info.applied_by}; every node enforces it")
    return 0


def policy_show_command(args: argparse.Namespace) -> int:
    info = run_with_client(args, lambda client: client.get_policy())
    if args.json:
        print_json(info)
        return 0
    if not info.version:
        note("no policy applied: no quotas, one tier (see docs/policy.md)")
        return 0
    when = info.applied_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")
    note(f"policy version {info.version}, applied by {info.applied_by} at {when}")
    print(info.text, end="" if info.text.endswith("\n") else "\n")
    return 0


def usage_command(args: argparse.Namespace) -> int:
    response = run_with_client(
        args, lambda client: client.get_usage(since=args.since, group=args.group)
    )
    if args.json:
        print_json(response)
        return 0
    if not response.rows:
        note("no GPU time recorded" + (f" for group {args.group}" if args.group else ""))
        return 0
    headers = ["USER", "GROUP", "GPU-HOURS"] + (["FAIR SHARE"] if response.fair_share else [])
    rows = [
        [row.user, row.group or "-", f"{row.gpu_hours:.2f}"]
        + ([f"{row.fair_share:.3f}"] if response.fair_share else [])
        for row in response.rows
    ]
    print_table(headers, rows)
    if response.projects and not args.group:
        print()
        print_table(
            ["PROJECT", "GPU-HOURS"],
            [[row.project, f"{row.gpu_hours:.2f}"] for row in response.projects],
        )
    return 0
