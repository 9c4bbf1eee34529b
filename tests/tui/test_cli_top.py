"""`murmur top` refuses bad settings with one line before any screen is drawn."""

from __future__ import annotations

from pathlib import Path

from tests.support.nodes import Lab


def test_a_missing_identity_is_one_line_and_exit_1(lab: Lab, tmp_path: Path) -> None:
    result = lab.murmur("top", "--node", "127.0.0.1:1", identity=tmp_path / "nobody.pem")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "nobody.pem" in result.stderr
    assert result.stdout == ""


def test_a_bad_failover_address_is_one_line_and_exit_1(lab: Lab) -> None:
    result = lab.murmur("top", "--node", "127.0.0.1:1", "--also", "no-port-here")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no-port-here" in lines[0]
