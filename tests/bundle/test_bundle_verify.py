"""The signed bundle fails closed: a fresh bundle verifies, and a flipped byte, a wrong
key, an extra or missing file, a link, a stray directory or a forged list do not
(murmur/bundle/verify.py). Built from a fake onedir tree: no PyInstaller here."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from murmur.bundle import BundleError
from murmur.bundle.create import WheelSource, create_bundle, image_file_name, read_build
from murmur.bundle.glibc import glibc_floor, read_elf, version_key
from murmur.bundle.manifest import Build, Image, Manifest
from murmur.bundle.signing import (
    check_signature,
    generate_key,
    load_private_key,
    load_public_key,
    public_path,
    sign,
)
from murmur.bundle.verify import SIGNATURE, SUMS, parse_sums, verify_bundle
from tests.bundle.fake_build import make_fake_onedir


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(release key, another key): key generation is cheap, but once is enough."""
    directory = tmp_path_factory.mktemp("keys")
    generate_key(directory / "release.key")
    generate_key(directory / "other.key")
    return directory / "release.key", directory / "other.key"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, keys: tuple[Path, Path]) -> Path:
    """One bundle made once; each test tampers with its own copy."""
    work = tmp_path_factory.mktemp("pristine")
    onedir = make_fake_onedir(work / "onedir")
    wheels = work / "wheels"
    wheels.mkdir()
    (wheels / "murmur_cluster-0.1.0-py3-none-any.whl").write_bytes(b"PK fake wheel")
    create_bundle(
        work / "bundle",
        key=load_private_key(keys[0]),
        onedirs=[onedir],
        wheels=WheelSource(directory=wheels),
    )
    return work / "bundle"


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(pristine, copy, symlinks=True)
    return copy


def verify(bundle: Path, key: Path) -> Manifest:
    return verify_bundle(bundle, load_public_key(public_path(key))).manifest


def test_keygen_writes_a_private_key_only_its_owner_reads_and_refuses_to_overwrite(
    tmp_path: Path,
) -> None:
    key = tmp_path / "k"
    generate_key(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert public_path(key).read_text().startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(BundleError, match="exists"):
        generate_key(key)


def test_a_fresh_bundle_verifies_and_its_manifest_says_what_it_holds(
    bundle: Path, keys: tuple[Path, Path]
) -> None:
    manifest = verify(bundle, keys[0])
    assert manifest.version == "0.1.0"
    assert manifest.architectures == ("x86_64",)
    assert manifest.glibc_floor == "2.35"
    assert manifest.wheels == ("murmur_cluster-0.1.0-py3-none-any.whl",)
    assert os.access(bundle / "install.sh", os.X_OK)
    # The list is sha256sum's own format: checkable without Murmur.
    if shutil.which("sha256sum"):
        checked = subprocess.run(
            ["sha256sum", "--check", "--quiet", SUMS], cwd=bundle, capture_output=True
        )
        assert checked.returncode == 0, checked.stdout


def test_a_wrong_key_fails(bundle: Path, keys: tuple[Path, Path]) -> None:
    with pytest.raises(BundleError, match="bad signature"):
        verify(bundle, keys[1])


@pytest.mark.parametrize(
    "victim", ["install.sh", "manifest.json", "linux-x86_64/murmur/_internal/libfake.so", SUMS]
)
def test_one_flipped_byte_anywhere_fails(
    bundle: Path, keys: tuple[Path, Path], victim: str
) -> None:
    path = bundle / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"changed|bad signature"):
        verify(bundle, keys[0])


def test_a_signature_that_is_not_one_fails(bundle: Path, keys: tuple[Path, Path]) -> None:
    (bundle / SIGNATURE).write_text("not base64 at all!\n")
    with pytest.raises(BundleError, match="not base64"):
        verify(bundle, keys[0])
    (bundle / SIGNATURE).unlink()
    with pytest.raises(BundleError, match=f"{SIGNATURE} is missing"):
        verify(bundle, keys[0])


@pytest.mark.parametrize("where", ["extra.txt", "linux-x86_64/murmur/_internal/planted.so"])
def test_an_extra_file_fails(bundle: Path, keys: tuple[Path, Path], where: str) -> None:
    (bundle / where).write_text("planted")
    with pytest.raises(BundleError, match="extra file"):
        verify(bundle, keys[0])


def test_a_missing_file_fails(bundle: Path, keys: tuple[Path, Path]) -> None:
    (bundle / "linux-x86_64" / "murmur" / "murmur").unlink()
    with pytest.raises(BundleError, match="missing"):
        verify(bundle, keys[0])


def test_an_extra_directory_or_a_link_fails(bundle: Path, keys: tuple[Path, Path]) -> None:
    (bundle / "images").mkdir()
    with pytest.raises(BundleError, match="extra directory"):
        verify(bundle, keys[0])
    (bundle / "images").rmdir()
    (bundle / "wheels" / "link.whl").symlink_to("/etc/passwd")
    with pytest.raises(BundleError, match="is a link"):
        verify(bundle, keys[0])


