"""``murmur``: parse the command line, run one command, turn errors into one line.

Exit codes: 0 success, 1 the command failed (the line on stderr says why),
2 the command line itself is wrong, 130 interrupted.

Parsing imports no more than argparse needs: each command imports the client,
protobuf, cryptography or Textual when it runs, so ``murmur --help``, ``--version``
and a mistyped flag answer at once (tests/murmur/test_startup_weight.py). A command
line that names a command builds (and imports) only the parsers of the module that
registers it; ``murmur --help`` or an unknown command builds them all.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from murmur._frozen import RUN_HELPER, run_helper

Handler = Callable[[argparse.Namespace], int]
Registrar = Callable[[Any], None]
"""Adds a module's commands to the ``murmur`` subparsers (its ``register``)."""


def _up(commands: Any) -> None:
    from murmur._cli import commands_up

    commands_up.register(commands)


def _admin(commands: Any) -> None:
    from murmur._cli import commands_admin

    commands_admin.register(commands)


def _certs(commands: Any) -> None:
    from murmur._cli import commands_certs

    commands_certs.register(commands)


def _policy(commands: Any) -> None:
    from murmur._cli import commands_policy

    commands_policy.register(commands)


def _node(commands: Any) -> None:
    from murmur._cli import commands_node

    commands_node.register(commands)


def _cluster(commands: Any) -> None:
    from murmur._cli import commands_cluster

    commands_cluster.register(commands)


def _jobs(commands: Any) -> None:
    from murmur._cli import commands_jobs

    commands_jobs.register(commands)


def _services(commands: Any) -> None:
    from murmur._cli import commands_services

    commands_services.register(commands)


def _apikey(commands: Any) -> None:
    from murmur._cli import commands_apikey

    commands_apikey.register(commands)


def _top(commands: Any) -> None:
    from murmur._cli import commands_top

    commands_top.register(commands)


def _bundle(commands: Any) -> None:
    from murmur._cli import commands_bundle

    commands_bundle.register(commands)


REGISTRARS: tuple[Registrar, ...] = (
    _up, _admin, _certs, _policy, _node, _cluster, _jobs, _services, _apikey, _top, _bundle,
)  # fmt: skip
"""Every command module's registration, in the order ``murmur --help`` lists them.
(Plain imports in functions, not ``importlib``: the one-program build finds them.)"""

COMMANDS: dict[str, Registrar] = {
    "up": _up,
    "ca": _admin, "token": _admin, "user": _admin, "audit": _admin,
    "cert": _certs,
    "policy": _policy, "usage": _policy,
    "node": _node,
    "status": _cluster, "whoami": _cluster,
    "job": _jobs, "dataset": _jobs,
    "service": _services,
    "apikey": _apikey,
    "top": _top,
    "bundle": _bundle,
}  # fmt: skip
"""Each top-level command and the registration that adds it (a test holds this to
what the modules register): a command line naming one builds only that module's
parsers, which spares importing and building the others (a fifth of a quick
command's start)."""


QUICK_COMMANDS = frozenset(
    {"status", "whoami", "job", "dataset", "service", "apikey", "user", "audit", "policy", "usage"}
)
"""Commands that import the client, make their calls through `run_with_client` and
exit. The cyclic garbage collector is paused from the start of such a command until
its calls begin (`run_with_client` resumes it): importing grpc and protobuf allocates
tens of thousands of objects and frees none, so the collections it triggers find
nothing: up to ~5 ms of a ~90 ms start, measured (docs/benchmarks.md, issue 17)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line instead of a usage dump, and without
    shutil."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes one to name each subcommand's parser, even when no help is
        # printed, and its own imports shutil for the terminal's width: a millisecond
        # and a half of every command. The width is the same as shutil's.
        formatter_class: Any = self.formatter_class  # each takes `width`
        formatter: argparse.HelpFormatter = formatter_class(
            prog=self.prog, width=_terminal_columns() - 2
        )
        return formatter


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: $COLUMNS, else the terminal's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


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


def build_parser(arguments: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser of ``arguments``: when they begin with a command, only its module's
    commands; else (``--help``, ``--version``, a typo, none) every command."""
    parser = _Parser(
        prog="murmur",
        description="Murmur: a peer-to-peer GPU cluster for research labs.",
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    first = COMMANDS.get(arguments[0]) if arguments else None
    for register in (first,) if first is not None else REGISTRARS:
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == [RUN_HELPER]:
        # The daemon's helper as `murmur __run-helper MODULE` (murmur/_frozen.py), before
        # any parsing. The frozen build dispatches it earlier still (scripts/packaging/entry.py);
        # here it serves `python -m murmur`, through which tests play the frozen build.
        return run_helper(arguments[1:])
    if arguments[:1] == ["--version"]:
        from murmur import __version__

        print(f"murmur {__version__}")  # without building every command's parser
        return 0
    if arguments[:1] and arguments[0] in QUICK_COMMANDS:
        gc.disable()
    parser = build_parser(arguments)
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
