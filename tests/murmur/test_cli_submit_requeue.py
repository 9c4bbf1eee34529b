"""``murmur job submit --no-requeue``: a run lost with its node then spends a retry."""

from __future__ import annotations

from murmur._cli.commands_jobs import build_spec
from murmur._cli.main import build_parser


def test_no_requeue_is_off_unless_asked_for() -> None:
    parser = build_parser()
    plain = build_spec(parser.parse_args(["job", "submit", "--retries", "2", "--", "true"]))
    assert (plain.retries, plain.no_requeue) == (2, False)
    opted_out = build_spec(parser.parse_args(["job", "submit", "--no-requeue", "--", "true"]))
    assert (opted_out.retries, opted_out.no_requeue) == (0, True)