def test_a_listed_file_replaced_by_a_link_to_an_identical_copy_fails(
    bundle: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    target = bundle / "manifest.json"
    outside = tmp_path / "manifest-copy.json"
    shutil.copyfile(target, outside)
    target.unlink()
    target.symlink_to(outside)
    with pytest.raises(BundleError, match="is a link"):
        verify(bundle, keys[0])


def test_a_re_signed_list_with_an_unsafe_path_is_refused(
    bundle: Path, keys: tuple[Path, Path]
) -> None:
    """Even with the right key, a list naming a path outside the bundle is refused."""
    sums = (bundle / SUMS).read_text() + f"{'0' * 64}  ../../etc/passwd\n"
    (bundle / SUMS).write_text(sums)
    (bundle / SIGNATURE).write_text(sign(load_private_key(keys[0]), sums.encode()))
    with pytest.raises(BundleError, match="outside the bundle"):
        verify(bundle, keys[0])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "lists no file"),
        (f"{'a' * 64} x\n", "is not"),  # one space: not sha256sum's format
        (f"{'A' * 64}  x\n", "is not"),
        (f"{'a' * 64}  /etc/passwd\n", "outside"),
        (f"{'a' * 64}  a/./b\n", "outside"),
        (f"{'a' * 64}  {SUMS}\n", "outside"),
        (f"{'a' * 64}  x\n{'b' * 64}  x\n", "twice"),
    ],
)
def test_the_list_is_read_strictly(text: str, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        parse_sums(text)


def test_signatures_are_over_the_exact_bytes(keys: tuple[Path, Path]) -> None:
    signature = sign(load_private_key(keys[0]), b"abc")
    public = load_public_key(public_path(keys[0]))
    check_signature(public, b"abc", signature)
    with pytest.raises(BundleError, match="bad signature"):
        check_signature(public, b"abd", signature)


def test_the_manifest_round_trips_and_refuses_what_it_cannot_read() -> None:
    manifest = Manifest(
        version="1.2.3",
        created_at="2026-12-05T00:00:00Z",
        builds=(
            Build("x86_64", "linux-x86_64/murmur", "1.2.3", "2.35", "abc"),
            Build("aarch64", "linux-aarch64/murmur", "1.2.3", "2.17", "abc"),
        ),
        wheels=("a.whl",),
        images=(Image("lab/pt:2", "images/lab_pt_2.tar", "sha256:" + "1" * 64, 10),),
    )
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert manifest.glibc_floor == "2.35"
    data = json.loads(manifest.to_json())
    assert data["architectures"] == ["x86_64", "aarch64"]
    assert data["images"][0]["digest"].startswith("sha256:")
    with pytest.raises(BundleError, match="format 2"):
        Manifest.from_json(json.dumps({**data, "format": 2}))
    with pytest.raises(BundleError, match="lacks 'version'"):
        Manifest.from_json(json.dumps({k: v for k, v in data.items() if k != "version"}))


def test_create_refuses_an_existing_directory_and_leaves_nothing_on_failure(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    onedir = make_fake_onedir(tmp_path / "onedir")
    key = load_private_key(keys[0])
    (tmp_path / "taken").mkdir()
    with pytest.raises(BundleError, match="exists"):
        create_bundle(tmp_path / "taken", key=key, onedirs=[onedir], wheels=WheelSource())
    with pytest.raises(BundleError, match=r"holds no \.whl"):
        create_bundle(
            tmp_path / "new", key=key, onedirs=[onedir], wheels=WheelSource(directory=tmp_path)
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onedir", "taken"]
    with pytest.raises(BundleError, match="no murmur executable"):
        read_build(tmp_path)


def test_images_are_saved_with_docker_and_named_by_their_id(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    """Through a stand-in `docker` that answers like the real CLI (the real engine is
    exercised by the Docker tests; this checks what the bundle records)."""
    docker = tmp_path / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = image ]; then echo sha256:' + "ab" * 32 + "; exit 0; fi\n"
        'if [ "$1" = save ]; then echo "tar of $4" > "$3"; exit 0; fi\n'
        "exit 1\n"
    )
    docker.chmod(0o755)
    manifest = create_bundle(
        tmp_path / "bundle",
        key=load_private_key(keys[0]),
        onedirs=[make_fake_onedir(tmp_path / "onedir")],
        wheels=WheelSource(),
        images=["lab/pytorch:2.4"],
        docker=str(docker),
    )
    (image,) = manifest.images
    assert image.file == image_file_name("lab/pytorch:2.4") == "images/lab_pytorch_2.4.tar"
    assert image.digest == "sha256:" + "ab" * 32
    assert (tmp_path / "bundle" / image.file).read_text() == "tar of lab/pytorch:2.4\n"
    assert verify(tmp_path / "bundle", keys[0]).images == (image,)


def test_the_glibc_floor_is_what_objdump_reads() -> None:
    """The ELF reader against binutils, on this interpreter's own executable."""
    executable = Path(sys.executable).resolve()
    facts = read_elf(executable)
    assert facts is not None
    floor = glibc_floor(executable)
    assert floor.version is not None
    assert floor.version.startswith("GLIBC_2.")
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed to compare with")
    shown = subprocess.run(
        ["objdump", "-T", str(executable)], capture_output=True, text=True, check=True
    ).stdout
    versions = {word.strip("()") for word in shown.split() if word.strip("(").startswith("GLIBC_2")}
    assert floor.version == max(versions, key=version_key)
    assert read_elf(Path(__file__)) is None
