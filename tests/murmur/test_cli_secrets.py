"""``murmur job submit --secret`` and ``--secret-file``: how the CLI reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from murmur._cli.commands_jobs import build_spec
from murmur._cli.errors import CommandError
from murmur._cli.main import build_parser
from murmur.v1 import types_pb2


def spec_of(*flags: str) -> types_pb2.JobSpec:
    args = build_parser().parse_args(["job", "submit", *flags, "--", "python", "train.py"])
    return build_spec(args)


def test_secrets_from_flags_and_files_less_one_trailing_newline(tmp_path: Path) -> None:
    unix, windows, bare = tmp_path / "unix", tmp_path / "windows", tmp_path / "bare"
    unix.write_bytes(b"line one\nkey\n\n")
    windows.write_bytes(b"pass\r\n")
    bare.write_bytes(b"=x=")
    flags = [
        "job", "submit", "--env", "SEED=1", "--secret", "API_KEY=a=b",
        "--secret-file", f"CERT={unix}", "--secret-file", f"PASS={windows}",
        "--secret-file", f"RAW={bare}", "--", "python", "train.py",
    ]  # fmt: skip
    spec = build_spec(build_parser().parse_args(flags))
    assert dict(spec.env) == {"SEED": "1"}
    assert dict(spec.secrets) == {
        "API_KEY": "a=b",
        "CERT": "line one\nkey\n",
        "PASS": "pass",
        "RAW": "=x=",
    }


def test_a_secret_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("v\n")
    with pytest.raises(CommandError, match="secret K is given twice"):
        spec_of("--secret", "K=a", "--secret-file", f"K={path}")


def test_an_unreadable_secret_file_names_the_secret_and_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(CommandError, match=f"secret K: cannot read {missing}"):
        spec_of("--secret-file", f"K={missing}")


def test_a_malformed_secret_flag_does_not_echo_its_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["job", "submit", "--secret", "hunter2", "--", "true"])
    assert exited.value.code == 2
    assert "hunter2" not in capsys.readouterr().err
