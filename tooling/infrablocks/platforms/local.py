"""The local cloud as a :class:`~infrablocks.platforms.base.Platform`.

Instances are processes on 127.42.x.y, volumes directories, images packer artifacts
(docs/localcloud.md); everything lives under one directory, ``LOCALCLOUD_ROOT`` (default
``<repo>/.infrablocks/cloud``), which is also what the Terraform provider is told.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.cloud.local.control import ENV_ROOT
from infrablocks.cloud.local.ops import LocalCloudOps
from infrablocks.platforms.base import SweepReport

if TYPE_CHECKING:
    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.cloud.ops import InstanceInfo
    from infrablocks.terraform.reattach import SharedProvider

__all__ = ["LocalPlatform"]


class LocalPlatform:
    """The embedded local cloud of one repository."""

    name = "local"

    def __init__(self, repo_root: Path, cloud: LocalCloud) -> None:
        self.repo_root = repo_root
        self.cloud = cloud
        self._ops: LocalCloudOps | None = None
        self._shared: list[SharedProvider] | None = None

    @classmethod
    def open(cls, repo_root: Path) -> LocalPlatform:
        """The local cloud at ``$LOCALCLOUD_ROOT``, else ``<repo>/.infrablocks/cloud``."""
        from infrablocks.cloud.local.inventory import open_cloud

        return cls(repo_root, open_cloud(repo_root))

    def __repr__(self) -> str:
        return f"LocalPlatform({self.cloud.root})"

    @property
    def ops(self) -> LocalCloudOps:
        if self._ops is None:
            self._ops = LocalCloudOps(self.cloud)
        return self._ops

    def terraform_env(self) -> dict[str, str]:
        return {ENV_ROOT: str(self.cloud.root)}  # the provider's root

    def block_module(self, version_dir: Path) -> Path:
        return version_dir

    def environment_subnet(self, environment: str, configured: str | None, *,
                           create: bool = True) -> None:
        return None  # the workspace's allocator: a /24 of 127.42.0.0/16

    def shared_providers(self) -> list[SharedProvider]:
        """The local-cloud provider, served for this cloud by one process per run
        (docs/localcloud.md "The Terraform provider")."""
        if self._shared is None:
            from infrablocks.cloud.local.mirror import PROVIDER_SOURCE, serve_argv
            from infrablocks.terraform.reattach import SharedProvider
            from infrablocks.terraform.toolchain import terraform_log_dir

            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("TF_", "LOCALCLOUD_"))}
            env.update(self.terraform_env())
            self._shared = [SharedProvider(PROVIDER_SOURCE, serve_argv(), env,
                                           terraform_log_dir(self.repo_root))]
        return self._shared

    def ensure_images(self, images: Sequence[str], *,
                      before_each: Callable[[str], None] | None = None) -> list[str]:
        """Build (packer) and register each image the cloud lacks; images/NAME/VERSION/."""
        from infrablocks.images.build import ensure_image
        from infrablocks.images.refs import parse_image_ref

        ids = []
        for text in images:
            if before_each is not None:
                before_each(text)
            ids.append(ensure_image(self.repo_root, parse_image_ref(text), self.cloud).id)
        return ids

    def check_images(self, images: Sequence[str]) -> None:
        """Nothing to refuse: a missing image is built at apply (``ensure_images``)."""

    def missing_images(self, images: Sequence[str]) -> list[str]:
        from infrablocks.cloud.local.errors import NotFoundError
        from infrablocks.images.refs import parse_image_ref

        missing = []
        for text in images:
            ref = parse_image_ref(text)
            try:
                self.cloud.find_image(ref.name, ref.version)
            except NotFoundError:
                missing.append(str(ref))
        return missing

    def block_instances(self, environment: str, block: str) -> list[InstanceInfo]:
        from infrablocks.cloud.ops import CloudNotFoundError

        found = []
        for instance in self.cloud.describe_instances(
                filters={"tag:environment": environment, "tag:block": block}):
            if instance.state == "terminated":
                continue
            try:
                found.append(self.ops.describe_instance(instance.id))
            except CloudNotFoundError:  # terminated meanwhile
                continue
        return found

    def stop_block_instances(self, environment: str, block: str, *,
                             grace: float) -> list[str]:
        cloud = self.cloud
        running = [i for i in cloud.describe_instances(
            filters={"tag:environment": environment, "tag:block": block})
            if i.state not in ("stopped", "terminated")]
        if not running:
            return []
        with ThreadPoolExecutor(max_workers=len(running)) as pool:
            list(pool.map(lambda i: cloud.stop_instance(i.id, grace=grace), running))
        return [i.name for i in running]

    def release_environment_subnet(self, environment: str) -> None:
        return None   # the workspace's allocator gives the /24 back

    def sweep_environment(self, environment: str) -> SweepReport:
        from infrablocks.cloud.local.inventory import purge_environment

        return purge_environment(self.cloud, environment)

    def inventory(self, environment: str | None = None) -> dict[str, Any]:
        from infrablocks.cloud.local.inventory import cloud_snapshot

        return {"platform": self.name, "where": str(self.cloud.root),
                **cloud_snapshot(self.cloud, environment)}
