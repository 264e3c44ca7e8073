"""Content digest of an image artifact directory."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def artifact_digest(root: Path, exclude: frozenset[str] = frozenset()) -> str:
    """sha256 over every entry's relative path, kind, permission bits and content (symlinks:
    their target), in sorted order — the same tree always gives the same digest.

    ``exclude`` names top-level entries left out (the registry's own ``image.json``)."""
    digest = hashlib.sha256()
    entries: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        entries.extend(base / name for name in dirnames)
        entries.extend(base / name for name in filenames)
    for path in sorted(entries, key=lambda p: p.relative_to(root).as_posix()):
        if path.relative_to(root).parts[0] in exclude:
            continue
        info = path.lstat()
        rel = path.relative_to(root).as_posix()
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISLNK(info.st_mode):
            kind, payload = b"l", os.readlink(path).encode()
        elif stat.S_ISDIR(info.st_mode):
            kind, payload = b"d", b""
        elif stat.S_ISREG(info.st_mode):
            kind, payload = b"f", path.read_bytes()
        else:
            raise ValueError(f"{path}: only files, directories and symlinks belong in an image")
        digest.update(rel.encode() + b"\0" + kind + b"\0" + f"{mode:o}".encode() + b"\0")
        digest.update(f"{len(payload)}".encode() + b"\0" + payload)
    return digest.hexdigest()
