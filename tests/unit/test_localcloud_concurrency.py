"""Several processes mutating one local cloud at once: the file lock keeps records whole."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from infrablocks.cloud.local.control import LocalCloud
from tests.support.localcloud import terminating_cloud, write_artifact

WORKERS = 4


def run_workers(script: str, *args: str) -> list[subprocess.CompletedProcess[str]]:
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), str(n), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(WORKERS)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    with terminating_cloud(tmp_path / "cloud") as cloud:
        yield cloud


@pytest.fixture
def image_id(cloud: LocalCloud, tmp_path: Path) -> str:
    return cloud.register_image("idle", "1.0.0", write_artifact(tmp_path / "artifact")).id


def test_concurrent_read_modify_write_loses_nothing(cloud: LocalCloud, image_id: str) -> None:
    # each worker adds 25 tags to the same image record: without the lock, updates get lost
    results = run_workers("""
        import sys
        from infrablocks.cloud.local.control import LocalCloud
        worker, root, image_id = sys.argv[1:4]
        cloud = LocalCloud(root)
        for n in range(25):
            cloud.tag_image(image_id, f"w{worker}-{n}")
    """, str(cloud.root), image_id)
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert len(cloud.get_image(image_id).tags) == WORKERS * 25


def test_concurrent_volumes_and_attachments(cloud: LocalCloud, image_id: str) -> None:
    results = run_workers("""
        import sys
        from infrablocks.cloud.local.control import LocalCloud
        worker, root, image_id = sys.argv[1:4]
        cloud = LocalCloud(root)
        instance = cloud.run_instance(name=f"w{worker}", image_id=image_id,
                                      private_ip=f"127.42.202.{10 + int(worker)}",
                                      tags={"worker": worker})
        for n in range(10):
            volume = cloud.create_volume(name=f"w{worker}-{n}", size_gb=1)
            cloud.attach_volume(volume.id, instance.id, f"xvd{chr(ord('f') + n)}")
        print(instance.id)
    """, str(cloud.root), image_id)
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    instances = cloud.describe_instances()
    assert len(instances) == WORKERS
    for instance in instances:
        assert len(instance.devices) == 10
        for device, volume_id in instance.devices.items():
            attachment = cloud.get_volume(volume_id).attachment
            assert attachment is not None
            assert (attachment.instance_id, attachment.device) == (instance.id, device)
    assert len(cloud.describe_volumes(filters={"status": "in-use"})) == WORKERS * 10


def test_one_private_ip_one_instance_even_when_raced(cloud: LocalCloud, image_id: str) -> None:
    results = run_workers("""
        import sys
        from infrablocks.cloud.local.control import LocalCloud
        from infrablocks.cloud.local.errors import InvalidStateError
        worker, root, image_id = sys.argv[1:4]
        try:
            LocalCloud(root).run_instance(name=f"w{worker}", image_id=image_id,
                                          private_ip="127.42.202.50")
            print("won")
        except InvalidStateError:
            print("lost")
    """, str(cloud.root), image_id)
    assert sorted(r.stdout.strip() for r in results) == ["lost"] * (WORKERS - 1) + ["won"]
    assert len(cloud.describe_instances()) == 1
