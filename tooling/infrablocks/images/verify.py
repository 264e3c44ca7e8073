"""Checking registered images: intact (the artifact still has its registered digest) and
current (rebuilding the version from ``images/`` gives the same content).

A version whose source changed after it was registered is the mistake this catches: versions
are immutable, so such a change needs a new version (CI runs ``doit image --verify``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infrablocks.images.build import build_artifact
from infrablocks.images.refs import ImageRef

if TYPE_CHECKING:
    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.cloud.local.records import Image

IMAGE_RECORD = "image.json"   # the cloud's own record inside an image directory


@dataclass(frozen=True)
class ImageVerification:
    ref: ImageRef
    image: Image | None          # the registered image, None when not registered
    stored_digest: str | None    # digest of the artifact as it is now in the cloud
    source_digest: str | None    # digest of a fresh build (None: not registered, not built)
    log_path: Path | None

    @property
    def registered(self) -> bool:
        return self.image is not None

    @property
    def intact(self) -> bool:
        return self.image is not None and self.stored_digest == self.image.digest

    @property
    def matches_source(self) -> bool:
        return self.image is not None and self.image.digest == self.source_digest

    @property
    def ok(self) -> bool:
        return self.intact and self.matches_source

    def problems(self) -> list[str]:
        if self.image is None:
            return [f"{self.ref} is not registered (build it with `doit image {self.ref} --keep`)"]
        found = []
        if not self.intact:
            found.append(f"{self.ref} ({self.image.id}): the artifact in the cloud was modified "
                         f"(now {self.stored_digest}, registered {self.image.digest})")
        if not self.matches_source:
            found.append(f"{self.ref} ({self.image.id}): images/{self.ref.name}/"
                         f"{self.ref.version}/ changed since it was registered (a fresh build "
                         f"gives {self.source_digest}); give the change a new version")
        return found


def verify_image(repo_root: Path, ref: ImageRef, cloud: LocalCloud, *,
                 log_dir: Path | None = None) -> ImageVerification:
    """Rebuild a registered ``ref`` in a scratch directory (nothing is registered) and compare.
    An unregistered ``ref`` is reported as such without building it."""
    from infrablocks.cloud.local.digest import artifact_digest
    from infrablocks.cloud.local.errors import NotFoundError

    try:
        image: Image | None = cloud.find_image(ref.name, ref.version)
    except NotFoundError:
        image = None
    if image is None:
        return ImageVerification(ref=ref, image=None, stored_digest=None, source_digest=None,
                                 log_path=None)
    stored = "sha256:" + artifact_digest(Path(image.path), exclude=frozenset({IMAGE_RECORD}))
    with tempfile.TemporaryDirectory(prefix="infrablocks-verify-") as tmp:
        artifact = build_artifact(repo_root, ref, Path(tmp) / "artifact", log_dir=log_dir)
    return ImageVerification(ref=ref, image=image, stored_digest=stored,
                             source_digest=artifact.digest, log_path=artifact.log_path)
