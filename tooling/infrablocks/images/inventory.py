"""What images exist: registered in the local cloud and/or as templates in ``images/``, which
block versions use each, and pruning the registered ones nothing needs.

Also the registry check "every block version's images exist as templates" (``doit check``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.images.refs import available_images, version_key

if TYPE_CHECKING:
    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.registry import Registry


@dataclass(frozen=True)
class ImageRow:
    name: str
    version: str
    id: str | None                  # None: a template that is not registered
    tags: tuple[str, ...] = ()
    built: str = ""                 # ISO time of the packer build (or the registration)
    size_bytes: int | None = None
    used_by: tuple[str, ...] = ()   # "base@1.0.0", … (block versions listing it)
    template: bool = True           # images/NAME/VERSION/ has a template
    instances: tuple[str, ...] = field(default=())   # instances running it now

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(ref=self.ref, tags=list(self.tags), used_by=list(self.used_by),
                    instances=list(self.instances))
        return data


@dataclass(frozen=True)
class PruneResult:
    removed: list[ImageRow]
    kept_in_use: list[tuple[ImageRow, str]]   # untagged, unused by blocks, but refused


def image_users(registry: Registry) -> dict[str, list[str]]:
    """``"etcd@1.0.0"`` → block versions listing it (``"base@1.0.0"``), in registry order."""
    users: dict[str, list[str]] = {}
    for block in registry.blocks.values():
        for bv in block.versions.values():
            for image in bv.images:
                users.setdefault(image, []).append(f"{block.name}@{bv.version}")
    return users


def list_images(repo_root: Path, cloud: LocalCloud, registry: Registry) -> list[ImageRow]:
    """Every registered image, plus every template version that is not registered."""
    users = image_users(registry)
    templates = {f"{n}@{v}" for n, versions in available_images(repo_root).items()
                 for v in versions}
    running: dict[str, list[str]] = {}
    for instance in cloud.describe_instances():
        running.setdefault(instance.image_id, []).append(instance.id)
    rows = []
    registered = set()
    for image in cloud.list_images():
        registered.add(image.ref)
        rows.append(ImageRow(
            name=image.name, version=image.version, id=image.id, tags=tuple(image.tags),
            built=image.metadata.get("built_at") or image.registered_at,
            size_bytes=_size(Path(image.path)), used_by=tuple(users.get(image.ref, ())),
            template=image.ref in templates, instances=tuple(running.get(image.id, ()))))
    for ref in sorted(templates - registered):
        name, _, version = ref.partition("@")
        rows.append(ImageRow(name=name, version=version, id=None,
                             used_by=tuple(users.get(ref, ()))))
    return sorted(rows, key=lambda r: (r.name, version_key(r.version), r.id or ""))


def prune_images(repo_root: Path, cloud: LocalCloud, registry: Registry, *,
                 dry_run: bool = False) -> PruneResult:
    """Remove registered images that carry no tag and that no block version uses."""
    from infrablocks.errors import InfrablocksError

    removed, refused = [], []
    for row in list_images(repo_root, cloud, registry):
        if row.id is None or row.tags or row.used_by:
            continue
        if row.instances:
            refused.append((row, "used by instance" + ("" if len(row.instances) == 1 else "s")
                            + f" {', '.join(row.instances)}"))
            continue
        if not dry_run:
            try:
                cloud.remove_image(row.id)
            except InfrablocksError as exc:
                refused.append((row, exc.message))
                continue
        removed.append(row)
    return PruneResult(removed=removed, kept_in_use=refused)


def check_block_images(registry: Registry) -> list[str]:
    """``doit check``: every image a block version names exists as a template in images/."""
    templates = available_images(registry.root)
    problems = []
    for block in registry.blocks.values():
        for bv in block.versions.values():
            for text in bv.images:
                name, _, version = text.partition("@")
                if version in templates.get(name, ()):
                    continue
                where = f"blocks.{block.name}.versions.\"{bv.version}\".images"
                if name in templates:
                    valid = f"versions of {name}: {', '.join(templates[name])}"
                else:
                    valid = "images: " + (", ".join(templates) or "none")
                problems.append(f"{where}: {text} has no template (images/{name}/{version}/"
                                f"*.pkr.hcl not found; {valid})")
    return problems


def format_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
