"""A throwaway cloud's clean-up purges every environment tagged on its resources."""

from __future__ import annotations

from pathlib import Path

from infrablocks.cloud.local.control import LocalCloud
from infrablocks.cloud.local.inventory import purge_every_environment


def test_every_tagged_environment_is_purged_and_untagged_volumes_kept(tmp_path: Path) -> None:
    cloud = LocalCloud(tmp_path / "cloud")
    for name, env in (("a", "prod"), ("b", "t-1"), ("c", None)):
        cloud.create_volume(name=name, size_gb=1, tags={"environment": env} if env else {})

    assert purge_every_environment(cloud, grace=0.5) == ["prod", "t-1"]
    assert [v.name for v in cloud.describe_volumes()] == ["c"]
