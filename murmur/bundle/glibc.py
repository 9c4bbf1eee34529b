"""The glibc a build needs: the highest ``GLIBC_x.y`` symbol version its ELF files ask
for, read from their version-needed sections (``.gnu.version_r``).

That is exactly what the dynamic loader checks when it loads a file: a host whose
glibc is older than one of these versions refuses to start the program ("version
`GLIBC_2.34' not found"). ``objdump -T`` shows the same, but binutils is not on
every machine that makes a bundle, so the ELF is read here with the standard
library alone. 32- and 64-bit, either byte order; a file that is not ELF, or is
damaged, needs nothing.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
SHT_GNU_VERNEED = 0x6FFFFFFE

MACHINES = {3: "i686", 40: "armv7l", 62: "x86_64", 183: "aarch64", 243: "riscv64", 21: "ppc64le"}
"""ELF ``e_machine`` to the name ``uname -m`` gives (ppc64le's 21 is EM_PPC64)."""


@dataclass(frozen=True)
class ElfFacts:
    """What a build needs from the host, from one ELF file."""

    machine: str
    """Architecture as ``uname -m`` names it, or ``elf-machine-N``."""
    needed_versions: frozenset[str]
    """Every symbol version it needs (``GLIBC_2.17``, ``GLIBCXX_3.4``, ...)."""


def version_key(name: str) -> tuple[int, ...]:
    """``GLIBC_2.34`` -> (2, 34): how glibc versions compare."""
    try:
        return tuple(int(part) for part in name.split("_", 1)[1].split("."))
    except (IndexError, ValueError):
        return ()


def read_elf(path: Path) -> ElfFacts | None:
    """The facts of one file, or None when it is not (readable) ELF."""
    try:
        with path.open("rb") as handle:
            data = handle.read()
    except OSError:
        return None
    if data[:4] != ELF_MAGIC or len(data) < 64:
        return None
    try:
        return _parse(data)
    except (struct.error, IndexError, ValueError):
        return None


def _parse(data: bytes) -> ElfFacts:
    is_64 = data[4] == 2
    order = "<" if data[5] == 1 else ">"
    (machine,) = struct.unpack_from(order + "H", data, 18)
    if is_64:
        shoff, shentsize, shnum = (
            struct.unpack_from(order + "Q", data, 0x28)[0],
            *struct.unpack_from(order + "HH", data, 0x3A),
        )
        section = order + "IIQQQQIIQQ"
    else:
        shoff, shentsize, shnum = (
            struct.unpack_from(order + "I", data, 0x20)[0],
            *struct.unpack_from(order + "HH", data, 0x2E),
        )
        section = order + "IIIIIIIIII"
    sections = [
        struct.unpack_from(section, data, shoff + index * shentsize) for index in range(shnum)
    ]
    versions: set[str] = set()
    for fields in sections:
        if fields[1] != SHT_GNU_VERNEED:
            continue
        offset, link, count = fields[4], fields[6], fields[7]  # sh_offset, sh_link, sh_info
        strings = sections[link][4]
        versions.update(_needed(data, order, offset, count, strings))
    return ElfFacts(MACHINES.get(machine, f"elf-machine-{machine}"), frozenset(versions))


def _needed(data: bytes, order: str, offset: int, count: int, strings: int) -> Iterator[str]:
    """The version names of a ``.gnu.version_r`` section (Elf_Verneed / Elf_Vernaux,
    the same layout in 32- and 64-bit files)."""
    entry = offset
    for _ in range(count):
        _, aux_count, _, aux, following = struct.unpack_from(order + "HHIII", data, entry)
        at = entry + aux
        for _ in range(aux_count):
            _, _, _, name, aux_next = struct.unpack_from(order + "IHHII", data, at)
            yield _string(data, strings + name)
            if not aux_next:
                break
            at += aux_next
        if not following:
            break
        entry += following


def _string(data: bytes, at: int) -> str:
    end = data.index(b"\0", at)
    return data[at:end].decode("ascii", "replace")


def elf_files(root: Path) -> Iterator[tuple[Path, ElfFacts]]:
    """Every ELF file under ``root`` (or ``root`` itself), links not followed."""
    paths: Iterable[Path]
    if root.is_file():
        paths = [root]
    else:
        paths = sorted(
            Path(folder) / name
            for folder, _, names in os.walk(root)
            for name in names
            if not (Path(folder) / name).is_symlink()
        )
    for path in paths:
        facts = read_elf(path)
        if facts is not None:
            yield path, facts


@dataclass(frozen=True)
class GlibcFloor:
    """The oldest glibc a tree runs on, and the files that set it."""

    version: str | None
    """``GLIBC_2.34``, or None when nothing asks for a versioned glibc symbol."""
    needed_by: tuple[str, ...]
    """The files (relative to the tree) that need exactly ``version``."""
    machines: tuple[str, ...]
    """The architectures of the tree's ELF files."""

    @property
    def number(self) -> str | None:
        """``2.34`` for ``GLIBC_2.34``."""
        return None if self.version is None else self.version.split("_", 1)[1]


def glibc_floor(root: Path) -> GlibcFloor:
    """The highest ``GLIBC_*`` version any ELF file under ``root`` needs."""
    best: str | None = None
    needed_by: list[str] = []
    machines: set[str] = set()
    for path, facts in elf_files(root):
        machines.add(facts.machine)
        glibc = [name for name in facts.needed_versions if name.startswith("GLIBC_2")]
        if not glibc:
            continue
        highest = max(glibc, key=version_key)
        shown = str(path.relative_to(root)) if path != root else path.name
        if best is None or version_key(highest) > version_key(best):
            best, needed_by = highest, [shown]
        elif highest == best:
            needed_by.append(shown)
    return GlibcFloor(best, tuple(needed_by), tuple(sorted(machines)))
