"""``murmur``: parse the command line, run one command, turn errors into one line.

Exit codes: 0 success, 1 the command failed (the line on stderr says why),
2 the command line itself is wrong, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from murmur._cli import (
    commands_admin,
    commands_cluster,
    commands_jobs,
    commands_node,
    commands_top,
    commands_up,
)

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="murmur",
        description="Murmur: a peer-to-peer GPU cluster for research labs.",
    )
    parser.add_argument("--version", action="version", version=f"murmur {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    commands_up.register(commands)
    commands_admin.register(commands)
    commands_node.register(commands)
    commands_cluster.register(commands)
    commands_jobs.register(commands)
    commands_top.register(commands)
    return parser


def _version() -> str:
    from murmur import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    from murmur._cli.errors import CommandError, describe_error

    try:
        return handler(args)
    except BrokenPipeError:
        # The reader went away (`murmur node list | head`): not an error of ours.
        # Point stdout at devnull so the interpreter's final flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("murmur: interrupted", file=sys.stderr)
        return 130
    except CommandError as exc:
        print(f"murmur: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        message = describe_error(exc)
        if message is None:
            raise
        print(f"murmur: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
