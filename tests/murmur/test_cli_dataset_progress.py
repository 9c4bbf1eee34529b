"""`murmur dataset add` on a tree that takes seconds: progress on stderr, the result on stdout."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from murmur._cli.scan_progress import ScanProgressLine
from murmur.v1 import cluster_pb2
from tests.support.datasets import bytes_scanned_in
from tests.support.nodes import Lab, NodeProcess
from tests.support.signals import interruptible


def slow_tree(root: Path, *, sparse_bytes: int | None = None) -> Path:
    """A thousand small files and one sparse file: about 3 s of scanning by default,
    which shows progress (after 1 s) a few times."""
    (root / "small").mkdir(parents=True)
    if sparse_bytes is None:
        sparse_bytes = bytes_scanned_in(3.0, root)
    for i in range(1000):
        (root / "small" / f"{i:04}.txt").write_text(f"{i}\n")
    with (root / "big.bin").open("wb") as handle:
        handle.truncate(sparse_bytes)
    return root


def murmur_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "murmur", *args]


def cli_env(lab: Lab) -> dict[str, str]:
    return {**lab.env, "MURMUR_IDENTITY": str(lab.admin_identity)}


def test_a_long_scan_shows_progress_on_stderr_and_only_the_result_on_stdout(
    lab: Lab, ca_node: NodeProcess
) -> None:
    root = slow_tree(ca_node.data_dir / "datasets" / "big")
    added = lab.murmur("dataset", "add", str(root), "--name", "big", "--node", ca_node.address)
    assert added.returncode == 0, added.stderr
    header, row = added.stdout.splitlines()
    assert header.split() == ["NAME", "NODE", "SIZE", "FILES", "PATH"]
    assert row.split()[:2] == ["big", "node-1"]
    assert row.split()[3] == "1001"
    # Not a terminal: plain lines (the first after a second, then one per 5 s).
    lines = added.stderr.splitlines()
    assert lines, "no progress shown for a scan of seconds"
    assert all(line.startswith("scanning big: ") for line in lines), lines
    assert "/1,001 files, " in lines[0]
    assert "\r" not in added.stderr

    # --json: stdout is the dataset as JSON alone, stderr stays empty.
    as_json = lab.murmur(
        "dataset", "add", str(root), "--name", "big2", "--json", "--node", ca_node.address
    )
    assert as_json.returncode == 0, as_json.stderr
    assert (
        json.loads(as_json.stdout)["manifest_sha256"]
        == json.loads(
            lab.murmur("dataset", "show", "big", "--json", "--node", ca_node.address).stdout
        )["manifest_sha256"]
    )
    assert as_json.stderr == ""

    # A quick scan shows nothing at all.
    (ca_node.data_dir / "datasets" / "tiny").mkdir()
    (ca_node.data_dir / "datasets" / "tiny" / "f").write_text("x")
    tiny = lab.murmur(
        "dataset", "add", str(ca_node.data_dir / "datasets" / "tiny"), "--name", "tiny",
        "--node", ca_node.address,
    )  # fmt: skip
    assert tiny.returncode == 0
    assert tiny.stderr == ""


def test_on_a_terminal_one_line_is_rewritten_in_place_then_erased(
    lab: Lab, ca_node: NodeProcess
) -> None:
    root = slow_tree(ca_node.data_dir / "datasets" / "big")
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        murmur_command("dataset", "add", str(root), "--name", "big", "--node", ca_node.address),
        env=cli_env(lab),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    shown = b""
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], 30)
            assert ready, "the CLI went quiet"
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the CLI exited and closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        stdout, _ = process.communicate(timeout=30)
    finally:
        os.close(controller)
        process.kill()
    assert process.returncode == 0
    assert stdout.decode().splitlines()[0].split()[0] == "NAME"
    text = shown.decode()
    updates = [u for u in text.split("\r") if u.startswith("scanning big: ")]
    assert text.startswith("\rscanning big: ")
    assert len(updates) >= 2, text
    assert "\n" not in text
    assert text.endswith("\r\x1b[K")  # erased: the terminal is clean for what follows


def test_ctrl_c_leaves_no_dataset_and_an_error_is_one_line(lab: Lab, ca_node: NodeProcess) -> None:
    root = slow_tree(ca_node.data_dir / "datasets" / "huge", sparse_bytes=256 * 1024**3)
    with subprocess.Popen(
        murmur_command("dataset", "add", str(root), "--name", "huge", "--node", ca_node.address),
        env=cli_env(lab),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    ) as process:
        try:
            assert process.stderr is not None
            first = process.stderr.readline()  # the first progress line, after a second
            assert first.startswith("scanning huge: "), first
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=30)
        finally:
            process.kill()
    assert process.returncode == 130
    assert stdout == ""
    assert stderr.splitlines()[-1] == "murmur: interrupted"
    listed = json.loads(lab.murmur("dataset", "list", "--json", "--node", ca_node.address).stdout)
    assert listed == {"datasets": []}
    deadline = time.monotonic() + 10
    while '"dataset.scan_stopped"' not in ca_node.log():
        assert time.monotonic() < deadline, "the node did not stop the scan"
        time.sleep(0.05)

    # A name taken is refused in one line, before any scan.
    (ca_node.data_dir / "datasets" / "one").mkdir()
    (ca_node.data_dir / "datasets" / "one" / "f").write_text("x")
    one = str(ca_node.data_dir / "datasets" / "one")
    first_add = lab.murmur("dataset", "add", one, "--name", "one", "--node", ca_node.address)
    assert first_add.returncode == 0
    again = lab.murmur("dataset", "add", str(root), "--name", "one", "--node", ca_node.address)
    assert again.returncode == 1
    assert again.stderr.splitlines() == [
        "murmur: error: dataset 'one' is already registered on this node; choose another --name"
    ]
    assert again.stdout == ""


def progress(**fields: object) -> cluster_pb2.DatasetScanProgress:
    return cluster_pb2.DatasetScanProgress(**fields)  # type: ignore[arg-type]


def test_the_line_waits_a_second_then_shows_every_few_seconds_off_a_terminal() -> None:
    now = [100.0]
    out = io.StringIO()
    line = ScanProgressLine("scanning x", out, clock=lambda: now[0])
    update = progress(files_total=10, bytes_total=2048, files_scanned=5, bytes_scanned=1024)
    line.update(update)
    now[0] = 100.9
    line.update(update)
    assert out.getvalue() == ""
    now[0] = 101.0
    line.update(update)
    now[0] = 105.9
    line.update(update)
    now[0] = 106.0
    line.update(progress(listing=True, files_total=7, bytes_total=3 * 1024**3))
    line.finish()
    assert out.getvalue().splitlines() == [
        "scanning x: 5/10 files, 1.0KiB/2.0KiB (50%)",
        "scanning x: listing: 7 files (3.0GiB) so far",
    ]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_names_are_shown_without_their_control_characters() -> None:
    now = [0.0]
    out = Terminal()
    line = ScanProgressLine("scanning x", out, clock=lambda: now[0])
    now[0] = 2.0
    line.update(progress(files_total=1, current_path="a\x1b]0;owned\x07.txt"))
    line.finish()
    assert out.getvalue() == ("\rscanning x: 0/1 files, 0B/0B (0%), a?]0;owned?.txt\x1b[K\r\x1b[K")
