"""Digests of what a deployment was made from: a block version's code and its inputs.

The **module digest** covers the files of the version's directory that Terraform sees (the
same selection the working directory copies: ``tests/``, ``.terraform/``, caches, state files
and saved plans are left out) plus the image list blocks.toml gives the version. Each file has
its own sha256, so that an edit can be named file by file.

The **input digests** are one sha256 per Terraform variable the block receives (``environment``,
``subnet_cidr``, one object per dependency), of the variable's canonical JSON. A digest of a
secret reveals nothing readable (records already hold a digest of the outputs, never values).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infrablocks.registry import BlockVersion

IMAGES_ENTRY = "(blocks.toml images)"
"""The pseudo-file under which a version's image list is digested."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _combine(entries: Mapping[str, str]) -> str:
    return "sha256:" + _sha256(json.dumps(dict(sorted(entries.items())),
                                          separators=(",", ":")).encode())


@dataclass(frozen=True)
class ModuleDigest:
    """A block version's code: ``digest`` (``sha256:…``) over ``files`` (path → sha256 hex)."""

    digest: str
    files: dict[str, str] = field(default_factory=dict)

    def differences(self, other: ModuleDigest) -> list[str]:
        """What differs from ``other`` (the frozen one), one entry per file, sorted:
        ``main.tf (changed)``, ``extra.tf (added)``, ``old.tf (removed)``."""
        found = []
        for name in sorted(set(self.files) | set(other.files)):
            mine, theirs = self.files.get(name), other.files.get(name)
            if mine == theirs:
                continue
            what = "added" if theirs is None else "removed" if mine is None else "changed"
            found.append(f"{name} ({what})")
        if not found and self.digest != other.digest:
            found.append("(the digest differs)")
        return found

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "files": dict(sorted(self.files.items()))}

    @classmethod
    def from_json(cls, data: Any) -> ModuleDigest | None:
        """Parse what ``to_json`` wrote; None when ``data`` is not such a document."""
        if not isinstance(data, Mapping) or not isinstance(data.get("digest"), str):
            return None
        files = data.get("files")
        if not isinstance(files, Mapping):
            files = {}
        return cls(str(data["digest"]), {str(k): str(v) for k, v in files.items()})


def module_files(source_dir: Path) -> list[tuple[str, Path]]:
    """``(relative path, path)`` of the files of a block version Terraform sees, sorted."""
    from infrablocks.terraform.workdir import source_files

    return sorted(source_files(source_dir))


def module_digest_of(source_dir: Path, images: list[str] | tuple[str, ...] = ()) -> ModuleDigest:
    files = {relative: _sha256(path.read_bytes()) for relative, path in module_files(source_dir)}
    files[IMAGES_ENTRY] = _sha256("\n".join(sorted(images)).encode())
    return ModuleDigest(_combine(files), files)


def module_digest(version: BlockVersion) -> ModuleDigest:
    """The digest of ``version``'s code as it is in the repository now."""
    return module_digest_of(version.path, version.images)


def input_digests(inputs: Mapping[str, Any]) -> dict[str, str]:
    """One sha256 per variable, of its canonical JSON (sorted keys)."""
    return {name: _sha256(json.dumps(value, sort_keys=True, separators=(",", ":"),
                                     default=str).encode())
            for name, value in sorted(inputs.items())}


def inputs_digest(digests: Mapping[str, str]) -> str:
    """The digest of all inputs, from :func:`input_digests`."""
    return _combine(digests)


def changed_inputs(now: Mapping[str, str], recorded: Mapping[str, str]) -> list[str]:
    """Variables whose digest differs (or that appeared / disappeared), sorted."""
    return sorted(name for name in set(now) | set(recorded)
                  if now.get(name) != recorded.get(name))
