"""The platform seam: what deployments and rolling upgrades need from where instances run.

``deploy/``, ``rolling/`` and the commands never reach into a particular cloud. They ask the
workspace for the environment's platform (``workspace.platform(environment)``) and use only
this protocol. ``infrablocks.platforms.local.LocalPlatform`` implements it on the embedded
local cloud; an AWS platform implements the same methods with boto3 (its ``ops`` is
``infrablocks.cloud.aws.ops.AwsCloudOps``) and the hashicorp/aws provider's settings.

Vocabulary is EC2's (instances ``pending | running | stopping | stopped | terminated``, volumes
``available | in-use``); instances and volumes a block creates carry the tags ``environment``
and ``block``, which is how a platform finds a block's or an environment's resources.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pathlib import Path

    from infrablocks.cloud.ops import CloudOps, InstanceInfo
    from infrablocks.terraform.reattach import SharedProvider

__all__ = ["Platform", "SweepReport"]

SweepReport = dict[str, list[str]]
"""What a sweep removed: ``{"instances": [...], "volumes": [...], "kept": [...]}``, each entry
``"name (id)"``; ``kept`` names what could not go, with the reason."""


@runtime_checkable
class Platform(Protocol):
    """One platform (the local cloud, an AWS account and region …) as the tool uses it."""

    name: str
    """The platform's kind as blocks.toml spells it: ``"local"``, ``"aws"``."""

    @property
    def ops(self) -> CloudOps:
        """The describe / stop / start / wait steps of a rolling unit (``cloud.ops``)."""
        ...

    def terraform_env(self) -> dict[str, str]:
        """Environment variables every Terraform process gets for this platform: where the
        provider finds its cloud (local: ``LOCALCLOUD_ROOT``; AWS: region, profile, endpoint
        overrides). Never credentials: those come from the platform's own chain. Block tests
        get them too (and ``INFRABLOCKS_PLATFORM``, the kind)."""
        ...

    def block_module(self, version_dir: Path) -> Path:
        """The Terraform module of a block version on this platform: the version's folder
        itself on the local cloud, its ``aws/`` folder on AWS (one contract, one folder per
        platform, as images have). ``ConfigError`` naming the folder when it is missing."""
        ...

    def environment_subnet(self, environment: str, configured: str | None, *,
                           create: bool = True) -> str | None:
        """The environment's subnet (CIDR) where the platform owns the network (AWS: a subnet
        of its VPC, created when missing unless ``create=False`` — a read-only command then
        gets the CIDR it would have; ``configured`` is blocks.toml's ``subnet``); None where
        the workspace allocates one (local: a /24 of 127.42.0.0/16)."""
        ...

    def shared_providers(self) -> Sequence[SharedProvider]:
        """Providers served once per run for every Terraform command on this platform,
        instead of Terraform starting them per command (``infrablocks.terraform.reattach``);
        empty when Terraform starts them all itself (registry providers such as hashicorp/aws).
        Each is started on first use and stopped when the run ends."""
        ...

    def ensure_images(self, images: Sequence[str], *,
                      before_each: Callable[[str], None] | None = None) -> list[str]:
        """Make sure each image ``NAME@VERSION`` a block version lists exists on the platform
        (local: build with packer and register when missing); their ids, in order.

        ``before_each(ref)`` is called before each image (progress; it may raise to cancel).
        Raises ``InfrablocksError`` naming the image when one cannot be had.
        """
        ...

    def check_images(self, images: Sequence[str]) -> None:
        """Before a plan (``doit plan``, status' drift, ``upgrade --dry-run``): raise
        ``InfrablocksError`` naming each listed image that is missing and that an apply would
        not make either (AWS: an AMI, built by hand with packer), as ``ensure_images`` would;
        nothing on a platform that builds missing images at apply (local)."""
        ...

    def missing_images(self, images: Sequence[str]) -> list[str]:
        """The images (``NAME@VERSION``) of ``images`` the platform does not have yet, in order
        (read-only: a plan defers what depends on them instead of building them)."""
        ...

    def block_instances(self, environment: str, block: str) -> list[InstanceInfo]:
        """The block's instances that are not terminated (tags ``environment`` and ``block``),
        described as ``CloudOps.describe_instance`` does. What `create` waits on until they
        run and are ready (local: the ready marker; AWS: status checks)."""
        ...

    def stop_block_instances(self, environment: str, block: str, *,
                             grace: float) -> list[str]:
        """Stop the block's instances that are not stopped yet, in parallel, and return their
        names. The pre-destroy step: a volume refuses to detach from a running instance (as a
        mounted EBS volume does). ``grace``: seconds an instance gets to stop by itself before
        it is killed (forced)."""
        ...

    def release_environment_subnet(self, environment: str) -> str | None:
        """After the environment's last deployment was destroyed: give back the subnet the
        platform made for it (AWS: delete its VPC subnet); the reason it stays, or None. The
        local platform has none (the workspace's allocator releases its /24)."""
        ...

    def sweep_environment(self, environment: str) -> SweepReport:
        """Terminate every instance and delete every volume tagged ``environment`` (what a
        failed Terraform run could not record in state). A volume still attached to another
        environment's instance is kept and reported."""
        ...

    def inventory(self, environment: str | None = None) -> dict[str, Any]:
        """What the platform holds, as plain data (``doit cloud --json``): ``where`` (a
        description of the platform), ``instances``, ``volumes``, ``images`` (lists of
        dicts); instances and volumes only of ``environment`` when given."""
        ...
