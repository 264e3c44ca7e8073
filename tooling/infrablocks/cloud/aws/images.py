"""AMIs of infrablocks images: their names and tags, finding them, registering them.

One convention, shared by the packer templates (``images/NAME/VERSION/aws/*.pkr.hcl``: the
``amazon-ebs`` builder's ``ami_name`` and ``tags``), the blocks' lookups (``data "aws_ami"``
filtered on the name and the ``infrablocks:image`` tag, owner ``self``) and the platform's
``ensure_images``::

    name  infrablocks-NAME-VERSION
    tags  Name = infrablocks-NAME-VERSION, infrablocks:image = NAME@VERSION,
          image_name = NAME, image_version = VERSION

:func:`register_ami` registers an AMI under that convention from an existing root snapshot or
AMI (an image built elsewhere, copied in; on an EC2 emulator such as moto, where packer's
``amazon-ebs`` cannot build — it needs SSH into a real instance — it is how the AMIs come to
exist, so that the blocks run the same lookup as on AWS).
"""

from __future__ import annotations

from typing import Any, Protocol

from infrablocks.cloud.aws.ops import translated

__all__ = ["IMAGE_TAG", "ImageVersion", "ami_name", "ami_tags", "describe_amis", "find_ami",
           "register_ami"]

IMAGE_TAG = "infrablocks:image"


class ImageVersion(Protocol):
    """One image version as the convention names it (``infrablocks.images.refs.ImageRef`` is
    one; the cloud layer sits below the images layer and does not import it)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...


def ami_name(ref: ImageVersion) -> str:
    return f"infrablocks-{ref.name}-{ref.version}"


def ami_tags(ref: ImageVersion) -> dict[str, str]:
    return {"Name": ami_name(ref), IMAGE_TAG: f"{ref.name}@{ref.version}",
            "image_name": ref.name, "image_version": str(ref.version)}


def find_ami(ec2: Any, ref: ImageVersion) -> dict[str, Any] | None:
    """The newest available AMI of ``ref`` owned by the account (the blocks' lookup), or None."""
    with translated(f"image {ref}"):
        images = ec2.describe_images(Owners=["self"], Filters=[
            {"Name": "name", "Values": [ami_name(ref)]},
            {"Name": f"tag:{IMAGE_TAG}", "Values": [f"{ref.name}@{ref.version}"]},
        ]).get("Images", [])
    usable = [image for image in images if image.get("State", "available") == "available"]
    return max(usable, key=lambda image: image.get("CreationDate", ""), default=None)


def describe_amis(ec2: Any) -> list[dict[str, Any]]:
    """Every AMI of the account that carries the ``infrablocks:image`` tag."""
    with translated("images"):
        images = ec2.describe_images(Owners=["self"], Filters=[
            {"Name": "tag-key", "Values": [IMAGE_TAG]}]).get("Images", [])
    return sorted(images, key=lambda image: image.get("Name", ""))


def register_ami(ec2: Any, ref: ImageVersion, *, source_image_id: str,
                 description: str | None = None) -> str:
    """Register an AMI named and tagged for ``ref`` with the root device of
    ``source_image_id`` (its snapshot); returns the new AMI's id.

    Refuses when the account already has an AMI for ``ref`` (AMI names are unique).
    """
    from infrablocks.errors import InfrablocksError

    existing = find_ami(ec2, ref)
    if existing is not None:
        raise InfrablocksError(f"image {ref} is already registered as {existing['ImageId']} "
                               f"({ami_name(ref)})")
    with translated(f"image {source_image_id}"):
        source = ec2.describe_images(ImageIds=[source_image_id])["Images"][0]
    root = source.get("RootDeviceName", "/dev/xvda")
    mappings = [m for m in source.get("BlockDeviceMappings", []) if m.get("DeviceName") == root]
    if not mappings:
        mappings = [{"DeviceName": root, "Ebs": {"VolumeSize": 8}}]
    for mapping in mappings:
        ebs = {k: v for k, v in mapping.get("Ebs", {}).items()
               if k in ("SnapshotId", "VolumeSize", "VolumeType", "DeleteOnTermination")}
        mapping["Ebs"] = ebs
    with translated(f"image {ref}"):
        image_id = ec2.register_image(
            Name=ami_name(ref), Description=description or f"infrablocks image {ref}",
            Architecture=source.get("Architecture", "x86_64"), RootDeviceName=root,
            VirtualizationType=source.get("VirtualizationType", "hvm"),
            BlockDeviceMappings=mappings)["ImageId"]
        ec2.create_tags(Resources=[image_id], Tags=[{"Key": k, "Value": v}
                                                    for k, v in ami_tags(ref).items()])
    return str(image_id)

