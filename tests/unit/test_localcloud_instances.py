"""Instances, volumes and attachments of the local cloud, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infrablocks.cloud.local.control import LocalCloud
from infrablocks.cloud.local.errors import (
    InvalidParameterError,
    InvalidStateError,
    LocalCloudError,
    NotFoundError,
    VolumeInUseError,
)
from infrablocks.cloud.local.process import is_alive, read_stat
from infrablocks.cloud.local.records import Image
from infrablocks.waiting import poll
from tests.support.localcloud import terminating_cloud, write_artifact

# Waits for its device (named in user data), records its boot on the volume, reports ready,
# then idles; on SIGTERM it writes a farewell and exits.
ENTRYPOINT = r"""#!/bin/sh
dev=$(python3 -c 'import json, os
print(json.load(open(os.environ["LOCALCLOUD_USER_DATA"])).get("data_device", ""))')
if [ -n "$dev" ]; then
  i=0
  while [ ! -d "$LOCALCLOUD_DEVICES_DIR/$dev" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
  echo "$LOCALCLOUD_INSTANCE_ID" >> "$LOCALCLOUD_DEVICES_DIR/$dev/boots"
fi
env | grep '^LOCALCLOUD_' | sort > "$LOCALCLOUD_INSTANCE_DIR/env.txt"
trap 'echo bye; exit 0' TERM
touch "$LOCALCLOUD_INSTANCE_DIR/ready"
while :; do sleep 0.1; done
"""


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    with terminating_cloud(tmp_path / "cloud") as cloud:
        yield cloud


@pytest.fixture
def image(cloud: LocalCloud, tmp_path: Path) -> Image:
    return cloud.register_image("idle", "1.0.0", write_artifact(tmp_path / "artifact", ENTRYPOINT))


def test_run_instance_starts_the_entrypoint_with_its_environment(cloud: LocalCloud,
                                                                 image: Image) -> None:
    instance = cloud.run_instance(name="web-1", image_id=image.id, private_ip="127.42.201.11",
                                  user_data={"role": "web"}, tags={"environment": "t-1"})
    assert instance.state == "running" and instance.pid
    ready = cloud.wait_until_ready(instance.id, timeout=10)
    assert ready.ready
    directory = Path(instance.path)
    env = dict(line.split("=", 1) for line in (directory / "env.txt").read_text().splitlines())
    assert env == {
        "LOCALCLOUD_DEVICES_DIR": str(directory / "devices"),
        "LOCALCLOUD_IMAGE_DIR": image.path,
        "LOCALCLOUD_INSTANCE_DIR": str(directory),
        "LOCALCLOUD_INSTANCE_ID": instance.id,
        "LOCALCLOUD_PRIVATE_IP": "127.42.201.11",
        "LOCALCLOUD_USER_DATA": str(directory / "user_data.json"),
    }
    assert json.loads((directory / "user_data.json").read_text()) == {"role": "web"}
    # detached: its own session and process group
    assert os.getsid(instance.pid) == instance.pid
    assert os.getpgid(instance.pid) == instance.pid


def test_stop_sends_sigterm_and_start_runs_it_again(cloud: LocalCloud, image: Image) -> None:
    instance = cloud.run_instance(name="a", image_id=image.id, private_ip="127.42.201.12")
    cloud.wait_until_ready(instance.id, timeout=10)
    stopped = cloud.stop_instance(instance.id, grace=5)
    assert stopped.state == "stopped" and stopped.state_reason == "user"
    assert not stopped.ready and stopped.pid is None
    assert "bye" in cloud.console_output(instance.id)  # it got SIGTERM, not SIGKILL
    assert not is_alive(instance.pid, None) or read_stat(instance.pid) is None
    started = cloud.start_instance(instance.id)
    assert started.state == "running" and started.pid != instance.pid
    assert cloud.wait_for_state(instance.id, "running", timeout=5).id == instance.id


def test_stop_kills_after_the_grace_period(cloud: LocalCloud, tmp_path: Path) -> None:
    artifact = write_artifact(tmp_path / "stubborn",
                              "#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 0.1; done\n")
    stubborn = cloud.register_image("stubborn", "1.0.0", artifact)
    instance = cloud.run_instance(name="s", image_id=stubborn.id, private_ip="127.42.201.13")
    started = time.monotonic()
    assert cloud.stop_instance(instance.id, grace=0.5).state == "stopped"
    assert time.monotonic() - started >= 0.5      # it waited out the grace, then killed
    assert not is_alive(instance.pid, None)


def test_a_process_that_died_reads_as_stopped(cloud: LocalCloud, image: Image) -> None:
    instance = cloud.run_instance(name="c", image_id=image.id, private_ip="127.42.201.14")
    os.kill(instance.pid, signal.SIGKILL)
    seen = cloud.wait_for_state(instance.id, "stopped", timeout=5)
    assert seen.crashed and seen.state_reason == "process exited"


ZOMBIE_MAKER = textwrap.dedent("""
    import signal, sys, time
    from infrablocks.cloud.local.control import LocalCloud
    cloud = LocalCloud(sys.argv[1])
    instance = cloud.run_instance(name="z", image_id=sys.argv[2], private_ip="127.42.201.15")
    print(instance.id, instance.pid, flush=True)
    # never wait for the child: once killed it stays a zombie of this process
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    time.sleep(60)
""")


def test_an_unreaped_zombie_is_dead(cloud: LocalCloud, image: Image) -> None:
    parent = subprocess.Popen([sys.executable, "-c", ZOMBIE_MAKER, str(cloud.root), image.id],
                              stdout=subprocess.PIPE, text=True)
    try:
        instance_id, pid_text = parent.stdout.readline().split()
        pid = int(pid_text)
        assert cloud.get_instance(instance_id).state == "running"
        start_time = read_stat(pid)[1]
        os.kill(pid, signal.SIGKILL)
        poll(lambda: read_stat(pid)[0] == "Z", timeout=5, interval=0.01)
        assert read_stat(pid)[0] == "Z"
        os.kill(pid, 0)  # a zombie still "accepts" signals: this is why we read /proc
        assert not is_alive(pid, start_time)
        instance = cloud.get_instance(instance_id)
        assert instance.state == "stopped" and instance.crashed and instance.pid is None
    finally:
        parent.kill()
        parent.wait()


def test_a_recycled_pid_is_not_the_instance() -> None:
    me = os.getpid()
    started = read_stat(me)[1]
    assert is_alive(me, started)
    assert not is_alive(me, started + 1)


def test_attach_detach_and_volume_in_use(cloud: LocalCloud, image: Image) -> None:
    volume = cloud.create_volume(name="data", size_gb=2, tags={"environment": "t-2"})
    assert volume.state == "available" and Path(volume.path).is_dir()
    instance = cloud.run_instance(name="db", image_id=image.id, private_ip="127.42.201.16",
                                  user_data={"data_device": "xvdf"})
    attachment = cloud.attach_volume(volume.id, instance.id, "xvdf")
    assert attachment.device == "xvdf"
    assert cloud.attach_volume(volume.id, instance.id, "xvdf") == attachment  # idempotent
    link = Path(instance.path) / "devices" / "xvdf"
    assert link.is_symlink() and link.resolve() == Path(volume.path).resolve()
    cloud.wait_until_ready(instance.id, timeout=10)
    assert (Path(volume.path) / "boots").read_text().split() == [instance.id]
    assert cloud.get_volume(volume.id).state == "in-use"
    assert cloud.get_instance(instance.id).devices == {"xvdf": volume.id}

    with pytest.raises(VolumeInUseError) as err:
        cloud.detach_volume(volume.id, instance.id)
    assert str(err.value) == (f"volume {volume.id} (data) is in use by running instance "
                              f"{instance.id} (db); stop the instance first")
    with pytest.raises(VolumeInUseError, match="detach it first"):
        cloud.delete_volume(volume.id)
    other = cloud.run_instance(name="other", image_id=image.id, private_ip="127.42.201.17")
    with pytest.raises(VolumeInUseError, match="already attached"):
        cloud.attach_volume(volume.id, other.id, "xvdg")

    cloud.stop_instance(instance.id, grace=5)
    cloud.detach_volume(volume.id, instance.id)
    assert not link.exists()
    assert cloud.get_volume(volume.id).state == "available"
    assert cloud.get_instance(instance.id).devices == {}


def test_terminate_removes_the_instance_and_keeps_its_volume(cloud: LocalCloud,
                                                             image: Image) -> None:
    volume = cloud.create_volume(name="keep", size_gb=1)
    instance = cloud.run_instance(name="t", image_id=image.id, private_ip="127.42.201.18",
                                  user_data={"data_device": "xvdf"})
    cloud.attach_volume(volume.id, instance.id, "xvdf")
    cloud.wait_until_ready(instance.id, timeout=10)
    cloud.terminate_instance(instance.id, grace=5)
    assert not Path(instance.path).exists()
    assert not is_alive(instance.pid, None)
    assert cloud.describe_instances() == []
    with pytest.raises(NotFoundError):
        cloud.get_instance(instance.id)
    assert cloud.wait_for_state(instance.id, "terminated", timeout=1).state == "terminated"
    kept = cloud.get_volume(volume.id)
    assert kept.state == "available"
    assert (Path(kept.path) / "boots").read_text().split() == [instance.id]
    # the volume boots a replacement with its data
    replacement = cloud.run_instance(name="t", image_id=image.id, private_ip="127.42.201.18",
                                     user_data={"data_device": "xvdf"})
    cloud.attach_volume(volume.id, replacement.id, "xvdf")
    cloud.wait_until_ready(replacement.id, timeout=10)
    assert (Path(kept.path) / "boots").read_text().split() == [instance.id, replacement.id]


def test_filters_and_in_place_changes(cloud: LocalCloud, image: Image) -> None:
    a = cloud.run_instance(name="a", image_id=image.id, private_ip="127.42.201.21",
                           tags={"environment": "prod", "role": "etcd"})
    b = cloud.run_instance(name="b", image_id=image.id, private_ip="127.42.201.22",
                           tags={"environment": "staging"})
    assert [i.id for i in cloud.describe_instances(filters={"tag:environment": "prod"})] == [a.id]
    assert [i.id for i in cloud.describe_instances(
        filters={"tag:environment": ["prod", "staging"]})] == [a.id, b.id]
    assert [i.id for i in cloud.describe_instances(filters={"tag-key": "role"})] == [a.id]
    assert [i.id for i in cloud.describe_instances(
        filters={"private-ip-address": "127.42.201.22"})] == [b.id]
    assert cloud.describe_instances(ids=[b.id, "i-0000000000000000"]) == [
        cloud.get_instance(b.id)]
    with pytest.raises(InvalidParameterError, match="valid filters: tag:KEY"):
        cloud.describe_instances(filters={"colour": "red"})
    changed = cloud.modify_instance(b.id, name="b2", tags={"environment": "prod"})
    assert changed.name == "b2" and changed.pid == b.pid
    assert len(cloud.describe_instances(filters={"tag:environment": "prod"})) == 2
    volume = cloud.create_volume(name="v", size_gb=1, tags={"environment": "prod"})
    cloud.attach_volume(volume.id, a.id, "xvdf")
    assert [v.id for v in cloud.describe_volumes(filters={"status": "in-use"})] == [volume.id]
    assert [v.id for v in cloud.describe_volumes(
        filters={"attachment.instance-id": a.id})] == [volume.id]
    assert cloud.modify_volume(volume.id, size_gb=5).size_gb == 5


def test_private_ip_is_checked_and_unique(cloud: LocalCloud, image: Image) -> None:
    for bad in ("10.0.0.1", "127.42.201.0", "nonsense"):
        with pytest.raises(InvalidParameterError, match="private_ip"):
            cloud.run_instance(name="x", image_id=image.id, private_ip=bad)
    first = cloud.run_instance(name="x", image_id=image.id, private_ip="127.42.201.31")
    with pytest.raises(InvalidStateError, match=f"already used by instance {first.id}"):
        cloud.run_instance(name="y", image_id=image.id, private_ip="127.42.201.31")
    with pytest.raises(NotFoundError, match="img-000000000000 is not registered"):
        cloud.run_instance(name="y", image_id="img-000000000000", private_ip="127.42.201.32")
    with pytest.raises(InvalidParameterError, match="device name"):
        cloud.attach_volume(cloud.create_volume(name="v", size_gb=1).id, first.id, "../x")


def test_an_entrypoint_that_cannot_start_leaves_nothing(cloud: LocalCloud,
                                                        tmp_path: Path) -> None:
    artifact = write_artifact(tmp_path / "broken", "no shebang line\n")
    broken = cloud.register_image("broken", "1.0.0", artifact)
    with pytest.raises(LocalCloudError, match="cannot start the entrypoint of image broken@1.0.0"):
        cloud.run_instance(name="b", image_id=broken.id, private_ip="127.42.201.40")
    assert cloud.describe_instances() == []
    assert list((cloud.root / "instances").iterdir()) == []
