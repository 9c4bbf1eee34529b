"""``murmur COMMAND ...`` builds only the parsers of the module that registers COMMAND;
the table that says which module that is must name every command there is."""

from __future__ import annotations

import argparse

import pytest

from murmur._cli.main import COMMANDS, REGISTRARS, build_parser


def test_every_command_is_found_in_the_table_under_its_own_module() -> None:
    for register in REGISTRARS:
        parser = argparse.ArgumentParser()
        commands = parser.add_subparsers(dest="command")
        register(commands)
        for name in commands.choices:
            assert COMMANDS.get(name) is register, name
    assert set(COMMANDS.values()) == set(REGISTRARS)


def test_a_named_command_parses_as_with_every_command_built() -> None:
    argv = ["job", "submit", "--array", "0-9%2", "--", "true"]
    alone = build_parser(argv).parse_args(argv)
    whole = build_parser().parse_args(argv)
    assert {k: v for k, v in vars(alone).items() if k != "handler"} == {
        k: v for k, v in vars(whole).items() if k != "handler"
    }
    assert alone.handler is whole.handler


def test_help_lists_every_command_and_a_typo_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser(["--help"]).parse_args(["--help"])
    listed = capsys.readouterr().out
    assert all(name in listed for name in COMMANDS)
    with pytest.raises(SystemExit) as exit_:
        build_parser(["jbo"]).parse_args(["jbo"])
    assert exit_.value.code == 2
    assert "invalid choice: 'jbo'" in capsys.readouterr().err
