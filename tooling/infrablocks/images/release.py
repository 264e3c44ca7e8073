"""``doit image NAME@VERSION``: build with packer, register, verify by booting, then tag it or
remove it.

An image that fails its checks is removed (when this run registered it) and the error names the
failed checks and shows the console. A verified image is kept only when it is tagged (or
``keep`` is asked for, or it was registered before this run: something may use it).
"""

from __future__ import annotations

import ipaddress
import tempfile
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infrablocks.errors import InfrablocksError
from infrablocks.images.boot import BootVerification, boot_verify
from infrablocks.images.build import BuiltArtifact, build_artifact, ensure_image, register_artifact
from infrablocks.images.acceptance import load_verify_spec
from infrablocks.images.refs import ImageRef, find_template_dir

if TYPE_CHECKING:
    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.cloud.local.records import Image

KEPT_TAGGED = "kept (tagged)"
KEPT = "kept"
KEPT_EXISTING = "kept (was registered before)"
REMOVED = "removed (untagged)"


class ImageVerificationError(InfrablocksError):
    """A freshly built image failed its own checks."""

    def __init__(self, message: str, verification: BootVerification, *,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.verification = verification


@dataclass(frozen=True)
class ImageRelease:
    ref: ImageRef
    image: Image                 # as registered (its tags after tagging)
    artifact: BuiltArtifact
    verification: BootVerification
    outcome: str                 # KEPT_TAGGED | KEPT | KEPT_EXISTING | REMOVED
    new: bool                    # this run registered it (False: same content was there)


def release_image(repo_root: Path, ref: ImageRef, cloud: LocalCloud, *,
                  tag: str | None = None, keep: bool = False,
                  subnet: ipaddress.IPv4Network | None = None, log_dir: Path | None = None,
                  progress: Callable[[str], None] | None = None) -> ImageRelease:
    """Build ``ref``, register it untagged, verify it by booting, then tag, keep or remove it.

    Raises ImageVerificationError when a check fails (the image is removed first if this run
    registered it), PackerError when the build fails, ConfigError for a bad checks.toml.
    """
    say = progress or (lambda _text: None)
    find_template_dir(repo_root, ref)
    spec = load_verify_spec(repo_root, ref)          # a bad checks.toml fails before the build
    companions_before = {image.id for image in cloud.list_images()}
    with tempfile.TemporaryDirectory(prefix="infrablocks-artifact-") as tmp:
        say(f"building {ref} with packer")
        artifact = build_artifact(repo_root, ref, Path(tmp) / "artifact", log_dir=log_dir)
        before = {image.id for image in cloud.list_images() if image.ref == str(ref)}
        image = register_artifact(cloud, artifact)
    new = image.id not in before
    companion_images = {}
    try:
        for companion in spec.companions:
            say(f"companion image {companion.image}")
            companion_images[companion.name] = ensure_image(repo_root, companion.image, cloud,
                                                            log_dir=log_dir)
        verification = boot_verify(spec, image, cloud, companion_images, subnet=subnet,
                                   progress=say)
    except BaseException:   # a companion did not build, no free address, Ctrl-C: not verified
        if new:
            _remove_quietly(cloud, image.id)
        raise
    finally:
        for companion_image in companion_images.values():   # built only for this verification
            if companion_image.id not in companions_before and companion_image.id != image.id \
                    and not companion_image.tags:
                _remove_quietly(cloud, companion_image.id)
    if not verification.ok:
        if new:
            cloud.remove_image(image.id)
        fate = ("the image was removed" if new else
                f"the image {image.id} was registered before this run and is kept")
        details = "\n".join(f"    - {p}" for p in verification.problems())
        console = ("\n  console (last lines):\n" + "\n".join(
            f"    | {line}" for line in verification.console.splitlines())
            if verification.console else "")
        raise ImageVerificationError(
            f"image {ref} failed verification ({fate}):\n{details}{console}", verification,
            hint=f"the checks are in images/{ref.name}/{ref.version}/checks.toml; "
                 f"packer log: {artifact.log_path}")
    if tag:
        image = cloud.tag_image(image.id, tag)
        outcome = KEPT_TAGGED
    elif not new:
        outcome = KEPT_EXISTING
    elif keep:
        outcome = KEPT
    else:
        cloud.remove_image(image.id)
        outcome = REMOVED
    return ImageRelease(ref=ref, image=image, artifact=artifact, verification=verification,
                        outcome=outcome, new=new)


def _remove_quietly(cloud: LocalCloud, image_id: str) -> None:
    """Remove a companion image built only for a verification; one in use meanwhile stays."""
    with suppress(InfrablocksError):
        cloud.remove_image(image_id)
