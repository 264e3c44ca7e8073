"""The platform seam on the local cloud: what deploy/ and rolling/ get from `Platform`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infrablocks.cloud.local.control import LocalCloud
from infrablocks.cloud.local.ops import LocalCloudOps
from infrablocks.cloud.ops import CloudOps
from infrablocks.deploy.workspace import open_workspace
from infrablocks.errors import ConfigError
from infrablocks.platforms import Platform, open_platform
from infrablocks.platforms.local import LocalPlatform
from tests.support.localcloud import terminating_cloud, write_artifact
from tests.support.registry_repo import make_repo


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    with terminating_cloud(tmp_path / "cloud") as cloud:
        yield cloud


@pytest.fixture
def platform(cloud: LocalCloud, tmp_path: Path) -> LocalPlatform:
    return LocalPlatform(tmp_path / "repo", cloud)


def run(cloud: LocalCloud, image_id: str, name: str, ip: str, **tags: str) -> str:
    return cloud.run_instance(name=name, image_id=image_id, private_ip=ip, tags=tags).id


def test_the_local_platform_is_a_platform_with_cloud_ops(platform: LocalPlatform) -> None:
    assert isinstance(platform, Platform)
    assert isinstance(platform.ops, LocalCloudOps) and isinstance(platform.ops, CloudOps)
    assert platform.ops is platform.ops            # one CloudOps per platform
    assert platform.terraform_env() == {"LOCALCLOUD_ROOT": str(platform.cloud.root)}


def test_stop_block_instances_stops_only_that_block_in_that_environment(
        platform: LocalPlatform, cloud: LocalCloud, tmp_path: Path) -> None:
    image = cloud.register_image("idle", "1.0.0", write_artifact(tmp_path / "artifact")).id
    doomed = run(cloud, image, "prod-base-1", "127.42.205.11", environment="prod", block="base")
    other_block = run(cloud, image, "prod-app", "127.42.205.12", environment="prod", block="app")
    other_env = run(cloud, image, "dev-base-1", "127.42.205.13", environment="dev", block="base")

    assert platform.stop_block_instances("prod", "base", grace=1) == ["prod-base-1"]
    states = {i.id: i.state for i in cloud.describe_instances()}
    assert states == {doomed: "stopped", other_block: "running", other_env: "running"}
    assert platform.stop_block_instances("prod", "base", grace=1) == []   # nothing left to stop


def test_sweep_and_inventory_are_per_environment(platform: LocalPlatform, cloud: LocalCloud,
                                                 tmp_path: Path) -> None:
    image = cloud.register_image("idle", "1.0.0", write_artifact(tmp_path / "artifact")).id
    run(cloud, image, "t-x-db", "127.42.205.21", environment="t-x", block="db")
    kept = run(cloud, image, "prod-db", "127.42.205.22", environment="prod", block="db")
    cloud.create_volume(name="t-x-data", size_gb=1, tags={"environment": "t-x"})

    inventory = platform.inventory("t-x")
    assert inventory["platform"] == "local" and inventory["where"] == str(cloud.root)
    assert [i["name"] for i in inventory["instances"]] == ["t-x-db"]
    assert [i["name"] for i in platform.inventory()["instances"]] == ["prod-db", "t-x-db"]

    swept = platform.sweep_environment("t-x")
    assert [s.split(" ")[0] for s in swept["instances"]] == ["t-x-db"]
    assert [s.split(" ")[0] for s in swept["volumes"]] == ["t-x-data"]
    assert [i.id for i in cloud.describe_instances()] == [kept]


def test_ensure_images_returns_registered_ids_and_reports_each(
        platform: LocalPlatform, cloud: LocalCloud, tmp_path: Path) -> None:
    first = cloud.register_image("idle", "1.0.0", write_artifact(tmp_path / "a1")).id
    second = cloud.register_image("idle", "1.1.0",
                                  write_artifact(tmp_path / "a2", "#!/bin/sh\nexec true\n")).id
    seen: list[str] = []
    assert platform.ensure_images(["idle@1.0.0", "idle@1.1.0"], before_each=seen.append) == [
        first, second]
    assert seen == ["idle@1.0.0", "idle@1.1.0"]

    class Stop(Exception):
        pass

    def cancel(ref: str) -> None:
        raise Stop(ref)

    with pytest.raises(Stop):                      # before_each may cancel before any work
        platform.ensure_images(["idle@9.9.9"], before_each=cancel)


def test_open_platform_knows_its_kinds(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        open_platform("gcp", tmp_path, where="blocks.toml environments.prod.platform")
    assert "blocks.toml environments.prod.platform: unknown platform 'gcp'" in caught.value.message
    assert "local" in (caught.value.hint or "")


def test_the_workspace_builds_one_platform_and_gives_terraform_its_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALCLOUD_ROOT", str(tmp_path / "elsewhere"))
    workspace = open_workspace(make_repo(tmp_path / "repo", "[environments.prod]\n"))
    monkeypatch.delenv("LOCALCLOUD_ROOT")   # read when the workspace opened, not later
    platform = workspace.platform("prod")
    assert platform is workspace.platform() is workspace.platform("t-other")
    assert platform.terraform_env() == {"LOCALCLOUD_ROOT": str(tmp_path / "elsewhere")}
    terraform = workspace.terraform("prod", "base")
    assert terraform.env_extra["LOCALCLOUD_ROOT"] == str(tmp_path / "elsewhere")
