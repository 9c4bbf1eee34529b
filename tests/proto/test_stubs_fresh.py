"""The committed gRPC stubs (murmur/v1/) must be exactly what `make proto` generates
from proto/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto" / "murmur" / "v1"
STUBS_DIR = ROOT / "murmur" / "v1"


def test_committed_stubs_match_the_proto_sources(tmp_path: Path) -> None:
    sources = sorted(PROTO_DIR.glob("*.proto"))
    assert sources, "no .proto files found"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc", "-I", "proto",
            f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}",
            f"--mypy_out={tmp_path}", f"--mypy_grpc_out={tmp_path}",
            *(str(s.relative_to(ROOT)) for s in sources),
        ],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    generated = sorted((tmp_path / "murmur" / "v1").iterdir())
    committed = sorted(p for p in STUBS_DIR.iterdir() if "_pb2" in p.name)
    assert [p.name for p in generated] == [p.name for p in committed], "run `make proto`"
    stale = [p.name for p in generated if p.read_bytes() != (STUBS_DIR / p.name).read_bytes()]
    assert not stale, f"stubs out of date: {stale}; run `make proto` and commit the result"
