"""Machine images: packer builds of ``images/NAME/VERSION/``, registration in the local cloud
and lookup. See docs/images.md."""

from __future__ import annotations

from infrablocks.images.build import (
    BuiltArtifact,
    build_artifact,
    build_image,
    ensure_image,
    lookup_image,
    register_artifact,
)
from infrablocks.images.packer import PackerError
from infrablocks.images.refs import (
    ImageRef,
    available_images,
    find_template_dir,
    parse_image_ref,
)
from infrablocks.images.verify import ImageVerification, verify_image

__all__ = [
    "BuiltArtifact",
    "ImageRef",
    "ImageVerification",
    "PackerError",
    "available_images",
    "build_artifact",
    "build_image",
    "ensure_image",
    "find_template_dir",
    "lookup_image",
    "parse_image_ref",
    "register_artifact",
    "verify_image",
]
