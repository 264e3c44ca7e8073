"""Image references (``NAME@VERSION``) and the image sources of a repository (``images/``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from infrablocks.errors import UsageError

IMAGES_DIR = "images"
TEMPLATE_SUFFIX = ".pkr.hcl"

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")


@dataclass(frozen=True, order=True)
class ImageRef:
    """One immutable image version, e.g. ``etcd@1.0.0``."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


def parse_image_ref(text: str) -> ImageRef:
    """``"etcd@1.0.0"`` → ImageRef; a UsageError says what a valid reference looks like."""
    name, sep, version = text.strip().partition("@")
    if not sep or not _NAME.match(name) or not _VERSION.match(version):
        raise UsageError(
            f"invalid image reference {text!r}",
            hint="write NAME@VERSION with a semantic version, e.g. etcd@1.0.0",
        )
    return ImageRef(name, version)


def image_source_dir(repo_root: Path, ref: ImageRef) -> Path:
    return repo_root / IMAGES_DIR / ref.name / ref.version


def available_images(repo_root: Path) -> dict[str, list[str]]:
    """Image name → versions that have a packer template, both sorted."""
    found: dict[str, list[str]] = {}
    base = repo_root / IMAGES_DIR
    if not base.is_dir():
        return found
    for name_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        versions = [v.name for v in name_dir.iterdir()
                    if v.is_dir() and any(v.glob(f"*{TEMPLATE_SUFFIX}"))]
        if versions:
            found[name_dir.name] = sorted(versions, key=version_key)
    return found


def find_template_dir(repo_root: Path, ref: ImageRef) -> Path:
    """The directory holding ``ref``'s packer template; a UsageError lists what exists."""
    source = image_source_dir(repo_root, ref)
    if source.is_dir() and any(source.glob(f"*{TEMPLATE_SUFFIX}")):
        return source
    images = available_images(repo_root)
    where = f"{IMAGES_DIR}/{ref.name}/{ref.version}/*{TEMPLATE_SUFFIX}"
    if ref.name in images:
        raise UsageError(
            f"image {ref}: no packer template ({where} not found)",
            hint=f"available versions of {ref.name}: {', '.join(images[ref.name])}",
        )
    known = ", ".join(f"{n}@{v}" for n, vs in images.items() for v in vs) or "none"
    raise UsageError(f"image {ref}: no image named {ref.name!r} in {repo_root / IMAGES_DIR}",
                     hint=f"available images: {known}")


def version_key(version: str) -> tuple[int, ...]:
    core = re.split(r"[-+]", version, maxsplit=1)[0]
    try:
        return tuple(int(part) for part in core.split("."))
    except ValueError:
        return (0,)
