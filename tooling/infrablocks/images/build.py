"""Building an image version with packer and registering it in the local cloud.

The build runs on a copy of ``images/NAME/VERSION/`` in a scratch directory (packer never
writes into the source tree); the template's provisioners assemble the artifact directory named
by the ``output_dir`` variable, and the ``manifest`` post-processor records the build. The
artifact's content digest is what makes the cloud's image id: the same version built twice gives
the same id, and different content under one version is refused by the cloud.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.errors import InfrablocksError
from infrablocks.images.packer import packer_build
from infrablocks.images.refs import ImageRef, find_template_dir
from infrablocks.paths import work_dir

if TYPE_CHECKING:
    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.cloud.local.records import Image

ENTRYPOINT = "entrypoint"


@dataclass(frozen=True)
class BuiltArtifact:
    """An image artifact directory produced by packer, not yet registered anywhere."""

    ref: ImageRef
    path: Path                  # the artifact directory (entrypoint + files)
    digest: str                 # "sha256:<hex>", as the local cloud computes it
    build_seconds: float
    log_path: Path
    packer_manifest: dict[str, Any]


def image_log_dir(repo_root: Path) -> Path:
    return work_dir(repo_root) / "logs" / "images"


def build_artifact(repo_root: Path, ref: ImageRef, dest: Path, *,
                   log_dir: Path | None = None) -> BuiltArtifact:
    """Run ``packer build`` for ``ref`` and leave the artifact directory at ``dest``.

    ``dest`` must not exist yet; its parent is created. The packer log goes to
    ``log_dir/NAME@VERSION.log`` (default: ``.infrablocks/logs/images/``).
    """
    from infrablocks.cloud.local.digest import artifact_digest

    template_dir = find_template_dir(repo_root, ref)
    dest = Path(dest).resolve()
    if dest.exists():
        raise InfrablocksError(f"image {ref}: artifact directory {dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    log_path = (log_dir or image_log_dir(repo_root)) / f"{ref}.log"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"infrablocks-image-{ref.name}-") as scratch:
        scratch_dir = Path(scratch)
        source = scratch_dir / "source"
        shutil.copytree(template_dir, source, symlinks=True)
        manifest_path = scratch_dir / "packer-manifest.json"
        build_out = scratch_dir / "artifact"
        packer_build(source, {"output_dir": str(build_out), "manifest_path": str(manifest_path)},
                     log_path, what=f"image {ref}", scratch_dir=scratch_dir)
        _check_artifact(ref, build_out, log_path)
        manifest = _read_manifest(manifest_path)
        shutil.move(str(build_out), dest)
    return BuiltArtifact(ref=ref, path=dest, digest=f"sha256:{artifact_digest(dest)}",
                         build_seconds=time.monotonic() - started, log_path=log_path,
                         packer_manifest=manifest)


def register_artifact(cloud: LocalCloud, artifact: BuiltArtifact,
                      tags: Iterable[str] = ()) -> Image:
    """Register a built artifact under its name and version (the cloud copies it).

    The build's record (packer run, build time, source) goes into the image's metadata the
    first time a version is registered; registering the same content again keeps it.
    """
    manifest = artifact.packer_manifest
    metadata = {
        "source": f"images/{artifact.ref.name}/{artifact.ref.version}",
        "build_seconds": f"{artifact.build_seconds:.2f}",
        "builder": str(manifest.get("builder_type", "")),
        "packer_run_uuid": str(manifest.get("packer_run_uuid", "")),
        "built_at": _iso(manifest.get("build_time")),
    }
    return cloud.register_image(artifact.ref.name, artifact.ref.version, artifact.path,
                                tags=tuple(tags), metadata=metadata)


def build_image(repo_root: Path, name: str, version: str, cloud: LocalCloud, *,
                tags: Iterable[str] = (), log_dir: Path | None = None) -> Image:
    """Build ``name@version`` from ``images/NAME/VERSION/`` and register it in ``cloud``.

    Building a version again gives the same image (same id); a version whose content changed
    since it was registered is refused by the cloud (versions are immutable).
    """
    ref = ImageRef(name, version)
    with tempfile.TemporaryDirectory(prefix="infrablocks-artifact-") as tmp:
        artifact = build_artifact(repo_root, ref, Path(tmp) / "artifact", log_dir=log_dir)
        return register_artifact(cloud, artifact, tags)


def lookup_image(cloud: LocalCloud, ref: ImageRef) -> Image:
    """The registered image ``ref``; the error says how to build it."""
    from infrablocks.cloud.local.errors import NotFoundError

    try:
        return cloud.find_image(ref.name, ref.version)
    except NotFoundError as exc:
        raise NotFoundError(f"{exc.message}",
                            hint=f"build and keep it with `doit image {ref} --keep`") from None


def ensure_image(repo_root: Path, ref: ImageRef, cloud: LocalCloud, *,
                 log_dir: Path | None = None) -> Image:
    """The registered image ``ref``, built and registered first if the cloud lacks it."""
    from infrablocks.cloud.local.errors import NotFoundError

    try:
        return cloud.find_image(ref.name, ref.version)
    except NotFoundError:
        return build_image(repo_root, ref.name, ref.version, cloud, log_dir=log_dir)


def _check_artifact(ref: ImageRef, path: Path, log_path: Path) -> None:
    entrypoint = path / ENTRYPOINT
    if not path.is_dir():
        problem = f"the template did not create the artifact directory (var.output_dir = {path})"
    elif not entrypoint.is_file():
        problem = f"the artifact has no `{ENTRYPOINT}` file"
    elif not os.access(entrypoint, os.X_OK):
        problem = f"the artifact's `{ENTRYPOINT}` is not executable"
    else:
        return
    raise InfrablocksError(f"image {ref}: {problem}",
                           hint=f"see the template in images/{ref.name}/{ref.version}/ and the "
                                f"packer log {log_path}")


def _iso(epoch: object) -> str:
    from datetime import UTC, datetime

    if not isinstance(epoch, int | float):
        return ""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    builds = data.get("builds") or [{}]
    return builds[-1] if isinstance(builds[-1], dict) else {}
