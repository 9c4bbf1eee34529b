"""The wheel as users get it: one import name (``murmur``), its data files, no
deprecated packaging, and a clean install beside proto-plus, whose import name is
``proto`` (the name our wheel used to fill with the ``.proto`` files).

The wheel is built from a copy of the source tree (a build writes ``build/`` and
``*.egg-info`` beside pyproject.toml) and installed, with ``--no-deps``, into bare
virtual environments. Its dependencies (grpcio, protobuf...) come from the
environment running the tests, through a ``.pth`` appended after the install: it
puts that environment's site-packages after the venv's own, so ``murmur`` and
``proto`` still resolve to what was just installed, which the check asserts, and
nothing is fetched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a build and four installs: about 5 s

ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCE = (
    ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", ".murmur-demo",
)  # fmt: skip
MIGRATIONS = sorted(path.name for path in (ROOT / "murmur/storage/migrations").glob("*.sql"))


def _run(*command: str | Path, cwd: Path) -> str:
    """Runs a command to completion; returns its output, stdout and stderr merged."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout}"
    return result.stdout


def _deprecations(output: str) -> list[str]:
    """The lines of a build's or an install's output that announce a deprecation
    (setuptools' arrive as BuildBackendWarning or SetuptoolsDeprecationWarning)."""
    return [line for line in output.splitlines() if "deprecat" in line.lower()]


def _import_names(site_packages: Path) -> set[str]:
    """What a site-packages directory lets ``import`` find at its top level, and its
    ``.pth`` files (which can add more)."""
    names = set()
    for entry in site_packages.iterdir():
        if entry.name == "__pycache__" or entry.suffix in (".dist-info", ".egg-info", ".data"):
            continue
        if entry.suffix == ".pth":
            names.add(entry.name)
        elif entry.is_dir() or entry.suffix in (".py", ".so", ".pyd"):
            names.add(entry.name.split(".")[0])
    return names


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel built from this source tree, and the build's verbose output."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    output = _run(
        sys.executable, "-m", "pip", "wheel", "--verbose", "--no-deps", "--no-build-isolation",
        "--wheel-dir", work / "dist", source,
        cwd=work,
    )  # fmt: skip
    (wheel,) = (work / "dist").glob("murmur_cluster-*.whl")
    return wheel, output


def test_the_build_announces_no_deprecation(build: tuple[Path, str]) -> None:
    _, output = build
    assert _deprecations(output) == []


def test_the_wheel_holds_murmur_alone_with_every_source_file_and_the_migrations(
    build: tuple[Path, str],
) -> None:
    wheel, _ = build
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (top_level,) = (name for name in names if name.endswith(".dist-info/top_level.txt"))
        assert archive.read(top_level).decode().split() == ["murmur"]
    assert {name.split("/")[0] for name in names if ".dist-info/" not in name} == {"murmur"}
    # murmur/node, murmur/storage... are links to the repository's folders: all of it ships.
    source = {
        (Path(folder) / file).relative_to(ROOT).as_posix()
        for folder, _, files in os.walk(ROOT / "murmur", followlinks=True)
        if "__pycache__" not in Path(folder).parts
        for file in files
    }
    assert source - names == set()
    assert MIGRATIONS
    shipped = {name for name in names if name.endswith(".sql")}
    assert shipped == {f"murmur/storage/migrations/{name}" for name in MIGRATIONS}


CHECK_INSTALLED = """
import sys, sysconfig
site = sysconfig.get_paths()["purelib"]
import proto
proto.Message
import murmur, murmur.node.daemon, murmur.v1.cluster_pb2
from murmur.storage.migrator import load_migrations
for module in (proto, murmur, murmur.node.daemon, murmur.v1.cluster_pb2):
    assert module.__file__.startswith(site + "/"), (module.__name__, module.__file__)
print(len(load_migrations()), murmur.__version__)
"""


@pytest.mark.parametrize("first", ["proto-plus", "murmur"])
def test_installs_beside_proto_plus_in_either_order(
    build: tuple[Path, str], tmp_path: Path, first: str
) -> None:
    wheel, _ = build
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site_packages = Path(_run(python, "-c", purelib, cwd=tmp_path).strip())
    installs = {"proto-plus": "proto-plus", "murmur": str(wheel)}
    order = [first, *(name for name in installs if name != first)]
    added: dict[str, set[str]] = {}
    for name in order:
        before = _import_names(site_packages)
        output = _run(
            sys.executable, "-m", "pip", "--python", python,
            "install", "--no-deps", installs[name],
            cwd=tmp_path,
        )  # fmt: skip
        assert _deprecations(output) == [], output
        added[name] = _import_names(site_packages) - before
    assert added == {"murmur": {"murmur"}, "proto-plus": {"proto"}}

    dependencies = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (site_packages / "zz_test_dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    migrations, version = _run(python, "-I", "-c", CHECK_INSTALLED, cwd=tmp_path).split()
    assert int(migrations) == len(MIGRATIONS)
    assert _run(venv / "bin" / "murmur", "--version", cwd=tmp_path).strip() == f"murmur {version}"
