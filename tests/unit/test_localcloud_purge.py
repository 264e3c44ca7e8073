"""`doit cloud`: the snapshot it shows and `--purge ENV`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infrablocks.cloud.local.control import LocalCloud
from infrablocks.cloud.local.inventory import cloud_snapshot, purge_environment
from infrablocks.cloud.local.process import is_alive
from tests.support.localcloud import terminating_cloud, write_artifact

REPO_ROOT = Path(__file__).resolve().parents[2]
DOIT = Path(sys.executable).parent / "doit"


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    with terminating_cloud(tmp_path / "cloud") as cloud:
        yield cloud


@pytest.fixture
def populated(cloud: LocalCloud, tmp_path: Path) -> dict[str, str]:
    image = cloud.register_image("idle", "1.0.0", write_artifact(tmp_path / "artifact"),
                                 tags=["stable"])
    ids = {"image": image.id}
    for env, ip in (("t-gone", "127.42.204.11"), ("prod", "127.42.204.12")):
        instance = cloud.run_instance(name=f"{env}-db", image_id=image.id, private_ip=ip,
                                      tags={"environment": env})
        volume = cloud.create_volume(name=f"{env}-data", size_gb=3, tags={"environment": env})
        cloud.attach_volume(volume.id, instance.id, "xvdf")
        ids[f"{env}-instance"], ids[f"{env}-volume"] = instance.id, volume.id
    ids["loose"] = cloud.create_volume(name="loose", size_gb=1,
                                       tags={"environment": "t-gone"}).id
    return ids


def test_snapshot_names_images_attachments_and_filters(cloud: LocalCloud,
                                                       populated: dict[str, str]) -> None:
    snapshot = cloud_snapshot(cloud)
    assert snapshot["root"] == str(cloud.root)
    assert [i["name"] for i in snapshot["instances"]] == ["prod-db", "t-gone-db"]
    prod = snapshot["instances"][0]
    assert prod["image"] == "idle@1.0.0" and prod["volumes"] == {"xvdf": "prod-data"}
    assert prod["state"] == "running" and prod["private_ip"] == "127.42.204.12"
    volumes = {v["name"]: v for v in snapshot["volumes"]}
    assert volumes["prod-data"]["attached_to"] == {
        "instance_id": populated["prod-instance"], "instance": "prod-db", "device": "xvdf"}
    assert volumes["loose"]["attached_to"] is None
    assert [i["tags"] for i in snapshot["images"]] == [["stable"]]
    only = cloud_snapshot(cloud, env="t-gone")
    assert [i["name"] for i in only["instances"]] == ["t-gone-db"]
    assert sorted(v["name"] for v in only["volumes"]) == ["loose", "t-gone-data"]
    json.dumps(snapshot)  # --json prints it as is


def test_purge_removes_only_that_environment(cloud: LocalCloud,
                                             populated: dict[str, str]) -> None:
    doomed_pid = cloud.get_instance(populated["t-gone-instance"]).pid
    removed = purge_environment(cloud, "t-gone", grace=2)
    assert removed["instances"] == [f"t-gone-db ({populated['t-gone-instance']})"]
    assert sorted(removed["volumes"]) == sorted([
        f"loose ({populated['loose']})", f"t-gone-data ({populated['t-gone-volume']})"])
    assert removed["kept"] == []
    assert not is_alive(doomed_pid, None)
    assert [i.name for i in cloud.describe_instances()] == ["prod-db"]
    assert [v.name for v in cloud.describe_volumes()] == ["prod-data"]
    assert cloud.get_instance(populated["prod-instance"]).state == "running"
    assert purge_environment(cloud, "t-gone") == {"instances": [], "volumes": [], "kept": []}


def test_doit_cloud_command(cloud: LocalCloud, populated: dict[str, str]) -> None:
    env = {**os.environ, "LOCALCLOUD_ROOT": str(cloud.root)}

    def doit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(DOIT), "cloud", *args], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    shown = doit("--json")
    assert shown.returncode == 0, shown.stderr
    assert {i["id"] for i in json.loads(shown.stdout)["instances"]} == {
        populated["prod-instance"], populated["t-gone-instance"]}
    table = doit()
    assert table.returncode == 0 and "prod-db" in table.stdout and "idle@1.0.0" in table.stdout
    purged = doit("--purge", "t-gone")
    assert purged.returncode == 0, purged.stderr
    assert f"terminated instance t-gone-db ({populated['t-gone-instance']})" in purged.stdout
    assert "1 instance terminated, 2 volumes deleted" in purged.stdout
    assert [i.name for i in cloud.describe_instances()] == ["prod-db"]
