"""An AWS account and region as a :class:`~infrablocks.platforms.base.Platform`.

Blocks run their AWS module (``blocks/NAME/VERSION/aws/``, the hashicorp/aws provider) with
the region, profile and endpoint overrides of the platform's settings handed to Terraform as the
SDKs' environment variables; credentials come from the AWS chain of the process (never from
blocks.toml, never written by the tool). The rolling steps go through
:class:`~infrablocks.cloud.aws.ops.AwsCloudOps` (boto3), images are AMIs found by name and tags
(:mod:`infrablocks.cloud.aws.images`), each environment gets a subnet of the platform's VPC
(:mod:`infrablocks.cloud.aws.network`), and sweeps and inventories filter EC2 by the
``environment`` / ``block`` tags (:mod:`infrablocks.cloud.aws.inventory`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.cloud.aws.settings import AwsSettings, settings_problems
from infrablocks.errors import ConfigError, InfrablocksError

if TYPE_CHECKING:
    from infrablocks.cloud.aws.ops import AwsCloudOps
    from infrablocks.cloud.ops import InstanceInfo
    from infrablocks.platforms.base import SweepReport
    from infrablocks.terraform.reattach import SharedProvider

__all__ = ["MODULE_FOLDER", "AwsPlatform"]

MODULE_FOLDER = "aws"            # blocks/NAME/VERSION/aws/: a block version's AWS module
STOP_TIMEOUT = 600.0             # seconds a forced stop / a termination may take on EC2


class AwsPlatform:
    """One AWS region (of the credentials' account), as blocks.toml's settings describe it."""

    name = "aws"
    module_folder = MODULE_FOLDER
    settings_problems = staticmethod(settings_problems)

    def __init__(self, repo_root: Path, settings: AwsSettings) -> None:
        self.repo_root = repo_root
        self.settings = settings
        self._ops: AwsCloudOps | None = None
        self._ec2: Any = None
        self._vpc: dict[str, Any] | None = None
        self._lock = threading.Lock()

    @classmethod
    def open(cls, repo_root: Path, **settings: Any) -> AwsPlatform:
        """Nothing is called on AWS until a method needs it (``doit check`` stays offline)."""
        return cls(repo_root, AwsSettings.from_table(settings, "blocks.toml platform (aws)"))

    def __repr__(self) -> str:
        return f"AwsPlatform({self.settings.describe()})"

    # -- clients ----------------------------------------------------------------------------

    @property
    def ec2(self) -> Any:
        with self._lock:
            if self._ec2 is None:
                self._ec2 = _client(self.settings, "ec2")
            return self._ec2

    @property
    def ops(self) -> AwsCloudOps:
        from infrablocks.cloud.aws.ops import AwsCloudOps

        with self._lock:
            if self._ops is None:
                self._ops = AwsCloudOps(_client(self.settings, "ec2"),
                                        poll_interval=self.settings.poll_interval)
            return self._ops

    def vpc(self) -> dict[str, Any]:
        from infrablocks.cloud.aws.network import choose_vpc

        if self._vpc is None:
            self._vpc = choose_vpc(self.ec2, self.settings.vpc_id)
        return self._vpc

    # -- the Platform protocol --------------------------------------------------------------

    def terraform_env(self) -> dict[str, str]:
        """Region, profile and endpoint overrides as ``AWS_*`` variables (no credentials)."""
        return self.settings.environment()

    def shared_providers(self) -> Sequence[SharedProvider]:
        """None: Terraform starts hashicorp/aws itself (a Go binary, quick to start)."""
        return ()

    def block_module(self, version_dir: Path) -> Path:
        """``VERSION_DIR/aws``: the block version's module for the hashicorp/aws provider."""
        module = version_dir / self.module_folder
        if not module.is_dir():
            raise ConfigError(
                f"{_relative(version_dir, self.repo_root)} has no AWS module "
                f"({_relative(module, self.repo_root)}/ does not exist)",
                hint="write the block version's module for the hashicorp/aws provider there, "
                     "with the same variables and outputs as the local one (docs/aws.md)")
        return module

    def environment_subnet(self, environment: str, configured: str | None, *,
                           create: bool = True) -> str:
        """The CIDR of the environment's subnet in the platform's VPC (created when missing,
        unless ``create=False``)."""
        from infrablocks.cloud.aws.network import ensure_environment_subnet

        return ensure_environment_subnet(self.ec2, self.vpc(), environment,
                                         pool=self.settings.subnets, configured=configured,
                                         create=create)

    def ensure_images(self, images: Sequence[str], *,
                      before_each: Callable[[str], None] | None = None) -> list[str]:
        """The AMI of each image, found by name and tags (the blocks' own lookup); a missing
        one is an error naming how to build it (AMIs are not built implicitly: it takes a
        packer run on EC2 of several minutes)."""
        from infrablocks.cloud.aws.images import find_ami
        from infrablocks.images.refs import parse_image_ref

        ids = []
        for text in images:
            if before_each is not None:
                before_each(text)
            ref = parse_image_ref(text)
            found = find_ami(self.ec2, ref)
            if found is None:
                raise self._missing_error([str(ref)])
            ids.append(str(found["ImageId"]))
        return ids

    def check_images(self, images: Sequence[str]) -> None:
        """Before a plan: every image listed has its AMI, else the error ``ensure_images``
        gives, naming each missing one (the blocks' ``data "aws_ami"`` would otherwise fail
        the plan with Terraform's "Your query returned no results")."""
        missing = self.missing_images(images)
        if missing:
            raise self._missing_error(missing)

    def _missing_error(self, missing: Sequence[str]) -> InfrablocksError:
        from infrablocks.cloud.aws.images import ami_name, ami_tags
        from infrablocks.images.refs import parse_image_ref

        refs = [parse_image_ref(text) for text in missing]
        lines = []
        for ref in refs:
            tag = next(f"{k}={v}" for k, v in ami_tags(ref).items() if k.startswith("infra"))
            lines.append(f"image {ref} has no AMI in {self.settings.describe()}: none named "
                         f"{ami_name(ref)} with tag {tag} owned by the account")
        builds = "; ".join(f"packer build -var region={self.settings.region} "
                           f"images/{ref.name}/{ref.version}/aws/" for ref in refs)
        return InfrablocksError("\n".join(lines),
                                hint=f"build {'it' if len(refs) == 1 else 'them'}: {builds} "
                                     "(docs/aws.md, Images)")

    def missing_images(self, images: Sequence[str]) -> list[str]:
        """The images with no AMI named and tagged for them (read-only)."""
        from infrablocks.cloud.aws.images import find_ami
        from infrablocks.images.refs import parse_image_ref

        refs = [parse_image_ref(text) for text in images]
        return [str(ref) for ref in refs if find_ami(self.ec2, ref) is None]

    def block_instances(self, environment: str, block: str) -> list[InstanceInfo]:
        """The block's instances (tags ``environment`` and ``block``) that are not terminated:
        ``DescribeInstances`` filtered by tag and state."""
        from infrablocks.cloud.aws.ops import instance_info, translated

        live = ["pending", "running", "stopping", "stopped", "shutting-down"]
        with translated(f"instances of {block} in {environment}"):
            pages = self.ec2.get_paginator("describe_instances").paginate(Filters=[
                {"Name": "tag:environment", "Values": [environment]},
                {"Name": "tag:block", "Values": [block]},
                {"Name": "instance-state-name", "Values": live}])
            return [instance_info(description) for page in pages
                    for reservation in page.get("Reservations", [])
                    for description in reservation.get("Instances", [])]

    def stop_block_instances(self, environment: str, block: str, *,
                             grace: float) -> list[str]:
        from infrablocks.cloud.aws.inventory import stop_instances

        return stop_instances(self.ec2, environment, block, grace=grace, timeout=STOP_TIMEOUT,
                              poll_interval=self.settings.poll_interval)

    def release_environment_subnet(self, environment: str) -> str | None:
        from infrablocks.cloud.aws.network import delete_environment_subnet

        return delete_environment_subnet(self.ec2, self.vpc()["VpcId"], environment)

    def sweep_environment(self, environment: str) -> SweepReport:
        """Terminate, delete (see ``cloud.aws.inventory.sweep``), then delete the environment's
        subnet: not a leftover, so not reported unless it has to stay."""
        from infrablocks.cloud.aws.inventory import sweep
        from infrablocks.cloud.aws.network import delete_environment_subnet

        removed = sweep(self.ec2, environment, timeout=STOP_TIMEOUT,
                        poll_interval=self.settings.poll_interval)
        if not removed["kept"]:
            reason = delete_environment_subnet(self.ec2, self.vpc()["VpcId"], environment)
            if reason:
                removed["kept"].append(reason)
        return removed

    def inventory(self, environment: str | None = None) -> dict[str, Any]:
        from infrablocks.cloud.aws.inventory import snapshot

        def ready(instance_id: str) -> bool:
            try:
                return self.ops.instance_ready(instance_id)
            except InfrablocksError:
                return False

        return {"platform": self.name, "where": self.settings.describe(),
                **snapshot(self.ec2, environment, ready)}


def _client(settings: AwsSettings, service: str) -> Any:
    from botocore.exceptions import BotoCoreError

    try:
        return settings.client(service)
    except BotoCoreError as error:   # ProfileNotFound, a broken config file, …
        raise ConfigError(f"AWS platform ({settings.describe()}): {error}",
                          hint="check the profile in blocks.toml and ~/.aws/config") from None


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)

