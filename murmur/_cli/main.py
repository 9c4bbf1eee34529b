"""``murmur``: parse the command line, run one command, turn errors into one line.

Exit codes: 0 success, 1 the command failed (the line on stderr says why),
2 the command line itself is wrong, 130 interrupted.

Parsing imports no more than argparse needs: each command imports the client,
protobuf, cryptography or Textual when it runs, so ``murmur --help``, ``--version``
and a mistyped flag answer at once (tests/murmur/test_startup_weight.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from murmur._cli import (
    commands_admin,
    commands_apikey,
    commands_bundle,
    commands_certs,
    commands_cluster,
    commands_jobs,
    commands_node,
    commands_policy,
    commands_services,
    commands_top,
    commands_up,
)
from murmur._frozen import RUN_HELPER, run_helper

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class _VersionAction(argparse.Action):
    """``--version``, reading the installed version only when asked for it: the
    metadata look-up (importlib.metadata) costs more than parsing the rest."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str = argparse.SUPPRESS,
        default: Any = argparse.SUPPRESS,
        help: str = "show program's version number and exit",
    ) -> None:
        super().__init__(option_strings, dest, default=default, nargs=0, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> NoReturn:
        from murmur import __version__

        print(f"murmur {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="murmur",
        description="Murmur: a peer-to-peer GPU cluster for research labs.",
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    commands_up.register(commands)
    commands_admin.register(commands)
    commands_certs.register(commands)
    commands_policy.register(commands)
    commands_node.register(commands)
    commands_cluster.register(commands)
    commands_jobs.register(commands)
    commands_services.register(commands)
    commands_apikey.register(commands)
    commands_top.register(commands)
    commands_bundle.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == [RUN_HELPER]:
        # The daemon's helper as `murmur __run-helper MODULE` (murmur/_frozen.py), before
        # any parsing. The frozen build dispatches it earlier still (scripts/packaging/entry.py);
        # here it serves `python -m murmur`, through which tests play the frozen build.
        return run_helper(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
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
